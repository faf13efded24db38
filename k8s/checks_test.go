package k8s

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/chittyos/chittyid-sidecar/config"
)

// Each check returns nil or every problem it found (errors.Join), so that
// TestBase runs it on the base and TestChecksCatchMistakes on broken copies.

// checkNativeSidecar: the sidecar is an init container that keeps running
// (restartPolicy Always), so it starts before the app and stops after it.
func checkNativeSidecar(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		return fmt.Errorf("init container %s needs restartPolicy: Always to be a native sidecar, got %v", c.Name, c.RestartPolicy)
	}
	return nil
}

// checkImageDefaults: the sidecar runs the image's entrypoint with the
// Dockerfile's default args, serve --config FILE.
func checkImageDefaults(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	if len(c.Command) != 0 {
		errs = append(errs, fmt.Errorf("the sidecar overrides the image's ENTRYPOINT with command %q", c.Command))
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		errs = append(errs, fmt.Errorf("the sidecar's args must start with serve, got %q", c.Args))
	}
	entry, err := dockerfileExec(b.dockerfile, "ENTRYPOINT")
	if err != nil {
		errs = append(errs, err)
	} else if len(entry) != 1 || entry[0] != "/chittyid-sidecar" {
		errs = append(errs, fmt.Errorf("the Dockerfile's ENTRYPOINT must be the binary alone, got %q", entry))
	}
	cmd, err := dockerfileExec(b.dockerfile, "CMD")
	if err != nil {
		errs = append(errs, err)
	} else if !slices.Equal(cmd, c.Args) {
		errs = append(errs, fmt.Errorf("the sidecar's args %q differ from the Dockerfile's CMD %q", c.Args, cmd))
	}
	return errors.Join(errs...)
}

// checkConfigFile: --config names a key of the ConfigMap through a directory
// mount, and the ConfigMap keeps its name, so that edits reach the pod.
func checkConfigFile(b *base) error {
	f, _, err := b.configFile()
	if err != nil {
		return err
	}
	var errs []error
	if b.configMap.Name != b.generatorName {
		errs = append(errs, fmt.Errorf("ConfigMap %s is not named %s as kustomization.yaml declares: a hashed name makes every edit a rollout instead of a reload (options.disableNameSuffixHash)", b.configMap.Name, b.generatorName))
	}
	if b.configMap.Immutable != nil && *b.configMap.Immutable {
		errs = append(errs, fmt.Errorf("ConfigMap %s is immutable: it could not be edited live", b.configMap.Name))
	}
	if f.volume.ConfigMap.Optional != nil && *f.volume.ConfigMap.Optional {
		errs = append(errs, errors.New("the config volume is optional: a missing ConfigMap would start the sidecar without its file"))
	}
	return errors.Join(errs...)
}

// checkConfigValid: the ConfigMap's YAML passes config.Parse, the same
// strict decode and validation the sidecar runs at start and on reload.
func checkConfigValid(b *base) error {
	_, err := b.effectiveConfig()
	return err
}

// checkTokenFile: upstream.tokenFile is a key of the Secret, mounted as a
// directory so that a rotated token reaches the pod, and the Secret's value
// is a usable token (effectiveConfig sends it through config.Parse).
func checkTokenFile(b *base) error {
	path, f, _, err := b.tokenFile()
	if err != nil {
		return err
	}
	var errs []error
	if !strings.HasPrefix(path, "/") {
		errs = append(errs, fmt.Errorf("upstream.tokenFile %s is relative: it would depend on the working directory", path))
	}
	if b.secret.Immutable != nil && *b.secret.Immutable {
		errs = append(errs, fmt.Errorf("Secret %s is immutable: the token could not be rotated in place", b.secret.Name))
	}
	if b.secret.Type != corev1.SecretTypeOpaque {
		errs = append(errs, fmt.Errorf("Secret %s has type %q, want Opaque", b.secret.Name, b.secret.Type))
	}
	if f.mode&0o333 != 0 {
		errs = append(errs, fmt.Errorf("the token file has mode %#o: want read bits only (write defaultMode in octal, 0440; 440 is decimal)", f.mode))
	}
	if f.volume.Secret.Optional != nil && *f.volume.Secret.Optional {
		errs = append(errs, errors.New("the token volume is optional: a missing Secret would start the sidecar without a token"))
	}
	return errors.Join(errs...)
}

// checkFilesReadable: the sidecar's user can read its config and token
// files. Volume files belong to root, and to the pod's fsGroup if set.
func checkFilesReadable(b *base) error {
	cf, _, err := b.configFile()
	if err != nil {
		return err
	}
	_, tf, _, err := b.tokenFile()
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range []file{cf, tf} {
		other := f.mode&0o004 != 0
		group := f.mode&0o040 != 0 && b.pod().SecurityContext != nil && b.pod().SecurityContext.FSGroup != nil
		if !other && !group {
			errs = append(errs, fmt.Errorf("key %s of volume %s has mode %#o: user %d can read it only with o+r, or g+r and a pod fsGroup", f.key, f.volume.Name, f.mode, imageUser))
		}
	}
	return errors.Join(errs...)
}

// checkProbePaths: liveness and startup ask /healthz, readiness asks
// /readyz, all over plain HTTP. Startup waits for the listener, not for
// upstream: a startup failure restarts the container, and an upstream outage
// must never restart the sidecar (docs/lifecycle.md, "Probes and readiness").
func checkProbePaths(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range sidecarProbes(c) {
		switch {
		case p.probe == nil:
			errs = append(errs, fmt.Errorf("the sidecar has no %s", p.name))
		case p.probe.HTTPGet == nil:
			errs = append(errs, fmt.Errorf("%s must be httpGet: the image has no shell or curl for exec", p.name))
		case p.probe.HTTPGet.Path != p.path:
			errs = append(errs, fmt.Errorf("%s asks %q, want %s", p.name, p.probe.HTTPGet.Path, p.path))
		case p.probe.HTTPGet.Scheme != "" && p.probe.HTTPGet.Scheme != corev1.URISchemeHTTP:
			errs = append(errs, fmt.Errorf("%s uses scheme %s; the sidecar serves plain HTTP", p.name, p.probe.HTTPGet.Scheme))
		}
	}
	return errors.Join(errs...)
}

type namedProbe struct {
	name  string
	probe *corev1.Probe
	path  string // what the sidecar serves for it
}

func sidecarProbes(c *corev1.Container) []namedProbe {
	return []namedProbe{
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	}
}

// checkAPIOnLoopback: the API (mint, validate) spends the upstream token, so
// it listens on the pod's loopback only, where the app calls it. The kubelet
// and Prometheus get the operations listener (metrics.listen) instead.
func checkAPIOnLoopback(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	host, _, err := addrPort("listen", cfg.Listen)
	if err != nil {
		return err
	}
	if !isLoopback(host) {
		return fmt.Errorf("listen %s is not a loopback address: the API mints with the upstream token and only the app, inside the pod, calls it; listen on 127.0.0.1 (or [::1], localhost) and give the kubelet and Prometheus metrics.listen on 0.0.0.0 instead (k8s/README.md)", cfg.Listen)
	}
	return nil
}

// checkOpsListener: metrics.listen, which serves /metrics and the probes
// only, is set on every address of the pod (the kubelet and Prometheus
// connect to the pod IP) at a fixed port of its own, which the sidecar
// declares; the API's port, reachable inside the pod only, is declared by
// no container.
func checkOpsListener(b *base) error {
	cfg, ops, err := b.opsPort()
	if err != nil {
		return err
	}
	_, api, err := addrPort("listen", cfg.Listen)
	if err != nil {
		return err
	}
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	host, _, _ := net.SplitHostPort(cfg.Metrics.Listen)
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("metrics.listen %s: the kubelet's probes and Prometheus connect to the pod IP; listen on 0.0.0.0 (or [::])", cfg.Metrics.Listen))
	}
	if ops == api {
		errs = append(errs, fmt.Errorf("metrics.listen %s and listen %s share port %d: the wildcard address covers the loopback, so the second listener cannot bind", cfg.Metrics.Listen, cfg.Listen, ops))
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.ContainerPort == ops && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP)
	}) {
		errs = append(errs, fmt.Errorf("the sidecar declares no TCP containerPort %d for metrics.listen %s: declare it (named, e.g. ops) for the probes and Prometheus", ops, cfg.Metrics.Listen))
	}
	for _, c := range append(slices.Clone(b.pod().InitContainers), b.pod().Containers...) {
		for _, p := range c.Ports {
			if p.ContainerPort == api {
				errs = append(errs, fmt.Errorf("container %s declares containerPort %d, the API's port: the API listens on loopback only (listen %s), nothing can reach it on the pod IP", c.Name, api, cfg.Listen))
			}
		}
	}
	return errors.Join(errs...)
}

// checkProbesReachOps: the kubelet connects from the node to the pod IP at
// the probe's port, so every probe asks the operations listener's port, with
// no host: a host would send the kubelet to that address from the node.
func checkProbesReachOps(b *base) error {
	cfg, ops, err := b.opsPort()
	if err != nil {
		return err
	}
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range sidecarProbes(c) {
		if p.probe == nil || p.probe.HTTPGet == nil {
			continue // checkProbePaths reports it
		}
		if h := p.probe.HTTPGet.Host; h != "" {
			errs = append(errs, fmt.Errorf("%s sets host %s: the kubelet would connect to that address from the node, not to the pod", p.name, h))
		}
		got, err := containerPort(c, p.probe.HTTPGet.Port)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		} else if got != ops {
			errs = append(errs, fmt.Errorf("%s asks port %d, the operations listener is on %d (metrics.listen %s); the API's listen %s is out of the kubelet's reach", p.name, got, ops, cfg.Metrics.Listen, cfg.Listen))
		}
	}
	return errors.Join(errs...)
}

// checkPrometheusAnnotations: the pod template asks Prometheus to scrape
// /metrics at the operations listener's port.
func checkPrometheusAnnotations(b *base) error {
	cfg, ops, err := b.opsPort()
	if err != nil {
		return err
	}
	a := b.deployment.Spec.Template.Annotations
	var errs []error
	for _, want := range []struct{ key, value string }{
		{"prometheus.io/scrape", "true"},
		{"prometheus.io/port", strconv.Itoa(int(ops))},
		{"prometheus.io/path", "/metrics"},
	} {
		got, ok := a[want.key]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("the pod template has no annotation %s (want %q)", want.key, want.value))
		case got != want.value:
			errs = append(errs, fmt.Errorf("the pod template's annotation %s is %q, want %q (metrics.listen %s)", want.key, got, want.value, cfg.Metrics.Listen))
		}
	}
	return errors.Join(errs...)
}

// opsPort returns the effective config and the port of metrics.listen,
// which must be set and fixed.
func (b *base) opsPort() (*config.Config, int32, error) {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return nil, 0, err
	}
	if cfg.Metrics.Listen == "" {
		return nil, 0, errors.New("metrics.listen is not set: the kubelet's probes and Prometheus connect to the pod IP while the API stays on loopback; set metrics.listen: 0.0.0.0:9090 (k8s/README.md)")
	}
	_, port, err := addrPort("metrics.listen", cfg.Metrics.Listen)
	if err != nil {
		return nil, 0, err
	}
	return cfg, port, nil
}

// isLoopback reports whether a listen host is the loopback: localhost or a
// loopback IP.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// containerPort resolves a probe's port, a number or a name of c's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of %s", p.StrVal, c.Name)
}

// checkProbeTimings: the probes give the sidecar time and don't flap.
func checkProbeTimings(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range sidecarProbes(c) {
		if p.probe == nil {
			continue // checkProbePaths reports it
		}
		if p.probe.TimeoutSeconds >= period(p.probe) {
			errs = append(errs, fmt.Errorf("%s: timeoutSeconds %d must be below periodSeconds %d", p.name, p.probe.TimeoutSeconds, period(p.probe)))
		}
	}
	if s := c.StartupProbe; s != nil {
		if w := window(s); w < 30*time.Second || w > 120*time.Second {
			errs = append(errs, fmt.Errorf("startupProbe allows %s to start (periodSeconds × failureThreshold), want 30s to 2m", w))
		}
	}
	if l := c.LivenessProbe; l != nil {
		if l.FailureThreshold < 3 || window(l) < 20*time.Second {
			errs = append(errs, fmt.Errorf("livenessProbe restarts after %d failures (%s): want at least 3 and 20s, so a slow moment is no restart", l.FailureThreshold, window(l)))
		}
	}
	if r := c.ReadinessProbe; r != nil && period(r) > 10 {
		errs = append(errs, fmt.Errorf("readinessProbe every %ds: want at most 10s, so a pod leaves its Services promptly", period(r)))
	}
	return errors.Join(errs...)
}

// period and window apply the API defaults (period 10s, failureThreshold 3).
func period(p *corev1.Probe) int32 {
	if p.PeriodSeconds == 0 {
		return 10
	}
	return p.PeriodSeconds
}

func window(p *corev1.Probe) time.Duration {
	f := p.FailureThreshold
	if f == 0 {
		f = 3
	}
	return time.Duration(period(p)*f) * time.Second
}

// checkPortIsolated: a NetworkPolicy isolates the pods for ingress, and no
// rule admits the API's port (listen), which holds the upstream token: it is
// on loopback, and stays closed if an overlay moves it. The operations port
// (metrics.listen) may be admitted, but only from named peers (a monitoring
// namespace), never from everywhere. The kubelet's probes come from the
// node, which NetworkPolicy always allows.
func checkPortIsolated(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	_, api, err := addrPort("listen", cfg.Listen)
	if err != nil {
		return err
	}
	ops := int32(-1) // no operations listener: checkOpsListener reports it
	if cfg.Metrics.Listen != "" {
		if _, p, err := addrPort("metrics.listen", cfg.Metrics.Listen); err == nil {
			ops = p
		}
	}
	np := b.netpol
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return err
	}
	var errs []error
	if !sel.Matches(labels.Set(b.deployment.Spec.Template.Labels)) {
		errs = append(errs, fmt.Errorf("NetworkPolicy %s does not select the Deployment's pods %v", np.Name, b.deployment.Spec.Template.Labels))
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		errs = append(errs, fmt.Errorf("NetworkPolicy %s does not list policyTypes Ingress: it isolates nothing", np.Name))
	}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s ingress rule %d admits every port, the sidecar's API port %d too", np.Name, i, api))
		}
		for _, p := range rule.Ports {
			if b.admits(p.Protocol, p.Port, p.EndPort, api) {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s ingress rule %d admits the sidecar's API port %d (listen %s): nothing outside the pod may call the API", np.Name, i, api, cfg.Listen))
			}
			if b.admits(p.Protocol, p.Port, p.EndPort, ops) && fromAnywhere(rule.From) {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s ingress rule %d admits the operations port %d (metrics.listen) from every namespace: admit the monitoring namespace only (namespaceSelector)", np.Name, i, ops))
			}
		}
	}
	return errors.Join(errs...)
}

// fromAnywhere reports whether a rule's peers let in every pod of every
// namespace: no peers at all, or a peer with an empty namespaceSelector and
// no podSelector that narrows it.
func fromAnywhere(from []networkingv1.NetworkPolicyPeer) bool {
	if len(from) == 0 {
		return true
	}
	empty := func(s *metav1.LabelSelector) bool {
		return s != nil && len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
	}
	for _, p := range from {
		if empty(p.NamespaceSelector) && (p.PodSelector == nil || empty(p.PodSelector)) {
			return true
		}
	}
	return false
}

// admits reports whether a NetworkPolicy port entry lets TCP to port in.
func (b *base) admits(proto *corev1.Protocol, p *intstr.IntOrString, end *int32, port int32) bool {
	if proto != nil && *proto != corev1.ProtocolTCP {
		return false
	}
	if p == nil {
		return true
	}
	if p.Type == intstr.Int {
		hi := p.IntVal
		if end != nil {
			hi = *end
		}
		return p.IntVal <= port && port <= hi
	}
	for _, c := range append(slices.Clone(b.pod().InitContainers), b.pod().Containers...) {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal && cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

// checkAppURL: the app reaches the sidecar's API over the pod's loopback, at
// the address and port of listen, where the JS client expects it (/v1).
func checkAppURL(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	host, port, err := addrPort("listen", cfg.Listen)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range b.pod().Containers {
		v, ok := envValue(c, config.EnvServiceURL)
		if !ok {
			errs = append(errs, fmt.Errorf("app container %s has no %s", c.Name, config.EnvServiceURL))
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("%s of %s is %s: call the sidecar over loopback, inside the pod", config.EnvServiceURL, c.Name, v))
		} else if lip := net.ParseIP(host); lip != nil && lip.IsLoopback() && (ip == nil || !ip.Equal(lip)) {
			errs = append(errs, fmt.Errorf("%s of %s is %s, but the sidecar listens on %s only (listen %s)", config.EnvServiceURL, c.Name, v, host, cfg.Listen))
		}
		if u.Scheme != "http" || u.Port() != strconv.Itoa(int(port)) || u.Path != "/v1" {
			errs = append(errs, fmt.Errorf("%s of %s is %s, want http://127.0.0.1:%d/v1", config.EnvServiceURL, c.Name, v, port))
		}
	}
	return errors.Join(errs...)
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

// checkAppHasNoToken: only the sidecar holds the upstream token; the app
// neither mounts the Secret nor gets it through its environment.
func checkAppHasNoToken(b *base) error {
	_, tf, _, err := b.tokenFile()
	if err != nil {
		return err
	}
	secret := b.secret.Name
	var errs []error
	for _, c := range b.pod().Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == tf.volume.Name {
				errs = append(errs, fmt.Errorf("app container %s mounts the token volume %s", c.Name, m.Name))
			}
		}
		for _, e := range c.Env {
			if e.Name == config.EnvToken || (e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret) {
				errs = append(errs, fmt.Errorf("app container %s gets the token through env %s", c.Name, e.Name))
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == secret {
				errs = append(errs, fmt.Errorf("app container %s takes Secret %s as envFrom", c.Name, secret))
			}
		}
	}
	return errors.Join(errs...)
}

// checkSnapshotPath: snapshot.path, as the sidecar reads it (the ConfigMap's
// config after the container's env), is set and names a file in a
// subdirectory of a volume mount of the sidecar: the root filesystem is
// read-only, and an emptyDir's own directory is writable by everyone, which
// the sidecar refuses to restore from (it creates the subdirectory, 0700).
func checkSnapshotPath(b *base) error {
	_, _, _, err := b.snapshotMount()
	return err
}

// checkSnapshotVolume: the volume that holds snapshot.path is an emptyDir on
// the node's disk with a sizeLimit that holds the file and its temporary
// copy during a write. An emptyDir keeps the file through restarts of the
// sidecar container within its pod (crash, OOM kill, liveness restart); a
// tmpfs one (medium: Memory) would charge it to the sidecar's memory limit.
func checkSnapshotVolume(b *base) error {
	cfg, _, v, err := b.snapshotMount()
	if err != nil {
		return err
	}
	if v.EmptyDir == nil {
		return fmt.Errorf("snapshot.path %s is on volume %s, which is not an emptyDir: the snapshot needs a writable directory that outlives container restarts within the pod", cfg.Snapshot.Path, v.Name)
	}
	var errs []error
	if v.EmptyDir.Medium == corev1.StorageMediumMemory {
		errs = append(errs, fmt.Errorf("volume %s is in memory (medium: Memory): a tmpfs file counts against the sidecar's memory limit, beside a cache of up to cache.maxSizeMB %dMi; leave medium unset for the node's disk", v.Name, cfg.Cache.MaxSizeMB))
	}
	// The file holds at most what the cache holds (an entry takes fewer
	// bytes on disk than in bigcache); during a write its temporary copy is
	// there too.
	need := resource.NewQuantity(2*int64(cfg.Cache.MaxSizeMB)<<20, resource.BinarySI)
	switch lim := v.EmptyDir.SizeLimit; {
	case lim == nil || lim.IsZero():
		errs = append(errs, fmt.Errorf("volume %s has no sizeLimit: set one, at least %s (the file and its temporary copy, each up to cache.maxSizeMB), so it cannot fill the node's disk", v.Name, need))
	case lim.Cmp(*need) < 0:
		errs = append(errs, fmt.Errorf("volume %s has sizeLimit %s, under twice cache.maxSizeMB (%s): the file and its temporary copy during a write could go over it, and the kubelet evicts the pod", v.Name, lim.String(), need))
	}
	return errors.Join(errs...)
}

// checkSnapshotWritable: the sidecar mounts the snapshot's volume
// read-write: each write creates a temporary file in the directory and
// renames it over snapshot.path.
func checkSnapshotWritable(b *base) error {
	cfg, m, v, err := b.snapshotMount()
	if err != nil {
		return err
	}
	var errs []error
	if v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil {
		errs = append(errs, fmt.Errorf("snapshot.path %s is on volume %s, which the kubelet always mounts read-only", cfg.Snapshot.Path, v.Name))
	}
	if m.ReadOnly {
		errs = append(errs, fmt.Errorf("the sidecar mounts volume %s at %s readOnly: it writes snapshot.path %s there", m.Name, m.MountPath, cfg.Snapshot.Path))
	}
	return errors.Join(errs...)
}

// snapshotMount returns the effective config and the sidecar's volume
// mount and volume below whose directory snapshot.path is.
func (b *base) snapshotMount() (*config.Config, *corev1.VolumeMount, *corev1.Volume, error) {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	p := cfg.Snapshot.Path
	switch {
	case p == "":
		return nil, nil, nil, errors.New("snapshot.path is not set: a restarted sidecar would start with an empty cache and fail every validate while upstream is down; put it on the snapshot emptyDir (k8s/README.md, \"Cache snapshot\")")
	case !path.IsAbs(p):
		return nil, nil, nil, fmt.Errorf("snapshot.path %s is relative: it would depend on the working directory", p)
	}
	c, err := b.sidecar()
	if err != nil {
		return nil, nil, nil, err
	}
	p = path.Clean(p)
	var m *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		mp := path.Clean(vm.MountPath)
		if mp == p {
			return nil, nil, nil, fmt.Errorf("volume %s is mounted at snapshot.path %s itself: mount it at the file's directory", vm.Name, cfg.Snapshot.Path)
		}
		if strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/") && (m == nil || len(mp) > len(path.Clean(m.MountPath))) {
			m = &c.VolumeMounts[i]
		}
	}
	if m == nil {
		return nil, nil, nil, fmt.Errorf("no volume mount of container %s holds snapshot.path %s: the root filesystem is read-only; mount the snapshot emptyDir at %s", c.Name, cfg.Snapshot.Path, path.Dir(p))
	}
	if dir := path.Dir(p); dir == path.Clean(m.MountPath) {
		return nil, nil, nil, fmt.Errorf("snapshot.path %s is directly in the mount of volume %s at %s, a directory the kubelet makes writable by everyone: the sidecar refuses to restore a snapshot from such a directory; put the file in a subdirectory (%s/snapshot/snapshot.bin), which the sidecar creates private", cfg.Snapshot.Path, m.Name, m.MountPath, m.MountPath)
	}
	v := b.volume(m.Name)
	if v == nil {
		return nil, nil, nil, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
	}
	return cfg, m, v, nil
}
