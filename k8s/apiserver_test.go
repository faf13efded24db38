package k8s

// The manifests, the chart and the injector against a real kube-apiserver
// and etcd (.ci/k8s-tools builds them; CHITTYID_KUBE_APISERVER and
// CHITTYID_ETCD name them). Without them the test skips, unless
// CHITTYID_TEST_REQUIRE_SERVERS=1 (CI), where it fails.

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	component "github.com/chittyos/chittyid-sidecar/k8s/components/chittyid-sidecar"
	"github.com/chittyos/chittyid-sidecar/k8s/inject"
	"github.com/chittyos/chittyid-sidecar/k8s/internal/kubeapi"
)

const fieldManager = "chittyid-k8s-test"

// startCluster starts etcd and kube-apiserver for the test, or skips.
func startCluster(t *testing.T) *kubeapi.Cluster {
	t.Helper()
	if _, _, err := kubeapi.Binaries(); err != nil {
		if os.Getenv("CHITTYID_TEST_REQUIRE_SERVERS") == "1" {
			t.Fatalf("CHITTYID_TEST_REQUIRE_SERVERS=1 and no API server to test against: %v", err)
		}
		t.Skipf("no API server to test against: %v", err)
	}
	dir := t.TempDir()
	c, err := kubeapi.Start(t.Context(), kubeapi.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			keepLogs(t, dir)
		}
	})
	return c
}

// keepLogs copies the servers' logs out of the test's temp dir, which is
// removed, and names them.
func keepLogs(t *testing.T, dir string) {
	out, err := os.MkdirTemp("", "chittyid-k8s-apiserver-logs-")
	if err != nil {
		return
	}
	for _, name := range []string{"kube-apiserver.log", "etcd.log"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			os.WriteFile(filepath.Join(out, name), b, 0o600)
		}
	}
	t.Logf("the API server's and etcd's logs: %s", out)
}

// restrictedNamespace creates a namespace that enforces the restricted
// Pod Security Standard, with the default ServiceAccount (which a
// controller manager would make) and the extra labels.
func restrictedNamespace(t *testing.T, c *kubeapi.Cluster, name string, extra map[string]string) {
	t.Helper()
	l := map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
	for k, v := range extra {
		l[k] = v
	}
	ctx := t.Context()
	if _, err := c.Client.Create(ctx, "/api/v1/namespaces", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Create(ctx, "/api/v1/namespaces/"+name+"/serviceaccounts", &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, nil); err != nil {
		t.Fatal(err)
	}
}

// applyAll applies every object with server-side apply and returns the
// warnings, each prefixed with the object.
func applyAll(t *testing.T, c *kubeapi.Cluster, ns string, objects [][]byte) []string {
	t.Helper()
	var warnings []string
	for _, obj := range objects {
		resp, err := c.Client.Apply(t.Context(), obj, ns, fieldManager)
		if err != nil {
			t.Fatalf("applying %.200s: %v", obj, err)
		}
		var m metav1.PartialObjectMetadata
		sigsyaml.Unmarshal(obj, &m)
		for _, w := range resp.Warnings {
			warnings = append(warnings, m.Kind+" "+m.Name+": "+w)
		}
	}
	return warnings
}

// kustomized renders a kustomization into its objects.
func kustomized(t *testing.T, dir string) [][]byte {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out [][]byte
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, y)
	}
	return out
}

// podsOf creates a Pod from each Deployment's template, as its ReplicaSet
// would, so that Pod Security's enforce mode judges it (for a Deployment
// it only warns).
func podsOf(t *testing.T, c *kubeapi.Cluster, ns string, objects [][]byte) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	for _, obj := range objects {
		var d appsv1.Deployment
		if err := sigsyaml.Unmarshal(obj, &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		pod := corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
		pod.GenerateName = d.Name + "-"
		var got corev1.Pod
		resp, err := c.Client.Create(t.Context(), "/api/v1/namespaces/"+ns+"/pods", &pod, &got)
		if err != nil {
			t.Fatalf("a pod of Deployment %s refused in a restricted namespace: %v", d.Name, err)
		}
		for _, w := range resp.Warnings {
			t.Errorf("pod of %s: warning %q", d.Name, w)
		}
		pods = append(pods, got)
	}
	return pods
}

// TestAPIServer: the manifests, the chart and the injector, as a cluster
// takes them.
func TestAPIServer(t *testing.T) {
	c := startCluster(t)
	t.Run("manifests", func(t *testing.T) { testManifests(t, c) })
	t.Run("injector", func(t *testing.T) { testInjector(t, c) })
}

// testManifests: the base, the fleet overlay, the component on two apps
// in one namespace and the chart, applied with server-side apply in
// namespaces that enforce restricted: all accepted, and no Pod Security
// warning for the sidecar.
func testManifests(t *testing.T, c *kubeapi.Cluster) {
	for _, k := range []struct{ ns, dir string }{{"base", baseDir}, {"fleet", fleetDir}} {
		t.Run(k.dir, func(t *testing.T) {
			restrictedNamespace(t, c, k.ns, nil)
			objs := kustomized(t, k.dir)
			if w := applyAll(t, c, k.ns, objs); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
			podsOf(t, c, k.ns, objs)
		})
	}
	t.Run("component on two apps in one namespace", func(t *testing.T) {
		restrictedNamespace(t, c, "apps", nil)
		var warnings []string
		for _, dir := range []string{otherAppDir, prefixedAppDir} {
			warnings = append(warnings, applyAll(t, c, "apps", kustomized(t, dir))...)
		}
		// The test app's own containers are not restricted (Pod Security
		// warns of them); the sidecar must not be among them.
		for _, w := range warnings {
			if strings.Contains(w, inject.SidecarName) {
				t.Errorf("a Pod Security warning names the sidecar: %s", w)
			}
		}
		var orders, billing appsv1.Deployment
		if err := c.Client.Get(t.Context(), "/apis/apps/v1/namespaces/apps/deployments/orders", &orders); err != nil {
			t.Fatal(err)
		}
		if err := c.Client.Get(t.Context(), "/apis/apps/v1/namespaces/apps/deployments/billing-orders", &billing); err != nil {
			t.Fatal(err)
		}
		if a, b := refs(&orders.Spec.Template.Spec), refs(&billing.Spec.Template.Spec); a == b {
			t.Errorf("both apps use %v", a)
		}
	})
	t.Run("chart", func(t *testing.T) {
		const ns = "chittyid-system"
		restrictedNamespace(t, c, ns, nil)
		r, err := renderChart(ns, userTLS(string(c.CA.CertPEM)))
		if err != nil {
			t.Fatal(err)
		}
		var objs [][]byte
		for _, key := range r.order {
			objs = append(objs, r.objects[key])
		}
		if w := applyAll(t, c, ns, objs); len(w) > 0 {
			t.Errorf("warnings: %q", w)
		}
		// The Secret a user would provide, then the injector's pod.
		if _, err := c.Client.Create(t.Context(), "/api/v1/namespaces/"+ns+"/secrets", &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "injector-tls"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": c.CA.CertPEM, "tls.key": []byte("unused")},
		}, nil); err != nil {
			t.Fatal(err)
		}
		podsOf(t, c, ns, objs)
		// Its webhooks point at a Service with no endpoints here (no
		// kubelet): remove them before the injector's own test.
		if err := c.Client.Delete(t.Context(), "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"+releaseName); err != nil {
			t.Fatal(err)
		}
	})
}

// refs returns the ConfigMap and Secret the sidecar's volumes name.
func refs(p *corev1.PodSpec) [2]string {
	var r [2]string
	for _, v := range p.Volumes {
		switch {
		case v.Name == "chittyid-config" && v.ConfigMap != nil:
			r[0] = v.ConfigMap.Name
		case v.Name == "chittyid-token" && v.Secret != nil:
			r[1] = v.Secret.SecretName
		}
	}
	return r
}

// registerWebhooks applies the chart's MutatingWebhookConfiguration,
// rendered with failurePolicy, pointed at the injector's URL instead of
// the chart's Service (which has no endpoints without a kubelet).
func registerWebhooks(t *testing.T, c *kubeapi.Cluster, injectorURL string, policy string) {
	t.Helper()
	r, err := renderChart("chittyid-system", map[string]any{
		"tls":     userTLS(string(c.CA.CertPEM))["tls"],
		"webhook": map[string]any{"failurePolicy": policy},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	r.decode(t, "MutatingWebhookConfiguration "+releaseName, &mwc)
	for i := range mwc.Webhooks {
		w := &mwc.Webhooks[i]
		url := injectorURL + *w.ClientConfig.Service.Path
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: c.CA.CertPEM}
	}
	body, err := json.Marshal(mwc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Apply(t.Context(), body, "", fieldManager); err != nil {
		t.Fatal(err)
	}
}

// createPod creates pod in ns and returns the stored pod and the warnings.
func createPod(t *testing.T, c *kubeapi.Cluster, ns string, pod *corev1.Pod, dryRun bool) (*corev1.Pod, []string, error) {
	t.Helper()
	path := "/api/v1/namespaces/" + ns + "/pods"
	if dryRun {
		path += "?dryRun=All"
	}
	var got corev1.Pod
	resp, err := c.Client.Create(t.Context(), path, pod, &got)
	if resp == nil {
		return nil, nil, err
	}
	return &got, resp.Warnings, err
}

// untilWebhooks waits until the API server calls the webhooks as
// registered (it picks configurations up from a watch, not at once):
// cond is asked of a dry-run create of an annotated pod.
func untilWebhooks(t *testing.T, c *kubeapi.Cluster, ns string, cond func(*corev1.Pod, error) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _, err := createPod(t, c, ns, kubeapi.RestrictedPod("probe", map[string]string{inject.AnnotationInject: "true"}), true)
		if cond(got, err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server did not take up the webhook configuration in 30s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func injected(p *corev1.Pod) bool {
	return p != nil && len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == inject.SidecarName &&
		p.Annotations[inject.AnnotationStatus] == inject.StatusInjected
}

// testInjector registers the injector, served by the test, as the chart's
// webhooks, and creates pods in namespaces that enforce restricted.
func testInjector(t *testing.T, c *kubeapi.Cluster) {
	ctx := t.Context()
	restrictedNamespace(t, c, "team", nil)
	restrictedNamespace(t, c, "labelled", map[string]string{inject.LabelInject: inject.LabelInjectEnabled})
	for _, ns := range []string{"team", "labelled"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "chittyid-sidecar-config"}, Data: map[string]string{"config.yaml": string(component.Config())}}
		if _, err := c.Client.Create(ctx, "/api/v1/namespaces/"+ns+"/configmaps", cm, nil); err != nil {
			t.Fatal(err)
		}
	}
	inj, err := c.ServeInjector(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Stop() })
	registerWebhooks(t, c, inj.URL, "Fail")
	untilWebhooks(t, c, "team", func(p *corev1.Pod, err error) bool { return err == nil && injected(p) })

	var first *corev1.Pod
	t.Run("annotated: injected and admitted under restricted", func(t *testing.T) {
		got, warnings, err := createPod(t, c, "team", kubeapi.RestrictedPod("annotated", map[string]string{inject.AnnotationInject: "true"}), false)
		if err != nil {
			t.Fatal(err)
		}
		if !injected(got) || len(warnings) > 0 {
			t.Fatalf("init containers %v, annotations %v, warnings %q", got.Spec.InitContainers, got.Annotations, warnings)
		}
		if v := got.Spec.Containers[0].Env; len(v) != 1 || v[0].Value != "http://127.0.0.1:8787/v1" {
			t.Errorf("the app's env %v", v)
		}
		if sc := got.Spec.SecurityContext; sc.FSGroup == nil || *sc.FSGroup != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("pod securityContext %+v: want the app's, with fsGroup 65532 added", sc)
		}
		first = got
	})
	t.Run("not annotated: untouched", func(t *testing.T) {
		got, _, err := createPod(t, c, "team", kubeapi.RestrictedPod("plain", nil), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 0 || got.Annotations[inject.AnnotationStatus] != "" || len(got.Spec.Containers[0].Env) != 0 {
			t.Errorf("changed: %+v", got)
		}
	})
	t.Run("labelled namespace: injected", func(t *testing.T) {
		got, _, err := createPod(t, c, "labelled", kubeapi.RestrictedPod("by-namespace", nil), false)
		if err != nil {
			t.Fatal(err)
		}
		if !injected(got) {
			t.Errorf("not injected: %v", got.Spec.InitContainers)
		}
	})
	t.Run("labelled namespace, opted out: untouched", func(t *testing.T) {
		got, _, err := createPod(t, c, "labelled", kubeapi.RestrictedPod("opted-out", map[string]string{inject.AnnotationInject: "false"}), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 0 {
			t.Errorf("injected: %v", got.Spec.InitContainers)
		}
	})
	t.Run("already injected: unchanged", func(t *testing.T) {
		if first == nil {
			t.Skip("no injected pod")
		}
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "again", Annotations: first.Annotations}, Spec: *first.Spec.DeepCopy()}
		got, _, err := createPod(t, c, "team", again, false)
		if err != nil {
			t.Fatal(err)
		}
		if !equalJSON(t, got.Spec.InitContainers, first.Spec.InitContainers) || !equalJSON(t, got.Spec.Volumes, first.Spec.Volumes) ||
			!equalJSON(t, got.Spec.Containers, first.Spec.Containers) {
			t.Errorf("changed:\n got %v\nwant %v", got.Spec.InitContainers, first.Spec.InitContainers)
		}
	})
	t.Run("the app's differing settings kept, with warnings", func(t *testing.T) {
		pod := kubeapi.RestrictedPod("own-settings", map[string]string{
			inject.AnnotationInject: "true", "prometheus.io/scrape": "true", "prometheus.io/port": "8080",
		})
		pod.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: inject.EnvServiceURL, Value: "https://id.chitty.cc/v1"}}
		got, warnings, err := createPod(t, c, "team", pod, false)
		if err != nil {
			t.Fatal(err)
		}
		if !injected(got) || *got.Spec.TerminationGracePeriodSeconds != 30 || got.Annotations["prometheus.io/port"] != "8080" ||
			got.Spec.Containers[0].Env[0].Value != "https://id.chitty.cc/v1" {
			t.Errorf("the app's settings changed: %v %v %v", got.Spec.TerminationGracePeriodSeconds, got.Annotations, got.Spec.Containers[0].Env)
		}
		t.Logf("warnings: %q", warnings)
		for _, want := range []string{"terminationGracePeriodSeconds 30", `prometheus.io/port "8080"`, "CHITTYID_SERVICE_URL"} {
			if !containsAny(warnings, want) {
				t.Errorf("the client got no warning about %s: %q", want, warnings)
			}
		}
	})
	t.Run("two apps with their own names", func(t *testing.T) {
		var got [2]*corev1.Pod
		for i, app := range []string{"orders", "billing"} {
			p, _, err := createPod(t, c, "team", kubeapi.RestrictedPod(app, map[string]string{
				inject.AnnotationInject: "true", inject.AnnotationConfigMap: app + "-sidecar", inject.AnnotationTokenSecret: app + "-token",
			}), false)
			if err != nil {
				t.Fatal(err)
			}
			got[i] = p
		}
		for i, app := range []string{"orders", "billing"} {
			if r := refs(&got[i].Spec); r != [2]string{app + "-sidecar", app + "-token"} {
				t.Errorf("%s references %v", app, r)
			}
		}
	})
	t.Run("a bad annotation: refused with the reason", func(t *testing.T) {
		_, _, err := createPod(t, c, "team", kubeapi.RestrictedPod("bad", map[string]string{inject.AnnotationInject: "true", inject.AnnotationAPIPort: "80"}), false)
		if err == nil || !strings.Contains(err.Error(), "id.chitty.cc/api-port") {
			t.Errorf("error %v, want a refusal naming the annotation", err)
		}
		t.Logf("refused: %v", err)
	})

	if err := inj.Stop(); err != nil {
		t.Error(err)
	}
	t.Run("injector stopped, failurePolicy Fail: annotated pods refused", func(t *testing.T) {
		_, _, err := createPod(t, c, "team", kubeapi.RestrictedPod("while-down", map[string]string{inject.AnnotationInject: "true"}), false)
		if err == nil || !strings.Contains(err.Error(), "pods.inject.id.chitty.cc") {
			t.Errorf("error %v, want a refusal naming the webhook", err)
		}
		t.Logf("refused: %v", err)
		got, _, err := createPod(t, c, "team", kubeapi.RestrictedPod("plain-while-down", nil), false)
		if err != nil || len(got.Spec.InitContainers) != 0 {
			t.Errorf("a pod that did not opt in: %v (it must never reach the webhook)", err)
		}
	})
	t.Run("injector stopped, failurePolicy Ignore: created without the sidecar", func(t *testing.T) {
		registerWebhooks(t, c, inj.URL, "Ignore")
		untilWebhooks(t, c, "team", func(p *corev1.Pod, err error) bool { return err == nil })
		got, _, err := createPod(t, c, "team", kubeapi.RestrictedPod("ignored", map[string]string{inject.AnnotationInject: "true"}), false)
		if err != nil {
			t.Fatal(err)
		}
		if injected(got) {
			t.Error("injected with the injector stopped")
		}
	})
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
