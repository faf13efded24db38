package inject

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testPod is an app's pod as the API server hands it to a webhook: its
// grace period defaulted to 30, which the cases change.
func testPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team", Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(45)),
			InitContainers:                []corev1.Container{{Name: "migrate", Image: "app:1"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "LOG", Value: "info"}}},
				{Name: "worker", Image: "app:1"},
			},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func newInjector(t *testing.T, cfg Config) *Injector {
	t.Helper()
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// apply applies the patch to pod as the API server does and decodes the
// result.
func apply(t *testing.T, pod *corev1.Pod, p []byte) *corev1.Pod {
	t.Helper()
	orig, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		return pod
	}
	dec, err := jsonpatch.DecodePatch(p)
	if err != nil {
		t.Fatalf("decoding the patch %s: %v", p, err)
	}
	out, err := dec.Apply(orig)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", p, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func volumeOf(p *corev1.Pod, name string) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

// TestInjectsTheComponentsSidecar: an annotated pod gets the component's
// container, first among the init containers, its volumes, the app's
// service URL and the status annotation, and keeps everything of its own.
func TestInjectsTheComponentsSidecar(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	pod := testPod(map[string]string{AnnotationInject: "true", "team": "payments"})
	res, err := in.Mutate(pod, ByAnnotation)
	if err != nil || res.Outcome != OutcomeInjected {
		t.Fatalf("Mutate: %v, %v", res.Outcome, err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings for a pod that set nothing the sidecar needs: %q", res.Warnings)
	}
	got := apply(t, pod, res.Patch)

	tpl, err := componentPod()
	if err != nil {
		t.Fatal(err)
	}
	if names := containerNames(got.Spec.InitContainers); !slices.Equal(names, []string{SidecarName, "migrate"}) {
		t.Fatalf("init containers %v: want the sidecar first, then the app's", names)
	}
	if !reflect.DeepEqual(got.Spec.InitContainers[0], tpl.InitContainers[0]) {
		t.Errorf("the sidecar differs from the component's:\n got %+v\nwant %+v", got.Spec.InitContainers[0], tpl.InitContainers[0])
	}
	for _, v := range tpl.Volumes {
		if g := volumeOf(got, v.Name); g == nil || !reflect.DeepEqual(*g, v) {
			t.Errorf("volume %s: got %+v, want the component's %+v", v.Name, g, v)
		}
	}
	if volumeOf(got, "scratch") == nil {
		t.Error("the app's volume scratch is gone")
	}
	for _, c := range append(got.Spec.Containers, got.Spec.InitContainers[1]) {
		if v, _ := envOf(c, EnvServiceURL); v != "http://127.0.0.1:8787/v1" {
			t.Errorf("container %s: %s=%q, want the sidecar's API", c.Name, EnvServiceURL, v)
		}
	}
	if v, _ := envOf(got.Spec.Containers[0], "LOG"); v != "info" {
		t.Error("the app's own env is gone")
	}
	if _, ok := envOf(got.Spec.InitContainers[0], EnvServiceURL); ok {
		t.Errorf("the sidecar got %s, which would override its upstream.url", EnvServiceURL)
	}
	want := map[string]string{
		AnnotationInject: "true", "team": "payments", AnnotationStatus: StatusInjected,
		"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
	}
	if !reflect.DeepEqual(got.Annotations, want) {
		t.Errorf("annotations %v, want %v", got.Annotations, want)
	}
	if *got.Spec.TerminationGracePeriodSeconds != 45 {
		t.Errorf("grace period changed to %d", *got.Spec.TerminationGracePeriodSeconds)
	}
	if sc := got.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 {
		t.Errorf("pod securityContext %+v: want fsGroup 65532, the group of the 0440 token, where the pod had none", sc)
	}
}

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// TestOptIn: who gets the sidecar, by annotation and namespace label.
func TestOptIn(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	injected := apply(t, testPod(map[string]string{AnnotationInject: "true"}), must(t, in, testPod(map[string]string{AnnotationInject: "true"}), ByAnnotation).Patch)
	componentMade := testPod(nil)
	componentMade.Spec.InitContainers = append([]corev1.Container{{Name: SidecarName, Image: "x"}}, componentMade.Spec.InitContainers...)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		mode Mode
		want string
	}{
		{"annotated", testPod(map[string]string{AnnotationInject: "true"}), ByAnnotation, OutcomeInjected},
		{"not annotated", testPod(nil), ByAnnotation, OutcomeNotRequested},
		{"annotated false", testPod(map[string]string{AnnotationInject: "false"}), ByAnnotation, OutcomeOptedOut},
		{"labelled namespace", testPod(nil), ByNamespace, OutcomeInjected},
		{"labelled namespace, annotated true", testPod(map[string]string{AnnotationInject: "true"}), ByNamespace, OutcomeInjected},
		{"labelled namespace, opted out", testPod(map[string]string{AnnotationInject: "false"}), ByNamespace, OutcomeOptedOut},
		{"already injected", injected, ByAnnotation, OutcomeAlreadyInjected},
		{"already injected, labelled namespace", injected, ByNamespace, OutcomeAlreadyInjected},
		{"sidecar from the component", componentMade, ByNamespace, OutcomeAlreadyInjected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := in.Mutate(tc.pod, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s", res.Outcome, tc.want)
			}
			if (res.Patch != nil) != (tc.want == OutcomeInjected) {
				t.Errorf("patch %s for outcome %s", res.Patch, res.Outcome)
			}
		})
	}
}

func must(t *testing.T, in *Injector, pod *corev1.Pod, mode Mode) Result {
	t.Helper()
	res, err := in.Mutate(pod, mode)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestKeepsTheAppsSettings: where the app chose a setting the sidecar
// wants otherwise, the pod keeps the app's value and the client gets a
// warning naming it.
func TestKeepsTheAppsSettings(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	for _, tc := range []struct {
		name  string
		edit  func(*corev1.Pod)
		check func(*corev1.Pod) bool
		warn  string // "" for none
	}{
		{"grace period 60", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(60)) },
			func(p *corev1.Pod) bool { return *p.Spec.TerminationGracePeriodSeconds == 60 }, ""},
		{"grace period 30 (the default)", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(30)) },
			func(p *corev1.Pod) bool { return *p.Spec.TerminationGracePeriodSeconds == 30 }, "terminationGracePeriodSeconds 30"},
		{"no grace period", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = nil },
			func(p *corev1.Pod) bool { return *p.Spec.TerminationGracePeriodSeconds == 45 }, ""},
		{"the app's own scrape port", func(p *corev1.Pod) {
			p.Annotations["prometheus.io/scrape"], p.Annotations["prometheus.io/port"] = "true", "8080"
		}, func(p *corev1.Pod) bool {
			return p.Annotations["prometheus.io/port"] == "8080" && p.Annotations["prometheus.io/path"] == ""
		}, `prometheus.io/port "8080"`},
		{"the sidecar's scrape annotations already", func(p *corev1.Pod) {
			p.Annotations["prometheus.io/scrape"], p.Annotations["prometheus.io/port"], p.Annotations["prometheus.io/path"] = "true", "9090", "/metrics"
		}, func(p *corev1.Pod) bool { return p.Annotations["prometheus.io/port"] == "9090" }, ""},
		{"the app's own service URL", func(p *corev1.Pod) {
			p.Spec.Containers[1].Env = []corev1.EnvVar{{Name: EnvServiceURL, Value: "https://id.chitty.cc/v1"}}
		}, func(p *corev1.Pod) bool {
			v, _ := envOf(p.Spec.Containers[1], EnvServiceURL)
			return v == "https://id.chitty.cc/v1" && len(p.Spec.Containers[1].Env) == 1
		}, `kept container worker's own CHITTYID_SERVICE_URL "https://id.chitty.cc/v1"`},
		{"the service URL already the sidecar's", func(p *corev1.Pod) {
			p.Spec.Containers[1].Env = []corev1.EnvVar{{Name: EnvServiceURL, Value: "http://127.0.0.1:8787/v1"}}
		}, func(p *corev1.Pod) bool { return len(p.Spec.Containers[1].Env) == 1 }, ""},
		{"envFrom", func(p *corev1.Pod) {
			p.Spec.Containers[1].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}}}}
		}, func(p *corev1.Pod) bool { _, ok := envOf(p.Spec.Containers[1], EnvServiceURL); return !ok }, "container worker has envFrom"},
		{"the app's fsGroup", func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(1000))} },
			func(p *corev1.Pod) bool { return *p.Spec.SecurityContext.FSGroup == 1000 }, ""},
		{"a securityContext without fsGroup", func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)} },
			func(p *corev1.Pod) bool {
				return *p.Spec.SecurityContext.FSGroup == 65532 && *p.Spec.SecurityContext.RunAsNonRoot
			}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := testPod(map[string]string{AnnotationInject: "true"})
			tc.edit(pod)
			res := must(t, in, pod, ByAnnotation)
			got := apply(t, pod, res.Patch)
			if !tc.check(got) {
				t.Errorf("the app's setting changed: %+v %+v", got.Annotations, got.Spec)
			}
			switch {
			case tc.warn == "" && len(res.Warnings) > 0:
				t.Errorf("unexpected warnings %q", res.Warnings)
			case tc.warn != "" && (len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], tc.warn)):
				t.Errorf("warnings %q, want one containing %q", res.Warnings, tc.warn)
			}
			for _, w := range res.Warnings {
				if len(w) > 256 {
					t.Errorf("warning of %d characters: the API server may truncate it: %q", len(w), w)
				}
			}
		})
	}
}

// TestAnnotationsChoose: names, image, resources and the API port from
// the pod's annotations, within the config's bounds.
func TestAnnotationsChoose(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{AllowedImages: []string{"ghcr.io/chittyos/chittyid-sidecar", "registry.example.com/mirror/chittyid-sidecar"}})
	pod := testPod(map[string]string{
		AnnotationInject:        "true",
		AnnotationConfigMap:     "orders-sidecar",
		AnnotationTokenSecret:   "orders-token",
		AnnotationImage:         "registry.example.com/mirror/chittyid-sidecar:1.2.3",
		AnnotationMemoryLimit:   "256Mi",
		AnnotationMemoryRequest: "128Mi",
		AnnotationCPULimit:      "1",
		AnnotationAPIPort:       "9797",
	})
	got := apply(t, pod, must(t, in, pod, ByAnnotation).Patch)
	s := got.Spec.InitContainers[0]
	if v := volumeOf(got, volumeConfig); v.ConfigMap.Name != "orders-sidecar" {
		t.Errorf("config volume references %s", v.ConfigMap.Name)
	}
	if v := volumeOf(got, volumeToken); v.Secret.SecretName != "orders-token" {
		t.Errorf("token volume references %s", v.Secret.SecretName)
	}
	if s.Image != "registry.example.com/mirror/chittyid-sidecar:1.2.3" {
		t.Errorf("image %s", s.Image)
	}
	if l := s.Resources.Limits[corev1.ResourceMemory]; l.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("memory limit %s", l.String())
	}
	if l := s.Resources.Requests[corev1.ResourceCPU]; l.Cmp(resource.MustParse("50m")) != 0 {
		t.Errorf("cpu request %s: want the default", l.String())
	}
	if v, _ := envOf(s, "GOMEMLIMIT"); v != "200MiB" {
		t.Errorf("GOMEMLIMIT %s for a 256Mi limit, want 200MiB", v)
	}
	if v, _ := envOf(s, envListen); v != "127.0.0.1:9797" {
		t.Errorf("%s=%q", envListen, v)
	}
	if v, _ := envOf(got.Spec.Containers[0], EnvServiceURL); v != "http://127.0.0.1:9797/v1" {
		t.Errorf("the app's URL %s", v)
	}
}

// TestDenials: a pod that asks for the sidecar in a way it cannot have is
// refused with a message naming the problem; every problem is named.
func TestDenials(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	for _, tc := range []struct {
		name string
		ann  map[string]string
		edit func(*corev1.Pod)
		want []string
	}{
		{"bad names", map[string]string{AnnotationConfigMap: "Not_A_Name", AnnotationTokenSecret: ""}, nil,
			[]string{"id.chitty.cc/config-map \"Not_A_Name\"", "id.chitty.cc/token-secret \"\""}},
		{"image not allowed", map[string]string{AnnotationImage: "evil.example.com/sidecar:1"}, nil, []string{"allows only images of"}},
		{"memory over the maximum", map[string]string{AnnotationMemoryLimit: "8Gi"}, nil, []string{"above the injector's maximum 1Gi"}},
		{"memory under the minimum", map[string]string{AnnotationMemoryLimit: "32Mi", AnnotationMemoryRequest: "32Mi"}, nil, []string{"below the injector's minimum 64Mi"}},
		{"request over limit", map[string]string{AnnotationCPURequest: "2"}, nil, []string{"cpu request 2 is above its limit 500m"}},
		{"not a quantity", map[string]string{AnnotationCPULimit: "lots"}, nil, []string{"id.chitty.cc/cpu-limit \"lots\""}},
		{"privileged port", map[string]string{AnnotationAPIPort: "80"}, nil, []string{"want a port from 1024 to 65535"}},
		{"the ops port", map[string]string{AnnotationAPIPort: "9090"}, nil, []string{"operations listener uses port 9090"}},
		{"volume name taken", nil, func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: volumeToken}) },
			[]string{"already has a volume named chittyid-token"}},
		{"hostNetwork", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }, []string{"hostNetwork"}},
		{"the app's port is the API's", nil, func(p *corev1.Pod) { p.Spec.Containers[1].Ports = []corev1.ContainerPort{{ContainerPort: 8787}} },
			[]string{"container worker declares port 8787", "id.chitty.cc/api-port"}},
		{"the app's port is the API's moved there", map[string]string{AnnotationAPIPort: "8080"},
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
			},
			[]string{"container app declares port 8080"}},
		{"the app's port is the ops port", nil, func(p *corev1.Pod) { p.Spec.InitContainers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9090}} },
			[]string{"container migrate declares port 9090", "operations listener"}},
		{"inject neither true nor false", map[string]string{AnnotationInject: "yes"}, nil, []string{`must be "true" or "false", got "yes"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := map[string]string{AnnotationInject: "true"}
			for k, v := range tc.ann {
				a[k] = v
			}
			pod := testPod(a)
			if tc.edit != nil {
				tc.edit(pod)
			}
			_, err := in.Mutate(pod, ByNamespace)
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestIdempotent: the injected pod, reviewed again (another webhook's
// reinvocation, a second matching webhook), comes out unchanged.
func TestIdempotent(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	pod := testPod(map[string]string{AnnotationInject: "true"})
	once := apply(t, pod, must(t, in, pod, ByAnnotation).Patch)
	for _, mode := range []Mode{ByAnnotation, ByNamespace} {
		res := must(t, in, once, mode)
		if res.Patch != nil || res.Outcome != OutcomeAlreadyInjected {
			t.Errorf("mode %d: second review gave %s %s", mode, res.Outcome, res.Patch)
		}
	}
}

// TestEmptyPod: a pod with no annotations, init containers, volumes or
// env gets them created rather than appended to.
func TestEmptyPod(t *testing.T) {
	t.Parallel()
	in := newInjector(t, Config{})
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	got := apply(t, pod, must(t, in, pod, ByNamespace).Patch)
	if len(got.Spec.InitContainers) != 1 || len(got.Spec.Volumes) != 3 || got.Annotations[AnnotationStatus] != StatusInjected {
		t.Errorf("got %+v", got)
	}
	if *got.Spec.TerminationGracePeriodSeconds != 45 {
		t.Errorf("grace period %v, want 45 where the pod had none", got.Spec.TerminationGracePeriodSeconds)
	}
}

// TestConfig: the config file is strict and its bounds are checked.
func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "imagee: x", `unknown field "imagee"`},
		{"image outside allowed", "image: other/sidecar:1\nallowedImages: [ghcr.io/chittyos/chittyid-sidecar]", "not in allowedImages"},
		{"bad port range", "apiPorts: {min: 9000, max: 8000}", "apiPorts 9000-8000"},
		{"resources over max", "resources: {requests: {cpu: 1, memory: 2Gi}, limits: {cpu: 1, memory: 2Gi}}", "above the injector's maximum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := t.TempDir() + "/config.yaml"
			if err := writeFile(path, tc.yaml); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	c, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Image != "ghcr.io/chittyos/chittyid-sidecar:latest" || c.ConfigMap != "chittyid-sidecar-config" || c.TokenSecret != "chittyid-token" || c.APIPort != 8787 {
		t.Errorf("defaults %+v: want the component's", c)
	}
}
