package k8s

// The injector's Helm chart (helm/chittyid-injector), linted and rendered
// with Helm's own Go module, as `helm lint` and `helm template` do.

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/chittyos/chittyid-sidecar/k8s/inject"
)

const (
	// chartDir is the injector's Helm chart.
	chartDir = "helm/chittyid-injector"
	// chartKubeVersion is the Kubernetes the chart is rendered for: the
	// k8s.io/api release of go.mod, and the API server the tests run.
	chartKubeVersion = "v1.37.2"
	releaseName      = "chittyid-injector"
)

// rendered is the chart's output: each object's YAML by kind and name.
type rendered struct {
	objects map[string][]byte // "Kind name"
	order   []string
}

// renderChart renders the chart as `helm template` would, for namespace
// ns with the values given over the chart's; schema validation included.
func renderChart(ns string, values map[string]any) (*rendered, error) {
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	kv, err := common.ParseKubeVersion(chartKubeVersion)
	if err != nil {
		return nil, err
	}
	caps := *common.DefaultCapabilities
	caps.KubeVersion = *kv
	vals, err := chartutil.ToRenderValues(ch, values, common.ReleaseOptions{Name: releaseName, Namespace: ns, IsInstall: true}, &caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{objects: map[string][]byte{}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			var meta metav1.PartialObjectMetadata
			if err := sigsyaml.Unmarshal([]byte(doc), &meta); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if meta.Kind == "" {
				continue // a document of comments alone
			}
			key := meta.Kind + " " + meta.Name
			if _, dup := r.objects[key]; dup {
				return nil, fmt.Errorf("%s renders a second %s", name, key)
			}
			r.objects[key], r.order = []byte(doc), append(r.order, key)
		}
	}
	return r, nil
}

// decode decodes one rendered object strictly into out.
func (r *rendered) decode(t *testing.T, key string, out any) {
	t.Helper()
	y, ok := r.objects[key]
	if !ok {
		t.Fatalf("the chart renders no %s; it renders %v", key, r.order)
	}
	if err := sigsyaml.UnmarshalStrict(y, out); err != nil {
		t.Fatalf("decoding %s: %v\n%s", key, err, y)
	}
}

// userTLS are values for a certificate from a Secret of the user's.
func userTLS(caPEM string) map[string]any {
	return map[string]any{"tls": map[string]any{
		"certManager": map[string]any{"enabled": false},
		"secretName":  "injector-tls",
		"caBundle":    caPEM,
	}}
}

const testCAPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// TestChartLint: `helm lint` finds nothing, with the default values and
// with a user's Secret.
func TestChartLint(t *testing.T) {
	t.Parallel()
	kv, err := common.ParseKubeVersion(chartKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range map[string]map[string]any{"defaults": nil, "user secret": userTLS(testCAPEM)} {
		res := lint.RunAll(chartDir, values, "chittyid-system", lint.WithKubeVersion(kv))
		for _, m := range res.Messages {
			if m.Severity >= support.InfoSev && !strings.Contains(m.Err.Error(), "icon is recommended") {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
	}
}

// TestChart renders the chart and checks what the injector needs of it.
func TestChart(t *testing.T) {
	t.Parallel()
	const ns = "chittyid-system"
	r, err := renderChart(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	r.decode(t, "Deployment "+releaseName, &d)
	var pdb policyv1.PodDisruptionBudget
	r.decode(t, "PodDisruptionBudget "+releaseName, &pdb)
	var svc corev1.Service
	r.decode(t, "Service "+releaseName, &svc)
	var sa corev1.ServiceAccount
	r.decode(t, "ServiceAccount "+releaseName, &sa)
	var cm corev1.ConfigMap
	r.decode(t, "ConfigMap "+releaseName, &cm)
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	r.decode(t, "MutatingWebhookConfiguration "+releaseName, &mwc)

	t.Run("two replicas that a disruption budget keeps one of", func(t *testing.T) {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("replicas %v, want 2", d.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
			t.Errorf("PDB %+v does not keep one of the Deployment's pods %v", pdb.Spec, d.Spec.Template.Labels)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("the Service selects %v, not the Deployment's pods", svc.Spec.Selector)
		}
	})
	t.Run("the injector's pod meets restricted and needs no API access", func(t *testing.T) {
		if err := checkRestricted(&d.Spec.Template.Spec); err != nil {
			t.Error(err)
		}
		p := d.Spec.Template.Spec
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("the injector's ServiceAccount token is mounted: it calls no API")
		}
		for _, key := range r.order {
			if kind, _, _ := strings.Cut(key, " "); strings.Contains(kind, "Role") {
				t.Errorf("the chart renders %s: the injector needs no RBAC", key)
			}
		}
	})
	t.Run("the injector's config loads", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := inject.LoadConfig(path); err != nil {
			t.Errorf("%v\n%s", err, cm.Data["config.yaml"])
		}
	})
	t.Run("the webhooks", func(t *testing.T) {
		if err := checkWebhooks(&mwc, ns, releaseName, admissionregistrationv1.Fail); err != nil {
			t.Error(err)
		}
		if mwc.Annotations["cert-manager.io/inject-ca-from"] != ns+"/"+releaseName+"-serving" {
			t.Errorf("annotations %v: want cert-manager's CA injection from the serving Certificate", mwc.Annotations)
		}
		if _, ok := r.objects["Certificate "+releaseName+"-serving"]; !ok {
			t.Errorf("no serving Certificate in %v", r.order)
		}
	})
}

// checkRestricted: a pod spec the restricted Pod Security Standard admits
// (the API server test checks this for real).
func checkRestricted(p *corev1.PodSpec) error {
	var errs []error
	ps := p.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errs = append(errs, fmt.Errorf("pod securityContext %+v: want runAsNonRoot and seccompProfile RuntimeDefault", ps))
	}
	for _, c := range append(p.InitContainers, p.Containers...) {
		cs := c.SecurityContext
		if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation || cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			errs = append(errs, fmt.Errorf("container %s securityContext %+v: want allowPrivilegeEscalation false, capabilities.drop [ALL]", c.Name, cs))
		}
	}
	return errors.Join(errs...)
}

// checkWebhooks: two webhooks, one per opt-in, each sending only pods
// that opted in, never from kube-system or the injector's namespace.
func checkWebhooks(mwc *admissionregistrationv1.MutatingWebhookConfiguration, ns, svc string, policy admissionregistrationv1.FailurePolicyType) error {
	var errs []error
	paths := map[string]string{"pods.inject.id.chitty.cc": inject.PathMutate, "namespaces.inject.id.chitty.cc": inject.PathMutateNamespace}
	if len(mwc.Webhooks) != len(paths) {
		return fmt.Errorf("%d webhooks, want %d", len(mwc.Webhooks), len(paths))
	}
	for _, w := range mwc.Webhooks {
		want := func(ok bool, format string, a ...any) {
			if !ok {
				errs = append(errs, fmt.Errorf("webhook %s: "+format, append([]any{w.Name}, a...)...))
			}
		}
		want(w.FailurePolicy != nil && *w.FailurePolicy == policy, "failurePolicy %v, want %s", deref(w.FailurePolicy), policy)
		want(w.SideEffects != nil && *w.SideEffects == admissionregistrationv1.SideEffectClassNone, "sideEffects %v, want None", deref(w.SideEffects))
		want(w.TimeoutSeconds != nil && *w.TimeoutSeconds <= 10, "timeoutSeconds %v", deref(w.TimeoutSeconds))
		want(slices.Equal(w.AdmissionReviewVersions, []string{"v1"}), "admissionReviewVersions %v", w.AdmissionReviewVersions)
		s := w.ClientConfig.Service
		want(s != nil && s.Name == svc && s.Namespace == ns && s.Path != nil && *s.Path == paths[w.Name], "clientConfig %+v, want service %s/%s path %s", w.ClientConfig, ns, svc, paths[w.Name])
		want(len(w.Rules) == 1 && slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) &&
			slices.Equal(w.Rules[0].Resources, []string{"pods"}), "rules %+v: want pods, CREATE", w.Rules)
		want(len(w.MatchConditions) == 1, "matchConditions %v: only opted-in pods may reach the injector", w.MatchConditions)
		sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, excluded := range []string{"kube-system", ns} {
			want(!sel.Matches(labels.Set{"kubernetes.io/metadata.name": excluded, inject.LabelInject: inject.LabelInjectEnabled}) &&
				!sel.Matches(labels.Set{"kubernetes.io/metadata.name": excluded}), "namespaceSelector matches %s", excluded)
		}
		labelled := sel.Matches(labels.Set{"kubernetes.io/metadata.name": "team", inject.LabelInject: inject.LabelInjectEnabled})
		plain := sel.Matches(labels.Set{"kubernetes.io/metadata.name": "team"})
		want(labelled == (w.Name == "namespaces.inject.id.chitty.cc") && plain == (w.Name == "pods.inject.id.chitty.cc"),
			"namespaceSelector matches a labelled namespace: %v, a plain one: %v", labelled, plain)
	}
	return errors.Join(errs...)
}

// TestChartValuesAccepted: values the schema takes render a chart whose
// objects and injector config load: an external issuer, the sidecar's
// resources, one replica (no disruption budget, which would block every
// drain).
func TestChartValuesAccepted(t *testing.T) {
	t.Parallel()
	r, err := renderChart("ops", map[string]any{
		"replicas": 1,
		"tls": map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{
			"group": "awspca.cert-manager.io", "kind": "AWSPCAClusterIssuer", "name": "corp-ca"}}},
		"sidecar": map[string]any{"resources": map[string]any{
			"requests": map[string]any{"cpu": "20m", "memory": "64Mi"}, "limits": map[string]any{"cpu": 1, "memory": "256Mi"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range r.order {
		if strings.HasPrefix(key, "PodDisruptionBudget ") || strings.HasPrefix(key, "Issuer ") {
			t.Errorf("renders %s (one replica, an issuer of the user's)", key)
		}
	}
	var cert struct {
		Spec struct {
			IssuerRef map[string]string `json:"issuerRef"`
		} `json:"spec"`
	}
	if err := sigsyaml.Unmarshal(r.objects["Certificate "+releaseName+"-serving"], &cert); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"group": "awspca.cert-manager.io", "kind": "AWSPCAClusterIssuer", "name": "corp-ca"}; !maps.Equal(cert.Spec.IssuerRef, want) {
		t.Errorf("serving Certificate's issuerRef %v, want %v", cert.Spec.IssuerRef, want)
	}
	var cm corev1.ConfigMap
	r.decode(t, "ConfigMap "+releaseName, &cm)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := inject.LoadConfig(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, cm.Data["config.yaml"])
	}
	if got := cfg.Resources.Limits[corev1.ResourceMemory]; got.String() != "256Mi" {
		t.Errorf("the injector's sidecar memory limit %s, want the values' 256Mi", got.String())
	}
}

// TestChartValues: values change what they say, and bad values fail at
// install (values.schema.json) with the value's name.
func TestChartValues(t *testing.T) {
	t.Parallel()
	r, err := renderChart("ops", map[string]any{
		"webhook": map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": 3, "excludeNamespaces": []any{"legacy"}},
		"tls":     userTLS(testCAPEM)["tls"],
	})
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	r.decode(t, "MutatingWebhookConfiguration "+releaseName, &mwc)
	if err := checkWebhooks(&mwc, "ops", releaseName, admissionregistrationv1.Ignore); err != nil {
		t.Error(err)
	}
	for _, w := range mwc.Webhooks {
		sel, _ := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if sel.Matches(labels.Set{"kubernetes.io/metadata.name": "legacy", inject.LabelInject: inject.LabelInjectEnabled}) || sel.Matches(labels.Set{"kubernetes.io/metadata.name": "legacy"}) {
			t.Errorf("webhook %s: namespace legacy not excluded", w.Name)
		}
		if *w.TimeoutSeconds != 3 || string(w.ClientConfig.CABundle) != testCAPEM {
			t.Errorf("webhook %s: timeoutSeconds %d, caBundle %q", w.Name, *w.TimeoutSeconds, w.ClientConfig.CABundle)
		}
	}
	var d appsv1.Deployment
	r.decode(t, "Deployment "+releaseName, &d)
	if v := d.Spec.Template.Spec.Volumes[0]; v.Secret == nil || v.Secret.SecretName != "injector-tls" {
		t.Errorf("tls volume %+v: want the user's Secret", v)
	}
	for key := range r.objects {
		if strings.HasPrefix(key, "Certificate ") || strings.HasPrefix(key, "Issuer ") {
			t.Errorf("renders %s without cert-manager", key)
		}
	}

	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"failurePolicy", map[string]any{"webhook": map[string]any{"failurePolicy": "Sometimes"}}, "failurePolicy"},
		{"timeout over the API server's 30s", map[string]any{"webhook": map[string]any{"timeoutSeconds": 60}}, "timeoutSeconds"},
		{"replicas as text", map[string]any{"replicas": "two"}, "replicas"},
		{"misspelled key", map[string]any{"replica": 3}, "replica"},
		{"no Secret without cert-manager", map[string]any{"tls": map[string]any{"certManager": map[string]any{"enabled": false}}}, "secretName"},
		{"bad ConfigMap name", map[string]any{"sidecar": map[string]any{"configMap": "Bad_Name"}}, "configMap"},
		{"bad quantity", map[string]any{"sidecar": map[string]any{"maxResources": map[string]any{"memory": "lots"}}}, "memory"},
		{"sidecar resources without limits", map[string]any{"sidecar": map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "64Mi"}}}}, "limits"},
		{"sidecar limits without cpu", map[string]any{"sidecar": map[string]any{"resources": map[string]any{
			"requests": map[string]any{"cpu": "10m", "memory": "64Mi"}, "limits": map[string]any{"memory": "128Mi"}}}}, "cpu"},
		{"issuer without a name", map[string]any{"tls": map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer"}}}}, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderChart("ops", tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rendered with %v: error %v, want one naming %s", tc.values, err, tc.want)
			}
		})
	}
}
