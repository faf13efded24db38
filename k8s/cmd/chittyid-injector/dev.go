package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	component "github.com/chittyos/chittyid-sidecar/k8s/components/chittyid-sidecar"
	"github.com/chittyos/chittyid-sidecar/k8s/inject"
	"github.com/chittyos/chittyid-sidecar/k8s/internal/kubeapi"
)

// dev starts a real etcd and kube-apiserver on loopback, the injector
// registered as their webhook, creates an annotated pod in a namespace
// that enforces restricted and prints it, then waits for Ctrl-C (or, with
// --once, stops).
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "stop after showing the injected pod")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if err := findBinaries(ctx, stderr); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "chittyid-injector-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(stderr, "dev: starting etcd and kube-apiserver on loopback (logs in "+dir+")")
	cluster, err := kubeapi.Start(ctx, kubeapi.Options{Dir: dir})
	if err != nil {
		return err
	}
	defer cluster.Stop()

	inj, err := cluster.ServeInjector(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer inj.Stop()
	url := inj.URL
	if err := demo(ctx, cluster, url, stdout); err != nil {
		return err
	}
	kubeconfig, err := writeKubeconfig(cluster, dir)
	if err != nil {
		return err
	}
	if *once {
		return nil
	}
	fmt.Fprintf(stdout, `
The API server (%s) and the injector (%s) run until Ctrl-C. With kubectl:

  export KUBECONFIG=%s
  kubectl -n demo run try --image=registry.example.com/app:1 --annotations=id.chitty.cc/inject=true \
    --overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"try","image":"registry.example.com/app:1","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
  kubectl -n demo get pod try -o yaml

(No kubelet runs: pods are admitted and stored, never started.)
`, cluster.URL, url, kubeconfig)
	<-ctx.Done()
	return nil
}

// findBinaries sets the environment's kube-apiserver and etcd from
// .ci/k8s-tools, which builds them on first use (minutes) and then reuses
// the cached build, when they are not set already.
func findBinaries(ctx context.Context, stderr io.Writer) error {
	if _, _, err := kubeapi.Binaries(); err == nil {
		return nil
	}
	script, err := findUp(filepath.Join(".ci", "k8s-tools"))
	if err != nil {
		return fmt.Errorf("dev needs kube-apiserver and etcd: set %s and %s, or run it in a clone of the repository, whose .ci/k8s-tools builds them", kubeapi.EnvAPIServer, kubeapi.EnvEtcd)
	}
	fmt.Fprintln(stderr, "dev: building or finding kube-apiserver and etcd with "+script+" (the first build takes minutes)")
	cmd := exec.CommandContext(ctx, "bash", script)
	// Its own process group, all of it stopped with ctx: the script's go
	// build and the compilers under it, not the script alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("running %s: %w", script, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		kv, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		os.Setenv(k, v)
	}
	_, _, err = kubeapi.Binaries()
	return err
}

// findUp returns the path of rel in the working directory or the nearest
// parent that has it.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// webhooks is the chart's MutatingWebhookConfiguration
// (helm/chittyid-injector) pointed at the injector's URL.
func webhooks(url string, caPEM []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail, none, never := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.NeverReinvocationPolicy
	scope := admissionregistrationv1.NamespacedScope
	hook := func(name, path string, op metav1.LabelSelectorOperator, cond admissionregistrationv1.MatchCondition) admissionregistrationv1.MutatingWebhook {
		u := url + path
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          ptr(int32(5)),
			ReinvocationPolicy:      &never,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}},
				{Key: inject.LabelInject, Operator: op, Values: []string{inject.LabelInjectEnabled}},
			}},
			MatchConditions: []admissionregistrationv1.MatchCondition{cond},
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "chittyid-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			hook("pods.inject.id.chitty.cc", inject.PathMutate, metav1.LabelSelectorOpNotIn, admissionregistrationv1.MatchCondition{
				Name:       "annotated",
				Expression: "has(object.metadata.annotations) && 'id.chitty.cc/inject' in object.metadata.annotations && object.metadata.annotations['id.chitty.cc/inject'] == 'true'",
			}),
			hook("namespaces.inject.id.chitty.cc", inject.PathMutateNamespace, metav1.LabelSelectorOpIn, admissionregistrationv1.MatchCondition{
				Name:       "not-opted-out",
				Expression: "!has(object.metadata.annotations) || !('id.chitty.cc/inject' in object.metadata.annotations) || object.metadata.annotations['id.chitty.cc/inject'] != 'false'",
			}),
		},
	}
}

// demo registers the webhooks, makes the namespace demo (restricted, with
// the sidecar's ConfigMap and a placeholder token) and creates an
// annotated pod, printing what came out.
func demo(ctx context.Context, c *kubeapi.Cluster, url string, stdout io.Writer) error {
	cl := c.Client
	if _, err := cl.Create(ctx, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", webhooks(url, c.CA.CertPEM), nil); err != nil {
		return fmt.Errorf("registering the webhooks: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	steps := []struct {
		path string
		obj  any
	}{
		{"/api/v1/namespaces", ns},
		{"/api/v1/namespaces/demo/serviceaccounts", &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}},
		{"/api/v1/namespaces/demo/configmaps", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "chittyid-sidecar-config"}, Data: map[string]string{"config.yaml": string(component.Config())}}},
		{"/api/v1/namespaces/demo/secrets", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chittyid-token"}, StringData: map[string]string{"token": "placeholder"}}},
	}
	for _, s := range steps {
		if _, err := cl.Create(ctx, s.path, s.obj, nil); err != nil {
			return err
		}
	}
	pod := kubeapi.RestrictedPod("demo-app", map[string]string{inject.AnnotationInject: "true"})
	fmt.Fprintf(stdout, "Creating this pod in namespace demo (enforcing the restricted Pod Security Standard):\n\n%s\n", mustYAML(pod))
	// The API server takes the webhook configuration up from a watch:
	// dry runs until one comes back injected.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var got corev1.Pod
		if _, err := cl.Create(ctx, "/api/v1/namespaces/demo/pods?dryRun=All", pod, &got); err != nil {
			return fmt.Errorf("creating the demo pod (dry run): %w", err)
		}
		if got.Annotations[inject.AnnotationStatus] == inject.StatusInjected {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the API server did not call the injector within 30s of registering it")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var got corev1.Pod
	resp, err := cl.Create(ctx, "/api/v1/namespaces/demo/pods", pod, &got)
	if err != nil {
		return fmt.Errorf("creating the demo pod: %w", err)
	}
	for _, w := range resp.Warnings {
		fmt.Fprintln(stdout, "Warning:", w)
	}
	got.ManagedFields = nil
	fmt.Fprintf(stdout, "The API server stored it, injected (annotation %s: %s):\n\n%s", inject.AnnotationStatus, got.Annotations[inject.AnnotationStatus], mustYAML(&got))
	return nil
}

// writeKubeconfig writes a kubeconfig for kubectl and returns its path.
func writeKubeconfig(c *kubeapi.Cluster, dir string) (string, error) {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: dev
  user:
    token: %s
contexts:
- name: dev
  context: {cluster: dev, user: dev, namespace: demo}
current-context: dev
`, c.URL, base64.StdEncoding.EncodeToString(c.CA.CertPEM), c.Token)
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

func mustYAML(v any) string {
	y, err := sigsyaml.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(y)
}

func ptr[T any](v T) *T { return &v }
