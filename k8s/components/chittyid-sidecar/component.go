// Package component embeds the files of the Kustomize Component beside it
// (sidecar.yaml, the patch that adds the sidecar; config.yaml, the sidecar's
// config file), so that the injector (k8s/inject) adds the sidecar exactly
// as the component does, from the same file. Kustomize reads only the files
// kustomization.yaml names, never this one.
package component

import "embed"

//go:embed sidecar.yaml config.yaml
var files embed.FS

// Patch returns sidecar.yaml: a strategic-merge patch of a Deployment whose
// pod template holds the sidecar container and its volumes.
func Patch() []byte { return mustRead("sidecar.yaml") }

// Config returns config.yaml, the sidecar's config file that the component
// makes into the ConfigMap chittyid-sidecar-config.
func Config() []byte { return mustRead("config.yaml") }

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("component: embedded " + name + " missing: " + err.Error()) // the go:embed line above lists it
	}
	return b
}
