package k8s

// The sidecar component on an app of another shape than the example's.

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
	if sc := p.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.FSGroup == nil || *sc.FSGroup != imageUser {
		errs = append(errs, fmt.Errorf("pod securityContext %+v: want the app's runAsUser 1000 and the sidecar's fsGroup %d", sc, imageUser))
	}
	if g := p.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds %v: the kustomization's own patch (60) must win over the component's 45", deref(g)))
	}
	return errors.Join(errs...)
}
