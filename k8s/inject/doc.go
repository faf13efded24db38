// Package inject is chittyid-injector's core: a mutating admission webhook
// that adds chittyid-sidecar to the pods that opt in (the annotation
// id.chitty.cc/inject: "true", or a namespace labelled
// id.chitty.cc/inject=enabled), exactly as the Kustomize component
// (components/chittyid-sidecar) adds it, from the same file. Injector.Mutate
// decides and builds a JSON Patch; it never changes a setting the app chose
// and returns a warning instead. Server serves AdmissionReview v1 over TLS
// with a certificate it reloads when its files change.
package inject
