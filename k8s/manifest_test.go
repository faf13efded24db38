package k8s

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// check is one named check of a rendered kustomization.
type check struct {
	name  string
	check func(*base) error
}

// sidecarChecks are the checks every kustomization that runs the sidecar
// must pass: the base, the fleet overlay and the component on another app.
// The Prometheus annotations are the app's (the component leaves them
// alone), so only the example app, which has no metrics of its own, is held
// to checkPrometheusAnnotations (exampleAppChecks).
func sidecarChecks() []check {
	return []check{
		{"the sidecar is a native sidecar: an init container with restartPolicy Always", checkNativeSidecar},
		{"the sidecar runs the image's entrypoint with the Dockerfile's default args", checkImageDefaults},
		{"the config file in the args is a key of the ConfigMap, mounted as a directory, editable live", checkConfigFile},
		{"the ConfigMap's YAML passes the sidecar's own config validation", checkConfigValid},
		{"upstream.tokenFile is a key of the Secret, mounted as a directory, rotatable live", checkTokenFile},
		{"the sidecar's user can read its config and token files", checkFilesReadable},
		{"probes ask /healthz (liveness, startup) and /readyz (readiness)", checkProbePaths},
		{"the API listens on the pod's loopback only", checkAPIOnLoopback},
		{"metrics.listen is on the pod IP at a declared port of its own", checkOpsListener},
		{"probes reach the operations listener: its port, on the pod IP", checkProbesReachOps},
		{"probe timings give the sidecar time and leave Services promptly", checkProbeTimings},
		{"no other pod can reach the API's port, only the monitoring namespace the metrics port", checkPortIsolated},
		{"the app calls the sidecar over loopback at the listen address", checkAppURL},
		{"the app never sees the upstream token", checkAppHasNoToken},
		{"the sidecar's securityContext is restrictive", checkSecurityContext},
		{"the image's USER is the securityContext's numeric user", checkImageUser},
		{"terminationGracePeriodSeconds covers shutdown.drainTimeout with a margin", checkGracePeriod},
		{"the sidecar has CPU and memory requests and limits", checkResources},
		{"the cache fits in the memory limit", checkCacheFitsMemory},
		{"snapshot.path is a file in a subdirectory of a volume mount of the sidecar", checkSnapshotPath},
		{"the snapshot's volume is an emptyDir on disk with a sizeLimit", checkSnapshotVolume},
		{"the sidecar mounts the snapshot's volume read-write", checkSnapshotWritable},
		{"the sidecar starts before the app's own init containers", checkSidecarFirst},
	}
}

// exampleAppChecks are sidecarChecks plus the example app's own settings
// for the sidecar (base/deployment.yaml), which the fleet overlay keeps.
func exampleAppChecks() []check {
	return append(sidecarChecks(),
		check{"the Prometheus annotations scrape the operations listener", checkPrometheusAnnotations},
	)
}

// runChecks runs every check on b, each as a subtest.
func runChecks(t *testing.T, b *base, checks []check) {
	t.Helper()
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.check(b); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestBase renders k8s/base (the example app and the component) and runs
// every check on it.
func TestBase(t *testing.T) {
	t.Parallel()
	b := render(t, baseDir)
	runChecks(t, b, append(exampleAppChecks(), check{"the fleet tier is off", checkFleetOff}))
}

// TestChecksCatchMistakes breaks a copy of the base in one way at a time
// and expects the check that guards against it to say so: a check that
// passes everything would make TestBase worthless.
func TestChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	expectCaught(t, render(t, baseDir), []mistake{
		{"sidecar as a regular container", func(t *testing.T, b *base) {
			p := b.pod()
			p.Containers = append(p.Containers, p.InitContainers...)
			p.InitContainers = nil
		}, checkNativeSidecar, "is a regular container"},
		{"sidecar init container without restartPolicy", func(t *testing.T, b *base) {
			sidecarOf(t, b).RestartPolicy = nil
		}, checkNativeSidecar, "restartPolicy: Always"},
		{"args other than the image's CMD", func(t *testing.T, b *base) {
			sidecarOf(t, b).Args = []string{"serve", "--config", "/etc/chittyid-sidecar/other.yaml"}
		}, checkImageDefaults, "differ from the Dockerfile's CMD"},
		{"config file mounted with subPath", func(t *testing.T, b *base) {
			m := mountOf(t, sidecarOf(t, b), "/etc/chittyid-sidecar")
			m.MountPath, m.SubPath = "/etc/chittyid-sidecar/config.yaml", "config.yaml"
		}, checkConfigFile, "subPath"},
		{"config directory mounted with subPath", func(t *testing.T, b *base) {
			mountOf(t, sidecarOf(t, b), "/etc/chittyid-sidecar").SubPath = "conf"
		}, checkConfigFile, "subPath"},
		{"ConfigMap name with a hash suffix", func(t *testing.T, b *base) {
			b.configMap.Name += "-5f8dk2c9bt"
			b.volume("chittyid-config").ConfigMap.Name = b.configMap.Name
		}, checkConfigFile, "rollout instead of a reload"},
		{"ConfigMap immutable", func(t *testing.T, b *base) {
			b.configMap.Immutable = ptr(true)
		}, checkConfigFile, "immutable"},
		{"ConfigMap key renamed", func(t *testing.T, b *base) {
			b.configMap.Data["sidecar.yaml"] = b.configMap.Data["config.yaml"]
			delete(b.configMap.Data, "config.yaml")
		}, checkConfigFile, `has no key "config.yaml"`},
		{"unknown key in the config", func(t *testing.T, b *base) {
			editConfig(t, b, "format: official", "format: official\nlistenn: 0.0.0.0:1")
		}, checkConfigValid, "listenn"},
		{"invalid value in the config", func(t *testing.T, b *base) {
			editConfig(t, b, "policy: degraded", "policy: sometimes")
		}, checkConfigValid, "readiness.policy"},
		{"token with a space in the Secret", func(t *testing.T, b *base) {
			b.secret.StringData["token"] = "two words"
		}, checkConfigValid, "visible ASCII"},
		{"tokenFile outside the Secret's mount", func(t *testing.T, b *base) {
			editConfig(t, b, "tokenFile: /var/run/secrets/chittyid/token", "tokenFile: /etc/chittyid-sidecar/token")
		}, checkTokenFile, "not from Secret"},
		{"tokenFile not mounted at all", func(t *testing.T, b *base) {
			editConfig(t, b, "tokenFile: /var/run/secrets/chittyid/token", "tokenFile: /run/token")
		}, checkTokenFile, "no volume mount"},
		{"Secret key renamed", func(t *testing.T, b *base) {
			b.secret.StringData["api-token"] = b.secret.StringData["token"]
			delete(b.secret.StringData, "token")
		}, checkTokenFile, `has no key "token"`},
		{"Secret file mode 440 written in decimal", func(t *testing.T, b *base) {
			b.volume("chittyid-token").Secret.DefaultMode = ptr(int32(440))
		}, checkTokenFile, "mode 0670"},
		{"Secret file mode 0400", func(t *testing.T, b *base) {
			b.volume("chittyid-token").Secret.DefaultMode = ptr(int32(0o400))
		}, checkFilesReadable, "mode 0400"},
		{"liveness on /readyz", func(t *testing.T, b *base) {
			sidecarOf(t, b).LivenessProbe.HTTPGet.Path = "/readyz"
		}, checkProbePaths, `livenessProbe asks "/readyz"`},
		{"startup on /readyz", func(t *testing.T, b *base) {
			sidecarOf(t, b).StartupProbe.HTTPGet.Path = "/readyz"
		}, checkProbePaths, `startupProbe asks "/readyz"`},
		{"readiness on /health", func(t *testing.T, b *base) {
			sidecarOf(t, b).ReadinessProbe.HTTPGet.Path = "/health"
		}, checkProbePaths, `readinessProbe asks "/health"`},
		{"exec liveness probe", func(t *testing.T, b *base) {
			p := sidecarOf(t, b).LivenessProbe
			p.HTTPGet, p.Exec = nil, &corev1.ExecAction{Command: []string{"curl", "-f", "http://127.0.0.1:9090/healthz"}}
		}, checkProbePaths, "must be httpGet"},
		{"listen on 0.0.0.0", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", "listen: 0.0.0.0:8787\nsecurity: {allowRemote: true}")
		}, checkAPIOnLoopback, "give the kubelet and Prometheus metrics.listen"},
		{"listen on 0.0.0.0 without allowRemote", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", "listen: 0.0.0.0:8787")
		}, checkConfigValid, "set security.allowRemote: true to allow it"},
		{"listen on [::]", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", "listen: \"[::]:8787\"\nsecurity: {allowRemote: true}")
		}, checkAPIOnLoopback, "is not a loopback address"},
		{"listen on 0.0.0.0 through the environment", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", "listen: 127.0.0.1:8787\nsecurity: {allowRemote: true}")
			c := sidecarOf(t, b)
			c.Env = append(c.Env, corev1.EnvVar{Name: "CHITTYID_SIDECAR_LISTEN", Value: "0.0.0.0:8787"})
		}, checkAPIOnLoopback, "metrics.listen on 0.0.0.0"},
		{"metrics.listen missing", func(t *testing.T, b *base) {
			editConfig(t, b, "metrics:\n  listen: 0.0.0.0:9090\n", "")
		}, checkOpsListener, "metrics.listen is not set"},
		{"metrics.listen missing, probes", func(t *testing.T, b *base) {
			editConfig(t, b, "metrics:\n  listen: 0.0.0.0:9090\n", "")
		}, checkProbesReachOps, "metrics.listen is not set"},
		{"metrics.listen missing, annotations", func(t *testing.T, b *base) {
			editConfig(t, b, "metrics:\n  listen: 0.0.0.0:9090\n", "")
		}, checkPrometheusAnnotations, "metrics.listen is not set"},
		{"metrics.listen on loopback", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 0.0.0.0:9090", "listen: 127.0.0.1:9090")
		}, checkOpsListener, "connect to the pod IP"},
		{"metrics.listen on the API's port", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 0.0.0.0:9090", "listen: 0.0.0.0:8787")
		}, checkOpsListener, "share port 8787"},
		{"metrics.listen port not declared", func(t *testing.T, b *base) {
			sidecarOf(t, b).Ports = nil
		}, checkOpsListener, "declares no TCP containerPort 9090"},
		{"the API's port declared as a containerPort", func(t *testing.T, b *base) {
			c := sidecarOf(t, b)
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: "api", ContainerPort: 8787})
		}, checkOpsListener, "declares containerPort 8787, the API's port"},
		{"probes on 8787", func(t *testing.T, b *base) {
			for _, p := range sidecarProbes(sidecarOf(t, b)) {
				p.probe.HTTPGet.Port = intstr.FromInt32(8787)
			}
		}, checkProbesReachOps, "readinessProbe asks port 8787, the operations listener is on 9090"},
		{"readiness port off by one", func(t *testing.T, b *base) {
			sidecarOf(t, b).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9091)
		}, checkProbesReachOps, "asks port 9091"},
		{"probe named port that does not exist", func(t *testing.T, b *base) {
			sidecarOf(t, b).LivenessProbe.HTTPGet.Port = intstr.FromString("api")
		}, checkProbesReachOps, `port "api" is not a named port`},
		{"probe host 127.0.0.1", func(t *testing.T, b *base) {
			sidecarOf(t, b).LivenessProbe.HTTPGet.Host = "127.0.0.1"
		}, checkProbesReachOps, "sets host 127.0.0.1"},
		{"metrics.listen port changed, probes not", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 0.0.0.0:9090", "listen: 0.0.0.0:9100")
		}, checkProbesReachOps, "the operations listener is on 9100"},
		{"metrics.listen port changed, annotations not", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 0.0.0.0:9090", "listen: 0.0.0.0:9100")
		}, checkPrometheusAnnotations, `prometheus.io/port is "9090", want "9100"`},
		{"annotation port mismatch", func(t *testing.T, b *base) {
			b.deployment.Spec.Template.Annotations["prometheus.io/port"] = "8787"
		}, checkPrometheusAnnotations, `prometheus.io/port is "8787", want "9090"`},
		{"scrape annotation on the Deployment, not the pod template", func(t *testing.T, b *base) {
			b.deployment.Annotations = b.deployment.Spec.Template.Annotations
			b.deployment.Spec.Template.Annotations = nil
		}, checkPrometheusAnnotations, "the pod template has no annotation prometheus.io/scrape"},
		{"metrics path annotation wrong", func(t *testing.T, b *base) {
			b.deployment.Spec.Template.Annotations["prometheus.io/path"] = "/health"
		}, checkPrometheusAnnotations, `prometheus.io/path is "/health"`},
		{"listen port changed, app URL not", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", "listen: 127.0.0.1:9000")
		}, checkAppURL, "want http://127.0.0.1:9000/v1"},
		{"listen on ::1, app URL on 127.0.0.1", func(t *testing.T, b *base) {
			editConfig(t, b, "listen: 127.0.0.1:8787", `listen: "[::1]:8787"`)
		}, checkAppURL, "the sidecar listens on ::1 only"},
		{"app calls the sidecar at localhost", func(t *testing.T, b *base) {
			setEnv(t, &b.pod().Containers[0], "CHITTYID_SERVICE_URL", "http://localhost:8787/v1")
		}, checkAppURL, "the sidecar listens on 127.0.0.1 only"},
		{"startup window of 6s", func(t *testing.T, b *base) {
			p := sidecarOf(t, b).StartupProbe
			p.PeriodSeconds, p.FailureThreshold = 2, 3
		}, checkProbeTimings, "startupProbe allows 6s"},
		{"liveness restarts after one failure", func(t *testing.T, b *base) {
			sidecarOf(t, b).LivenessProbe.FailureThreshold = 1
		}, checkProbeTimings, "livenessProbe restarts after 1 failures"},
		{"NetworkPolicy rule for every port", func(t *testing.T, b *base) {
			b.netpol.Spec.Ingress = append(b.netpol.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		}, checkPortIsolated, "admits every port"},
		{"NetworkPolicy admits 8787", func(t *testing.T, b *base) {
			r := &b.netpol.Spec.Ingress[0]
			r.Ports = append(r.Ports, networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromInt32(8787))})
		}, checkPortIsolated, "admits the sidecar's API port 8787"},
		{"NetworkPolicy admits 8787 to the monitoring namespace", func(t *testing.T, b *base) {
			b.netpol.Spec.Ingress[1].Ports[0].Port = ptr(intstr.FromInt32(8787))
		}, checkPortIsolated, "ingress rule 1 admits the sidecar's API port 8787"},
		{"NetworkPolicy port range over the API's port", func(t *testing.T, b *base) {
			b.netpol.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(8000))
			b.netpol.Spec.Ingress[0].Ports[0].EndPort = ptr(int32(9000))
		}, checkPortIsolated, "admits the sidecar's API port 8787"},
		{"NetworkPolicy admits the metrics port from everywhere", func(t *testing.T, b *base) {
			b.netpol.Spec.Ingress[1].From = nil
		}, checkPortIsolated, "admits the operations port 9090 (metrics.listen) from every namespace"},
		{"NetworkPolicy admits the metrics port from every namespace", func(t *testing.T, b *base) {
			b.netpol.Spec.Ingress[1].From[0].NamespaceSelector = &metav1.LabelSelector{}
		}, checkPortIsolated, "admits the operations port 9090"},
		{"NetworkPolicy admits the metrics port by name with the app's port", func(t *testing.T, b *base) {
			r := &b.netpol.Spec.Ingress[0]
			r.Ports = append(r.Ports, networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromString("ops"))})
		}, checkPortIsolated, "ingress rule 0 admits the operations port 9090"},
		{"NetworkPolicy for other pods", func(t *testing.T, b *base) {
			b.netpol.Spec.PodSelector.MatchLabels = map[string]string{"app.kubernetes.io/name": "other"}
		}, checkPortIsolated, "does not select"},
		{"NetworkPolicy for egress only", func(t *testing.T, b *base) {
			b.netpol.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		}, checkPortIsolated, "isolates nothing"},
		{"app calls the sidecar by a Service name", func(t *testing.T, b *base) {
			setEnv(t, &b.pod().Containers[0], "CHITTYID_SERVICE_URL", "http://chittyid-sidecar:8787/v1")
		}, checkAppURL, "over loopback"},
		{"app mounts the token", func(t *testing.T, b *base) {
			c := &b.pod().Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "chittyid-token", MountPath: "/token"})
		}, checkAppHasNoToken, "mounts the token volume"},
		{"app gets CHITTY_ID_TOKEN", func(t *testing.T, b *base) {
			c := &b.pod().Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "CHITTY_ID_TOKEN", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "chittyid-token"}, Key: "token"},
			}})
		}, checkAppHasNoToken, "gets the token through env CHITTY_ID_TOKEN"},
		{"sidecar as root", func(t *testing.T, b *base) {
			sidecarOf(t, b).SecurityContext.RunAsUser = ptr(int64(0))
		}, checkSecurityContext, "runAsUser must be 65532"},
		{"writable root filesystem", func(t *testing.T, b *base) {
			sidecarOf(t, b).SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, checkSecurityContext, "readOnlyRootFilesystem"},
		{"privilege escalation allowed", func(t *testing.T, b *base) {
			sidecarOf(t, b).SecurityContext.AllowPrivilegeEscalation = nil
		}, checkSecurityContext, "allowPrivilegeEscalation"},
		{"a capability added", func(t *testing.T, b *base) {
			sidecarOf(t, b).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, checkSecurityContext, "capabilities.add"},
		{"no seccomp profile", func(t *testing.T, b *base) {
			sidecarOf(t, b).SecurityContext.SeccompProfile = nil
			b.pod().SecurityContext.SeccompProfile = nil
		}, checkSecurityContext, "seccompProfile"},
		{"image USER by name", func(t *testing.T, b *base) {
			// The last stage's (the sidecar's; the injector's stage comes before).
			i := strings.LastIndex(b.dockerfile, "USER 65532:65532")
			b.dockerfile = b.dockerfile[:i] + "USER nonroot" + b.dockerfile[i+len("USER 65532:65532"):]
		}, checkImageUser, `last USER is "nonroot"`},
		{"grace period equal to the drain", func(t *testing.T, b *base) {
			b.pod().TerminationGracePeriodSeconds = ptr(int64(20))
		}, checkGracePeriod, "under shutdown.drainTimeout 20s"},
		{"drain raised over the grace period", func(t *testing.T, b *base) {
			editConfig(t, b, "drainTimeout: 20s", "drainTimeout: 40s")
		}, checkGracePeriod, "under shutdown.drainTimeout 40s"},
		{"no memory limit", func(t *testing.T, b *base) {
			delete(sidecarOf(t, b).Resources.Limits, corev1.ResourceMemory)
		}, checkResources, "memory request and limit"},
		{"CPU request above the limit", func(t *testing.T, b *base) {
			sidecarOf(t, b).Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
		}, checkResources, "above its limit"},
		{"cache over half the memory limit", func(t *testing.T, b *base) {
			editConfig(t, b, "maxSizeMB: 32", "maxSizeMB: 96")
		}, checkCacheFitsMemory, "over half the memory limit"},
		{"GOMEMLIMIT at the memory limit", func(t *testing.T, b *base) {
			setEnv(t, sidecarOf(t, b), "GOMEMLIMIT", "128MiB")
		}, checkCacheFitsMemory, "GOMEMLIMIT 128MiB is not below"},
		{"snapshot interval out of range", func(t *testing.T, b *base) {
			editConfig(t, b, "interval: 1m", "interval: 10ms")
		}, checkConfigValid, "snapshot.interval"},
		{"snapshot.path names a directory", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: /var/lib/chittyid-sidecar/snapshot/")
		}, checkConfigValid, "snapshot.path must name a file"},
		{"snapshot.path unset", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine+"\n", "")
		}, checkSnapshotPath, "snapshot.path is not set"},
		{"snapshot.path relative", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: snapshot.bin")
		}, checkSnapshotPath, "is relative"},
		{"snapshot.path on the read-only root filesystem", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: /tmp/snapshot.bin")
		}, checkSnapshotPath, "no volume mount of container chittyid-sidecar holds snapshot.path /tmp/snapshot.bin"},
		{"snapshot.path directly in the world-writable mount", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: "+snapshotDir+"/snapshot.bin")
		}, checkSnapshotPath, "a directory the kubelet makes writable by everyone"},
		{"snapshot mount moved, snapshot.path not", func(t *testing.T, b *base) {
			mountOf(t, sidecarOf(t, b), snapshotDir).MountPath = "/var/cache/chittyid-sidecar"
		}, checkSnapshotPath, "no volume mount"},
		{"snapshot volume mounted at snapshot.path itself", func(t *testing.T, b *base) {
			mountOf(t, sidecarOf(t, b), snapshotDir).MountPath = snapshotDir + "/snapshot/snapshot.bin"
		}, checkSnapshotPath, "mounted at snapshot.path"},
		{"snapshot volume mounted in the app, not the sidecar", func(t *testing.T, b *base) {
			c := sidecarOf(t, b)
			app := &b.pod().Containers[0]
			app.VolumeMounts = append(app.VolumeMounts, *mountOf(t, c, snapshotDir))
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == snapshotDir })
		}, checkSnapshotWritable, "no volume mount of container chittyid-sidecar"},
		{"snapshot volume mounted readOnly", func(t *testing.T, b *base) {
			mountOf(t, sidecarOf(t, b), snapshotDir).ReadOnly = true
		}, checkSnapshotWritable, "readOnly"},
		{"snapshot.path in the config's directory, writability", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: /etc/chittyid-sidecar/snapshot/snapshot.bin")
		}, checkSnapshotWritable, "always mounts read-only"},
		{"snapshot.path in the config's directory, volume", func(t *testing.T, b *base) {
			editConfig(t, b, snapshotPathLine, "path: /etc/chittyid-sidecar/snapshot/snapshot.bin")
		}, checkSnapshotVolume, "volume chittyid-config, which is not an emptyDir"},
		{"snapshot volume a hostPath", func(t *testing.T, b *base) {
			b.volume("chittyid-snapshot").VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/chittyid-sidecar"}}
		}, checkSnapshotVolume, "not an emptyDir"},
		{"snapshot emptyDir in memory", func(t *testing.T, b *base) {
			b.volume("chittyid-snapshot").EmptyDir.Medium = corev1.StorageMediumMemory
		}, checkSnapshotVolume, "in memory (medium: Memory)"},
		{"snapshot emptyDir without sizeLimit", func(t *testing.T, b *base) {
			b.volume("chittyid-snapshot").EmptyDir.SizeLimit = nil
		}, checkSnapshotVolume, "has no sizeLimit"},
		{"snapshot emptyDir sizeLimit under two snapshots", func(t *testing.T, b *base) {
			b.volume("chittyid-snapshot").EmptyDir.SizeLimit = ptr(resource.MustParse("48Mi"))
		}, checkSnapshotVolume, "sizeLimit 48Mi, under twice cache.maxSizeMB (64Mi)"},
		{"cache raised, snapshot sizeLimit not", func(t *testing.T, b *base) {
			editConfig(t, b, "maxSizeMB: 32", "maxSizeMB: 80")
		}, checkSnapshotVolume, "under twice cache.maxSizeMB (160Mi)"},
	})
}

// mistake is one way to break a good manifest, the check that must catch
// it and what its error must say.
type mistake struct {
	name    string
	breakIt func(t *testing.T, b *base)
	check   func(*base) error
	wantErr string
}

// expectCaught applies each mistake to its own copy of good and expects
// its check to fail saying wantErr.
func expectCaught(t *testing.T, good *base, mistakes []mistake) {
	t.Helper()
	for _, m := range mistakes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := good.clone()
			m.breakIt(t, b)
			err := m.check(b)
			if err == nil || !strings.Contains(err.Error(), m.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, m.wantErr)
			}
		})
	}
}

// TestStrictDecode: a manifest field that its type does not have is an
// error, and so is a kind no check knows.
func TestStrictDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, apiVersion, kind, yaml, wantErr string }{
		{"probe field at the container level", "apps/v1", "Deployment", `
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers:
        - name: chittyid-sidecar
          restartPolicy: Always
          path: /healthz
`, `unknown field "path"`},
		{"duplicate field", "v1", "ConfigMap", `
apiVersion: v1
kind: ConfigMap
data: {a: "1"}
data: {b: "2"}
`, `"data" already set`},
		{"a kind without checks", "v1", "Service", "apiVersion: v1\nkind: Service\n", "no test knows v1 Service"},
		{"a second Secret", "v1", "Secret", "apiVersion: v1\nkind: Secret\n", "second object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &base{secret: &corev1.Secret{}}
			err := b.add(tc.apiVersion, tc.kind, []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// snapshotDir is the snapshot emptyDir's mount in the base, and
// snapshotPathLine the config.yaml line that puts snapshot.path in it.
const (
	snapshotDir      = "/var/lib/chittyid-sidecar"
	snapshotPathLine = "path: " + snapshotDir + "/snapshot/snapshot.bin"
)

func ptr[T any](v T) *T { return &v }

func sidecarOf(t *testing.T, b *base) *corev1.Container {
	t.Helper()
	c, err := b.sidecar()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mountOf(t *testing.T, c *corev1.Container, path string) *corev1.VolumeMount {
	t.Helper()
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
	if i < 0 {
		t.Fatalf("%s mounts nothing at %s", c.Name, path)
	}
	return &c.VolumeMounts[i]
}

func setEnv(t *testing.T, c *corev1.Container, name, value string) {
	t.Helper()
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		t.Fatalf("%s has no env %s", c.Name, name)
	}
	c.Env[i].Value = value
}

// editConfig replaces old, which must occur once, in the ConfigMap's
// config.yaml, so that an edit of the base breaks the test loudly rather
// than making it pass for the wrong reason.
func editConfig(t *testing.T, b *base, old, new string) {
	t.Helper()
	data := b.configMap.Data["config.yaml"]
	if n := strings.Count(data, old); n != 1 {
		t.Fatalf("config.yaml holds %q %d times, want once", old, n)
	}
	b.configMap.Data["config.yaml"] = strings.Replace(data, old, new, 1)
}
