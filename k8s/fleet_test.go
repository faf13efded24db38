package k8s

// The component on other apps, and the fleet overlay: the sidecar's Redis
// password file and the fleet section of its config.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/chittyos/chittyid-sidecar/config"
)

// TestFleetOverlay renders overlays/fleet and runs every check of the base
// on it, and the fleet's: the tier is on, pointed at a Service, with its
// password from a Secret mounted as a directory, and the rest of the config
// is the component's.
func TestFleetOverlay(t *testing.T) {
	t.Parallel()
	b := render(t, fleetDir)
	runChecks(t, b, append(exampleAppChecks(),
		check{"the fleet tier is on, pointed at a Service", checkFleetOn},
		check{"fleet.redis.passwordFile is a key of a Secret, mounted as a directory in the sidecar only, readable, rotatable live", checkPasswordFile},
		check{"the config is the component's plus the fleet keys", checkConfigMatchesComponent},
	))
}

// checkFleetOn: the fleet tier is on, its addresses are Service names (not
// pod or node IPs, which change), and it logs in with a password file.
func checkFleetOn(b *base) error {
	cfg, err := b.effectiveConfig()
	if err != nil {
		return err
	}
	if !cfg.Fleet.Enabled() {
		return errors.New("fleet.redis.addrs is empty: the fleet tier is off")
	}
	var errs []error
	for i, a := range cfg.Fleet.Redis.Addrs {
		host, _, err := net.SplitHostPort(a)
		if err == nil && net.ParseIP(host) != nil {
			errs = append(errs, fmt.Errorf("fleet.redis.addrs[%d] %s is an IP address: name the Redis Service, whose address survives a restart of Redis", i, a))
		}
	}
	if cfg.Fleet.Redis.PasswordFile == "" {
		errs = append(errs, errors.New("fleet.redis.passwordFile is not set: Redis shared by a fleet must need a password"))
	}
	return errors.Join(errs...)
}

// passwordFile returns fleet.redis.passwordFile as the ConfigMap's YAML
// writes it and the mounted file behind it, which must come from a Secret.
func (b *base) passwordFile() (string, file, error) {
	_, data, err := b.configFile()
	if err != nil {
		return "", file{}, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", file{}, err
	}
	n := configNode(&doc, "fleet", "redis", "passwordFile")
	if n == nil || n.Value == "" {
		return "", file{}, errors.New("the config sets no fleet.redis.passwordFile")
	}
	c, err := b.sidecar()
	if err != nil {
		return "", file{}, err
	}
	f, err := b.mountedFile(c, n.Value)
	if err != nil {
		return "", file{}, fmt.Errorf("fleet.redis.passwordFile %s: %w", n.Value, err)
	}
	if f.volume.Secret == nil {
		return "", file{}, fmt.Errorf("fleet.redis.passwordFile %s comes from volume %s, which is not a Secret", n.Value, f.volume.Name)
	}
	return n.Value, f, nil
}

// checkPasswordFile: fleet.redis.passwordFile is a key of a Secret mounted
// as a directory (mountedFile refuses subPath) in the sidecar, so that a
// rotated password reaches the pod; absolute; the Secret is required, not
// optional; the file has read bits only and the sidecar's user can read
// it; no app container mounts it.
func checkPasswordFile(b *base) error {
	path, f, err := b.passwordFile()
	if err != nil {
		return err
	}
	var errs []error
	if !strings.HasPrefix(path, "/") {
		errs = append(errs, fmt.Errorf("fleet.redis.passwordFile %s is relative: it would depend on the working directory", path))
	}
	if f.volume.Secret.Optional != nil && *f.volume.Secret.Optional {
		errs = append(errs, errors.New("the Redis password's volume is optional: a missing Secret would start the sidecar without its password"))
	}
	if f.mode&0o333 != 0 {
		errs = append(errs, fmt.Errorf("the Redis password file has mode %#o: want read bits only (write defaultMode in octal, 0440)", f.mode))
	}
	other := f.mode&0o004 != 0
	group := f.mode&0o040 != 0 && b.pod().SecurityContext != nil && b.pod().SecurityContext.FSGroup != nil
	if !other && !group {
		errs = append(errs, fmt.Errorf("the Redis password file has mode %#o: user %d can read it only with o+r, or g+r and a pod fsGroup", f.mode, imageUser))
	}
	for _, c := range b.pod().Containers {
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == f.volume.Name }) {
			errs = append(errs, fmt.Errorf("app container %s mounts the Redis password's volume %s", c.Name, f.volume.Name))
		}
	}
	return errors.Join(errs...)
}

// checkConfigMatchesComponent: the overlay's config file is the
// component's with the fleet keys added, so that a change to the
// component's config cannot be forgotten in the overlay.
func checkConfigMatchesComponent(b *base) error {
	_, data, err := b.configFile()
	if err != nil {
		return err
	}
	want, err := os.ReadFile(componentDir + "/config.yaml")
	if err != nil {
		return err
	}
	var got, base map[string]any
	if err := yaml.Unmarshal(data, &got); err != nil {
		return err
	}
	if err := yaml.Unmarshal(want, &base); err != nil {
		return err
	}
	delete(got, "fleet")
	if rl, ok := got["rateLimit"].(map[string]any); ok {
		if m, ok := rl["mint"].(map[string]any); ok {
			delete(m, "fleetPerMinute")
			delete(m, "fleetBurst")
			if len(m) == 0 {
				delete(rl, "mint")
			}
		}
		if len(rl) == 0 {
			delete(got, "rateLimit")
		}
	}
	if !reflect.DeepEqual(got, base) {
		var diff []string
		for k := range mergeKeys(got, base) {
			if !reflect.DeepEqual(got[k], base[k]) {
				diff = append(diff, fmt.Sprintf("%s: %v, the component has %v", k, got[k], base[k]))
			}
		}
		slices.Sort(diff)
		return fmt.Errorf("the config differs from %s/config.yaml beyond the fleet keys: %s", componentDir, strings.Join(diff, "; "))
	}
	return nil
}

func mergeKeys(a, b map[string]any) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// TestFleetChecksCatchMistakes breaks a copy of the fleet overlay one way
// at a time and expects the check that guards against it to say so.
func TestFleetChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	const pwLine = "passwordFile: /var/run/secrets/chittyid-redis/password"
	expectCaught(t, render(t, fleetDir), []mistake{
		{"fleet section dropped", func(t *testing.T, b *base) {
			editConfig(t, b, `addrs: ["redis-master:6379"]`, "addrs: []")
			editConfig(t, b, pwLine, "")
		}, checkFleetOn, "fleet.redis.addrs is empty"},
		{"Redis by pod IP", func(t *testing.T, b *base) {
			editConfig(t, b, `addrs: ["redis-master:6379"]`, `addrs: ["10.1.2.3:6379"]`)
		}, checkFleetOn, "is an IP address"},
		{"no password file", func(t *testing.T, b *base) { editConfig(t, b, pwLine, "") }, checkFleetOn, "passwordFile is not set"},
		{"bad fleet value", func(t *testing.T, b *base) { editConfig(t, b, "timeout: 25ms", "timeout: 5s") }, checkConfigValid, "fleet.timeout"},
		{"fleet limit under maxBatch", func(t *testing.T, b *base) {
			editConfig(t, b, "fleetPerMinute: 0, fleetBurst: 100", "fleetPerMinute: 600, fleetBurst: 10")
		}, checkConfigValid, "rateLimit.mint.fleetBurst"},
		{"password file outside the Secret's mount", func(t *testing.T, b *base) {
			editConfig(t, b, pwLine, "passwordFile: /etc/chittyid-sidecar/password")
		}, checkPasswordFile, "which is not a Secret"},
		{"password file not mounted", func(t *testing.T, b *base) {
			editConfig(t, b, pwLine, "passwordFile: /run/redis-password")
		}, checkPasswordFile, "no volume mount"},
		{"password Secret mounted with subPath", func(t *testing.T, b *base) {
			m := mountOf(t, sidecarOf(t, b), "/var/run/secrets/chittyid-redis")
			m.MountPath, m.SubPath = "/var/run/secrets/chittyid-redis/password", "password"
		}, checkPasswordFile, "subPath"},
		{"password Secret optional", func(t *testing.T, b *base) {
			b.volume("chittyid-redis").Secret.Optional = ptr(true)
		}, checkPasswordFile, "optional"},
		{"password file mode 0400", func(t *testing.T, b *base) {
			b.volume("chittyid-redis").Secret.DefaultMode = ptr(int32(0o400))
		}, checkPasswordFile, "can read it only"},
		{"password file mode 440 in decimal", func(t *testing.T, b *base) {
			b.volume("chittyid-redis").Secret.DefaultMode = ptr(int32(440))
		}, checkPasswordFile, "read bits only"},
		{"app mounts the password", func(t *testing.T, b *base) {
			c := &b.pod().Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "chittyid-redis", MountPath: "/redis"})
		}, checkPasswordFile, "app container app mounts the Redis password's volume"},
		{"overlay config drifted from the component's", func(t *testing.T, b *base) {
			editConfig(t, b, "drainTimeout: 20s", "drainTimeout: 25s")
		}, checkConfigMatchesComponent, "shutdown"},
		{"fleet where it must be off", func(t *testing.T, b *base) {}, checkFleetOff, "the fleet tier is configured"},
		{"sidecar after the app's init containers", func(t *testing.T, b *base) {
			p := b.pod()
			p.InitContainers = append([]corev1.Container{{Name: "migrate"}}, p.InitContainers...)
		}, checkSidecarFirst, "must come first"},
		{"snapshot limit still checked in the overlay", func(t *testing.T, b *base) {
			b.volume("chittyid-snapshot").EmptyDir.SizeLimit = ptr(resource.MustParse("1Mi"))
		}, checkSnapshotVolume, "sizeLimit 1Mi"},
	})
}

// TestFleetConfigLoads: the overlay's config, as the sidecar reads it,
// turns the fleet tier on with the password from the file.
func TestFleetConfigLoads(t *testing.T) {
	t.Parallel()
	cfg, err := render(t, fleetDir).effectiveConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults().Fleet
	want.Redis.Addrs = []string{"redis-master:6379"}
	want.Redis.Password = testRedisPassword
	got := cfg.Fleet
	got.Redis.PasswordFile = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fleet section %+v, want %+v", got, want)
	}
	if cfg.Fleet.Redis.Password.Reveal() != testRedisPassword {
		t.Error("the password file was not read")
	}
}
