package k8s

// The sidecar component on an app of another shape than the example's.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	component "github.com/chittyos/chittyid-sidecar/k8s/components/chittyid-sidecar"
)

// TestComponentOnAnotherApp renders the component on an app of another
// shape (testdata/component): every check of the base holds, and the app's
// own init container, volume, annotation and pod settings survive.
func TestComponentOnAnotherApp(t *testing.T) {
	t.Parallel()
	b := render(t, otherAppDir)
	runChecks(t, b, append(sidecarChecks(),
		check{"the fleet tier is off", checkFleetOff},
		check{"the app's own pod spec survives the component", checkAppSpecKept},
	))
}

// checkSidecarFirst: the sidecar is the first init container, so the app's
// own init containers (which run to completion before the app starts) can
// call it.
func checkSidecarFirst(b *base) error {
	if _, err := b.sidecar(); err != nil {
		return err
	}
	if ic := b.pod().InitContainers; ic[0].Name != sidecarName {
		return fmt.Errorf("init containers %v: %s must come first, or the init containers before it cannot use it", containerNames(ic), sidecarName)
	}
	return nil
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// checkFleetOff: without the overlay the fleet tier is off, and so is the
// fleet mint limit.
func checkFleetOff(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	if cfg.Fleet.Enabled() || cfg.RateLimit.Mint.FleetPerMinute != 0 {
		return fmt.Errorf("the fleet tier is configured (%v) in %s: it belongs in overlays/fleet", cfg.Fleet.Redis.Addrs, b.dir)
	}
	return nil
}

// checkAppSpecKept: the component added the sidecar without taking the
// app's own things away (testdata/component's app).
func checkAppSpecKept(b *base) error {
	p := b.pod()
	var errs []error
	if !slices.ContainsFunc(p.InitContainers, func(c corev1.Container) bool { return c.Name == "migrate" }) {
		errs = append(errs, fmt.Errorf("the app's init container migrate is gone: %v", containerNames(p.InitContainers)))
	}
	if b.volume("scratch") == nil {
		errs = append(errs, errors.New("the app's volume scratch is gone"))
	}
	if b.deployment.Spec.Template.Annotations["example.com/team"] != "payments" {
		errs = append(errs, fmt.Errorf("the app's annotation is gone: %v", b.deployment.Spec.Template.Annotations))
	}
	if sc := p.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.FSGroup == nil || *sc.FSGroup != 1000 {
		errs = append(errs, fmt.Errorf("pod securityContext %+v: want the app's runAsUser 1000 and fsGroup 1000", sc))
	}
	if g := p.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds %v: want the app's 60", deref(g)))
	}
	a := b.deployment.Spec.Template.Annotations
	if a["prometheus.io/port"] != "8080" || a["prometheus.io/path"] != "/stats" {
		errs = append(errs, fmt.Errorf("the app's Prometheus annotations are changed: %v", a))
	}
	return errors.Join(errs...)
}

// TestComponentSetsNothingOfTheApps: the component's patch adds the
// sidecar's init container and volumes and nothing else, so that a
// strategic merge cannot replace a setting of the app's (grace period,
// securityContext, annotations) without a word.
func TestComponentSetsNothingOfTheApps(t *testing.T) {
	t.Parallel()
	var d appsv1.Deployment
	if err := sigsyaml.UnmarshalStrict(component.Patch(), &d); err != nil {
		t.Fatalf("decoding the component's sidecar.yaml: %v", err)
	}
	tpl := d.Spec.Template.DeepCopy()
	if len(tpl.Spec.InitContainers) != 1 || len(tpl.Spec.Volumes) == 0 {
		t.Fatalf("want one init container and its volumes, got %v and %d volumes", containerNames(tpl.Spec.InitContainers), len(tpl.Spec.Volumes))
	}
	tpl.Spec.InitContainers, tpl.Spec.Volumes = nil, nil
	if !reflect.DeepEqual(*tpl, corev1.PodTemplateSpec{}) {
		y, _ := sigsyaml.Marshal(tpl)
		t.Errorf("the component's patch sets pod settings of the app's; a strategic merge replaces the app's own values:\n%s", y)
	}
}

// TestComponentNamesPerApp: a namePrefix in the app's kustomization
// (testdata/prefixed) renames the component's ConfigMap and the token
// Secret, and the sidecar's volumes follow, so two apps in one namespace
// keep their configs and tokens apart.
func TestComponentNamesPerApp(t *testing.T) {
	t.Parallel()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), prefixedAppDir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", prefixedAppDir, err)
	}
	names := map[string]string{}
	var pod *corev1.PodSpec
	for _, r := range rm.Resources() {
		names[r.GetKind()] = r.GetName()
		if r.GetKind() == "Deployment" {
			y, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			var d appsv1.Deployment
			if err := sigsyaml.UnmarshalStrict(y, &d); err != nil {
				t.Fatal(err)
			}
			pod = &d.Spec.Template.Spec
		}
	}
	if names["ConfigMap"] != "billing-chittyid-sidecar-config" || names["Secret"] != "billing-chittyid-token" || pod == nil {
		t.Fatalf("rendered %v: want the ConfigMap and Secret prefixed billing-", names)
	}
	refs := map[string]string{}
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil:
			refs[v.Name] = v.ConfigMap.Name
		case v.Secret != nil:
			refs[v.Name] = v.Secret.SecretName
		}
	}
	if refs["chittyid-config"] != names["ConfigMap"] || refs["chittyid-token"] != names["Secret"] {
		t.Errorf("the sidecar's volumes reference %v, want the prefixed %v", refs, names)
	}
}
