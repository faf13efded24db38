package k8s

// Checks of how the sidecar runs: its user and privileges, its shutdown
// timing and its resources.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	// imageUser is the numeric user and group of the image (Dockerfile USER).
	imageUser = 65532
	// shutdownMargin is what terminationGracePeriodSeconds must leave beyond
	// shutdown.drainTimeout: the app stops first, and the kubelet's SIGKILL
	// must not cut the sidecar's drain short.
	shutdownMargin = 10 * time.Second
)

// checkSecurityContext: the sidecar runs as the image's numeric non-root
// user, on a read-only root filesystem, without privilege escalation or
// capabilities, under the runtime's default seccomp profile. Container
// settings win over the pod's, as in the kubelet.
func checkSecurityContext(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	ps := b.pod().SecurityContext
	if ps == nil {
		ps = &corev1.PodSecurityContext{}
	}
	cs := c.SecurityContext
	if cs == nil {
		return fmt.Errorf("the sidecar has no securityContext")
	}
	var errs []error
	want := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("sidecar securityContext: "+format, args...))
		}
	}
	runAsNonRoot := pick(cs.RunAsNonRoot, ps.RunAsNonRoot)
	want(runAsNonRoot != nil && *runAsNonRoot, "runAsNonRoot must be true")
	user, group := pick(cs.RunAsUser, ps.RunAsUser), pick(cs.RunAsGroup, ps.RunAsGroup)
	want(user != nil && *user == imageUser, "runAsUser must be %d, got %v", imageUser, deref(user))
	want(group != nil && *group == imageUser, "runAsGroup must be %d, got %v", imageUser, deref(group))
	want(cs.ReadOnlyRootFilesystem != nil && *cs.ReadOnlyRootFilesystem, "readOnlyRootFilesystem must be true")
	want(cs.AllowPrivilegeEscalation != nil && !*cs.AllowPrivilegeEscalation, "allowPrivilegeEscalation must be false")
	want(cs.Privileged == nil || !*cs.Privileged, "privileged must not be true")
	want(cs.Capabilities != nil && slices.Contains(cs.Capabilities.Drop, "ALL"), "capabilities.drop must hold ALL")
	want(cs.Capabilities == nil || len(cs.Capabilities.Add) == 0, "capabilities.add must be empty")
	seccomp := pick(cs.SeccompProfile, ps.SeccompProfile)
	want(seccomp != nil && seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault, "seccompProfile.type must be RuntimeDefault")
	return errors.Join(errs...)
}

func pick[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// checkImageUser: the Dockerfile's USER is the numeric user and group the
// securityContext runs as, so runAsNonRoot can be verified by the kubelet.
func checkImageUser(b *base) error {
	u, ok := dockerfileInstruction(b.dockerfile, "USER")
	want := fmt.Sprintf("%d:%d", imageUser, imageUser)
	if !ok || u != want {
		return fmt.Errorf("the Dockerfile's last USER is %q, want %s (numeric, as runAsUser and runAsGroup)", u, want)
	}
	return nil
}

// checkGracePeriod: the pod's terminationGracePeriodSeconds covers
// shutdown.drainTimeout with a margin. The kubelet sends SIGTERM to the
// sidecar only once the app has exited, all within that one period.
func checkGracePeriod(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := b.pod().TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if d := time.Duration(grace) * time.Second; d < cfg.Shutdown.DrainTimeout+shutdownMargin {
		return fmt.Errorf("terminationGracePeriodSeconds %d is under shutdown.drainTimeout %s + %s", grace, cfg.Shutdown.DrainTimeout, shutdownMargin)
	}
	return nil
}

// checkResources: CPU and memory requests and limits are set, requests at
// most limits.
func checkResources(b *base) error {
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[name]
		lim, hasLim := c.Resources.Limits[name]
		if !hasReq || !hasLim {
			errs = append(errs, fmt.Errorf("the sidecar needs a %s request and limit", name))
			continue
		}
		if req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("the sidecar's %s request %s is above its limit %s", name, req.String(), lim.String()))
		}
	}
	return errors.Join(errs...)
}

// checkCacheFitsMemory: cache.maxSizeMB is at most half the memory limit
// (the rest is the Go runtime, connections and buffers), and GOMEMLIMIT, if
// set, is below the limit.
func checkCacheFitsMemory(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	c, err := b.sidecar()
	if err != nil {
		return err
	}
	lim, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return errors.New("the sidecar has no memory limit")
	}
	var errs []error
	cache := resource.NewQuantity(int64(cfg.Cache.MaxSizeMB)<<20, resource.BinarySI)
	if int64(cfg.Cache.MaxSizeMB)<<21 > lim.Value() {
		errs = append(errs, fmt.Errorf("cache.maxSizeMB %s is over half the memory limit %s", cache, lim.String()))
	}
	if v, ok := envValue(*c, "GOMEMLIMIT"); ok {
		n, err := goMemLimit(v)
		switch {
		case err != nil:
			errs = append(errs, err)
		case n >= lim.Value():
			errs = append(errs, fmt.Errorf("GOMEMLIMIT %s is not below the memory limit %s", v, lim.String()))
		}
	}
	return errors.Join(errs...)
}

// goMemLimit parses a GOMEMLIMIT value: bytes with an optional B, KiB, MiB,
// GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	shift := 0
	num := s
	for i, suf := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, suf); ok {
			num, shift = n, 10*(i+1)
			break
		}
	}
	if shift == 0 {
		num = strings.TrimSuffix(s, "B")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q: want a number of bytes with B, KiB, MiB, GiB or TiB", s)
	}
	return n << shift, nil
}
