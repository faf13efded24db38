// Package k8s holds no code: its tests render the Kustomize base in base/,
// the fleet overlay in overlays/fleet/ and the sidecar component
// (components/chittyid-sidecar/) on other apps with real Kustomize, decode
// every manifest strictly into the k8s.io/api types, and check what must
// agree with the sidecar's code and image: the API on loopback and the
// operations listener (metrics.listen) on the pod IP, probe paths and
// ports, the Prometheus annotations, the NetworkPolicy against both ports,
// the config file's path and key, the token's path, that the ConfigMap's
// YAML passes the sidecar's own config validation, the snapshot's emptyDir
// and mount against snapshot.path, the securityContext, the shutdown
// timing and the fleet tier's Redis password file. They lint and render
// the injector's Helm chart (helm/chittyid-injector) with Helm's Go module,
// and apply all of it to a real kube-apiserver and etcd with the injector
// (inject/, cmd/chittyid-injector) registered as their webhook. It is a
// module of its own so that k8s.io/api, Kustomize and Helm never enter the
// sidecar's go.mod.
package k8s
