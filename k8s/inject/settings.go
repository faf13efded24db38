package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The settings of the app's pod the sidecar wants. Each is added where the
// app set nothing and kept, with a warning, where the app chose otherwise:
// the injector never changes what the app set.

// promPrefix starts the annotations of Prometheus' annotation discovery.
const promPrefix = "prometheus.io/"

// annotate adds the status annotation and, on a pod with no Prometheus
// annotations of its own, the sidecar's.
func (in *Injector) annotate(p *patch, pod *corev1.Pod) []string {
	add := map[string]string{AnnotationStatus: StatusInjected}
	want := [][2]string{
		{promPrefix + "scrape", "true"},
		{promPrefix + "port", strconv.Itoa(int(in.opsPort))},
		{promPrefix + "path", "/metrics"},
	}
	var warnings []string
	if !hasPrefixKey(pod.Annotations, promPrefix) {
		for _, kv := range want {
			add[kv[0]] = kv[1]
		}
	} else if differ := promDiffers(pod.Annotations, want); differ != "" {
		warnings = append(warnings, fmt.Sprintf("chittyid-sidecar: kept the pod's %s: a pod has one set of Prometheus annotations, so the sidecar's /metrics (port %d, named %s) is not scraped through them; scrape it with a PodMonitor", differ, in.opsPort, opsPortName))
	}
	if pod.Annotations == nil {
		p.add("/metadata/annotations", add)
		return warnings
	}
	for _, k := range sortedKeys(add) {
		p.add("/metadata/annotations/"+escapePointer(k), add[k])
	}
	return warnings
}

func hasPrefixKey(m map[string]string, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// promDiffers names the app's Prometheus annotations that differ from the
// sidecar's, or returns "" (one the app left out takes Prometheus'
// default, which is the sidecar's path, or the pod's declared port).
func promDiffers(a map[string]string, want [][2]string) string {
	var d []string
	for _, kv := range want {
		if v, ok := a[kv[0]]; ok && v != kv[1] {
			d = append(d, fmt.Sprintf("%s %q", kv[0], v))
		}
	}
	return strings.Join(d, ", ")
}

// fsGroup gives a pod without an fsGroup the sidecar's group: the token
// Secret's files are 0440, group-owned by the pod's fsGroup, which every
// container of the pod runs in as a supplemental group. A pod with an
// fsGroup of its own keeps it: the sidecar reads the token through it.
func (in *Injector) fsGroup(p *patch, pod *corev1.Pod) {
	sc := pod.Spec.SecurityContext
	switch {
	case sc == nil:
		p.add("/spec/securityContext", corev1.PodSecurityContext{FSGroup: &in.group})
	case sc.FSGroup == nil:
		p.add("/spec/securityContext/fsGroup", in.group)
	}
}

// gracePeriod sets the pod's terminationGracePeriodSeconds where it has
// none, and warns when the app's is too short for the sidecar's drain. The
// API server defaults it to 30 before the injector sees the pod, so a pod
// that sets none gets the warning too: it cannot be told from one that
// chose 30.
func (in *Injector) gracePeriod(p *patch, pod *corev1.Pod) []string {
	min := in.cfg.MinTerminationGracePeriodSeconds
	g := pod.Spec.TerminationGracePeriodSeconds
	if g == nil {
		p.add("/spec/terminationGracePeriodSeconds", min)
		return nil
	}
	if *g >= min {
		return nil
	}
	return []string{fmt.Sprintf("chittyid-sidecar: kept the pod's terminationGracePeriodSeconds %d (Kubernetes sets %d when a pod sets none): the sidecar drains after the app has stopped and needs %d in all; set terminationGracePeriodSeconds: %d in the pod template", *g, corev1.DefaultTerminationGracePeriodSeconds, min, min)}
}

// appEnv points the app's containers (and its own init containers, which
// run after the sidecar has started) at the sidecar, where they do not set
// CHITTYID_SERVICE_URL already.
func (in *Injector) appEnv(p *patch, pod *corev1.Pod, port int32) []string {
	url := fmt.Sprintf("http://127.0.0.1:%d/v1", port)
	var warnings []string
	for _, list := range []struct {
		path string
		cs   []corev1.Container
	}{{"/spec/initContainers", pod.Spec.InitContainers}, {"/spec/containers", pod.Spec.Containers}} {
		for i, c := range list.cs {
			path := fmt.Sprintf("%s/%d/env", list.path, i)
			if w := envFor(p, path, c, url); w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	return warnings
}

// envFor adds CHITTYID_SERVICE_URL to container c at path, or says why not.
func envFor(p *patch, path string, c corev1.Container, url string) string {
	for _, e := range c.Env {
		if e.Name != EnvServiceURL {
			continue
		}
		if e.ValueFrom != nil {
			return fmt.Sprintf("chittyid-sidecar: kept container %s's own %s (from a reference): the sidecar is at %s", c.Name, EnvServiceURL, url)
		}
		if e.Value != url {
			return fmt.Sprintf("chittyid-sidecar: kept container %s's own %s %q: it does not call the sidecar at %s", c.Name, EnvServiceURL, e.Value, url)
		}
		return ""
	}
	if len(c.EnvFrom) > 0 {
		// env would win over a value envFrom may bring: not added.
		return fmt.Sprintf("chittyid-sidecar: container %s has envFrom, which may set %s: not added; set %s=%s in its env to call the sidecar", c.Name, EnvServiceURL, EnvServiceURL, url)
	}
	v := corev1.EnvVar{Name: EnvServiceURL, Value: url}
	if len(c.Env) == 0 {
		p.add(path, []corev1.EnvVar{v})
	} else {
		p.add(path+"/-", v)
	}
	return ""
}

// patch is a JSON Patch (RFC 6902) of add operations, applied in order.
type patch []patchOp

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (p *patch) add(path string, value any) {
	*p = append(*p, patchOp{Op: "add", Path: path, Value: value})
}

// escapePointer escapes a map key for a JSON Pointer (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
