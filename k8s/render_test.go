package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/chittyos/chittyid-sidecar/config"
)

const (
	// baseDir is the Kustomize base under test, relative to this package.
	baseDir = "base"
	// componentDir is the Kustomize Component that adds the sidecar.
	componentDir = "components/chittyid-sidecar"
	// fleetDir is the overlay that turns the fleet tier on.
	fleetDir = "overlays/fleet"
	// otherAppDir is a test fixture: the component on an app of another shape.
	otherAppDir = "testdata/component"
	// prefixedAppDir is a test fixture: the other app with a namePrefix.
	prefixedAppDir = "testdata/prefixed"
	// sidecarName is the sidecar's container name in the Deployment.
	sidecarName = "chittyid-sidecar"
	// dockerfilePath is the sidecar's image, whose defaults the manifests use.
	dockerfilePath = "../Dockerfile"
	// testRedisPassword stands in for the Redis password, whose Secret the
	// fleet overlay expects to exist already.
	testRedisPassword = "test-redis-password"
)

// base is a rendered kustomization (the base, an overlay, a fixture), one
// object of each kind, and the files its manifests must agree with.
type base struct {
	deployment *appsv1.Deployment
	configMap  *corev1.ConfigMap
	secret     *corev1.Secret
	netpol     *networkingv1.NetworkPolicy
	// dir is the kustomization rendered.
	dir string
	// generatorName is the ConfigMap's name as the component declares it.
	generatorName string
	// dockerfile is the content of ../Dockerfile.
	dockerfile string
}

// render builds the kustomization in dir with real Kustomize, as `kubectl
// apply -k` does, and decodes every manifest strictly.
func render(t *testing.T, dir string) *base {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b := &base{dir: dir}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
		if err := b.add(r.GetApiVersion(), r.GetKind(), y); err != nil {
			t.Fatalf("decoding %s %s: %v", r.GetKind(), r.GetName(), err)
		}
	}
	if b.deployment == nil || b.configMap == nil || b.secret == nil || b.netpol == nil {
		t.Fatalf("%s must render a Deployment, a ConfigMap, a Secret and a NetworkPolicy, got %+v", dir, rm.AllIds())
	}
	if b.generatorName, err = configMapGeneratorName(filepath.Join(componentDir, "kustomization.yaml")); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	b.dockerfile = string(df)
	return b
}

// add decodes one rendered manifest strictly into its k8s.io/api type: a
// field the type does not have (a typo, a field at the wrong level) or a
// duplicate field is an error, where kubectl might drop it with a warning.
func (b *base) add(apiVersion, kind string, y []byte) error {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return decodeOnce(&b.deployment, y)
	case "v1 ConfigMap":
		return decodeOnce(&b.configMap, y)
	case "v1 Secret":
		return decodeOnce(&b.secret, y)
	case "networking.k8s.io/v1 NetworkPolicy":
		return decodeOnce(&b.netpol, y)
	}
	return fmt.Errorf("no test knows %s %s: decode and check it in base.add", apiVersion, kind)
}

func decodeOnce[T any](slot **T, y []byte) error {
	if *slot != nil {
		return errors.New("the base renders a second object of this kind; the checks assume one")
	}
	*slot = new(T)
	return sigsyaml.UnmarshalStrict(y, *slot)
}

// clone returns a deep copy that a test may break.
func (b *base) clone() *base {
	c := *b
	c.deployment = b.deployment.DeepCopy()
	c.configMap = b.configMap.DeepCopy()
	c.secret = b.secret.DeepCopy()
	c.netpol = b.netpol.DeepCopy()
	return &c
}

// configMapGeneratorName returns the name of the one configMapGenerator of
// the kustomization file at path.
func configMapGeneratorName(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var k types.Kustomization
	if err := sigsyaml.UnmarshalStrict(data, &k); err != nil {
		return "", fmt.Errorf("decoding %s: %w", path, err)
	}
	if len(k.ConfigMapGenerator) != 1 {
		return "", fmt.Errorf("%s: want one configMapGenerator, got %d", path, len(k.ConfigMapGenerator))
	}
	return k.ConfigMapGenerator[0].Name, nil
}

func (b *base) pod() *corev1.PodSpec { return &b.deployment.Spec.Template.Spec }

// sidecar returns the sidecar container, which must be an init container.
func (b *base) sidecar() (*corev1.Container, error) {
	p := b.pod()
	for i := range p.InitContainers {
		if p.InitContainers[i].Name == sidecarName {
			return &p.InitContainers[i], nil
		}
	}
	for _, c := range p.Containers {
		if c.Name == sidecarName {
			return nil, fmt.Errorf("%s is a regular container; a native sidecar is an init container with restartPolicy: Always", sidecarName)
		}
	}
	return nil, fmt.Errorf("no init container named %s", sidecarName)
}

// file is a file of a ConfigMap or Secret volume as a container sees it.
type file struct {
	volume *corev1.Volume
	key    string // the ConfigMap's or Secret's key
	mode   int32  // permission bits
}

// mountedFile finds the ConfigMap or Secret key that appears at path in
// container c, as the kubelet lays the volume out: the deepest mount above
// path, the key named by the path below it (or by the volume's items).
func (b *base) mountedFile(c *corev1.Container, path string) (file, error) {
	var m *corev1.VolumeMount
	var rel string
	for i, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return file{}, fmt.Errorf("volume %s is mounted at %s itself (subPath %q): mount its directory instead, or updates never arrive", vm.Name, path, vm.SubPath)
		}
		r, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if ok && (m == nil || len(vm.MountPath) > len(m.MountPath)) {
			m, rel = &c.VolumeMounts[i], r
		}
	}
	if m == nil {
		return file{}, fmt.Errorf("no volume mount of container %s holds %s", c.Name, path)
	}
	if m.SubPath != "" || m.SubPathExpr != "" {
		return file{}, fmt.Errorf("%s is under the mount of %s with subPath %q: a subPath mount never sees ConfigMap or Secret updates", path, m.Name, m.SubPath+m.SubPathExpr)
	}
	v := b.volume(m.Name)
	if v == nil {
		return file{}, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
	}
	var items []corev1.KeyToPath
	mode := int32(corev1.ConfigMapVolumeSourceDefaultMode)
	switch {
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
		if v.ConfigMap.DefaultMode != nil {
			mode = *v.ConfigMap.DefaultMode
		}
	case v.Secret != nil:
		items = v.Secret.Items
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
	default:
		return file{}, fmt.Errorf("%s comes from volume %s, which is neither a ConfigMap nor a Secret", path, v.Name)
	}
	if len(items) == 0 {
		if strings.Contains(rel, "/") {
			return file{}, fmt.Errorf("%s is %s below the mount of %s: keys are files at the top of the volume", path, rel, v.Name)
		}
		return file{v, rel, mode}, nil
	}
	for _, it := range items {
		if it.Path == rel {
			if it.Mode != nil {
				mode = *it.Mode
			}
			return file{v, it.Key, mode}, nil
		}
	}
	return file{}, fmt.Errorf("volume %s lists items, none of which is %s", v.Name, rel)
}

func (b *base) volume(name string) *corev1.Volume {
	for i, v := range b.pod().Volumes {
		if v.Name == name {
			return &b.pod().Volumes[i]
		}
	}
	return nil
}

// configArg returns the value of --config in the sidecar's args.
func configArg(args []string) (string, error) {
	for i, a := range args {
		if a == "--config" || a == "-config" {
			if i+1 < len(args) {
				return args[i+1], nil
			}
			break
		}
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "config="); ok && strings.HasPrefix(a, "-") {
			return v, nil
		}
	}
	return "", fmt.Errorf("no --config FILE in the sidecar's args %q", args)
}

// configFile returns the file the sidecar is started with and its content,
// which must be a key of the base's ConfigMap.
func (b *base) configFile() (file, []byte, error) {
	c, err := b.sidecar()
	if err != nil {
		return file{}, nil, err
	}
	path, err := configArg(c.Args)
	if err != nil {
		return file{}, nil, err
	}
	f, err := b.mountedFile(c, path)
	if err != nil {
		return file{}, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if f.volume.ConfigMap == nil || f.volume.ConfigMap.Name != b.configMap.Name {
		return file{}, nil, fmt.Errorf("config file %s comes from volume %s, not from ConfigMap %s", path, f.volume.Name, b.configMap.Name)
	}
	data, ok := b.configMap.Data[f.key]
	if !ok {
		return file{}, nil, fmt.Errorf("config file %s: ConfigMap %s has no key %q", path, b.configMap.Name, f.key)
	}
	return f, []byte(data), nil
}

// tokenFile returns upstream.tokenFile as the ConfigMap's YAML writes it,
// the mounted file behind it, and the token, which must be a key of the
// base's Secret.
func (b *base) tokenFile() (string, file, string, error) {
	_, data, err := b.configFile()
	if err != nil {
		return "", file{}, "", err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", file{}, "", err
	}
	n := tokenFileNode(&doc)
	if n == nil || n.Value == "" {
		return "", file{}, "", errors.New("the config sets no upstream.tokenFile: the token would have to live in the ConfigMap or the environment")
	}
	c, err := b.sidecar()
	if err != nil {
		return "", file{}, "", err
	}
	f, err := b.mountedFile(c, n.Value)
	if err != nil {
		return "", file{}, "", fmt.Errorf("upstream.tokenFile %s: %w", n.Value, err)
	}
	if f.volume.Secret == nil || f.volume.Secret.SecretName != b.secret.Name {
		return "", file{}, "", fmt.Errorf("upstream.tokenFile %s comes from volume %s, not from Secret %s", n.Value, f.volume.Name, b.secret.Name)
	}
	token, ok := b.secret.StringData[f.key]
	if !ok {
		v, inData := b.secret.Data[f.key]
		if !inData {
			return "", file{}, "", fmt.Errorf("upstream.tokenFile %s: Secret %s has no key %q", n.Value, b.secret.Name, f.key)
		}
		token = string(v)
	}
	return n.Value, f, token, nil
}

// tokenFileNode returns the scalar node of upstream.tokenFile, or nil.
func tokenFileNode(doc *yaml.Node) *yaml.Node { return configNode(doc, "upstream", "tokenFile") }

// configNode returns the node at the dotted path of a config document, or nil.
func configNode(doc *yaml.Node, path ...string) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	n := doc.Content[0]
	for _, k := range path {
		n = mappingValue(n, k)
	}
	return n
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// effectiveConfig parses the ConfigMap's YAML with the sidecar's own
// config.Parse, as the sidecar would in the pod: with the sidecar
// container's environment and the Secret's token.
//
// Parse reads upstream.tokenFile and fleet.redis.passwordFile, absolute
// paths that exist only in the pod. So the token (and a stand-in Redis
// password, whose Secret is not rendered) go to temp files and a copy of
// the YAML points the keys at them, nothing else changed (re-encoded by
// yaml.v3, so line numbers in errors may differ from config.yaml's). That
// the original paths are the Secrets' keys is checked by tokenFile and
// passwordFile.
func (b *base) effectiveConfig() (*config.Config, error) {
	_, data, err := b.configFile()
	if err != nil {
		return nil, err
	}
	c, err := b.sidecar()
	if err != nil {
		return nil, err
	}
	env, err := literalEnv(c)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chittyid-k8s-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, _, token, err := b.tokenFile(); err == nil {
		if data, err = withFile(data, []string{"upstream", "tokenFile"}, token, dir); err != nil {
			return nil, err
		}
	}
	if data, err = withFile(data, []string{"fleet", "redis", "passwordFile"}, testRedisPassword, dir); err != nil {
		return nil, err
	}
	cfg, err := config.Parse(data, env)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s fails the sidecar's config validation: %w", b.configMap.Name, err)
	}
	return cfg, nil
}

// withFile writes content to a file in dir and returns data with the key
// at path (upstream.tokenFile, fleet.redis.passwordFile) naming it; data is
// returned as it is when it does not set the key.
func withFile(data []byte, path []string, content, dir string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	n := configNode(&doc, path...)
	if n == nil || n.Value == "" {
		return data, nil
	}
	file := filepath.Join(dir, path[len(path)-1])
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		return nil, err
	}
	n.Value, n.Style, n.Tag = file, yaml.DoubleQuotedStyle, "!!str"
	return yaml.Marshal(&doc)
}

// literalEnv returns a lookupEnv over the container's env values. An
// override the sidecar reads (config.EnvListen and the others) that comes
// from a reference cannot be checked here and is an error.
func literalEnv(c *corev1.Container) (func(string) (string, bool), error) {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			switch e.Name {
			case config.EnvListen, config.EnvServiceURL, config.EnvToken:
				return nil, fmt.Errorf("env %s of %s comes from a reference, which this test cannot resolve", e.Name, c.Name)
			}
			continue
		}
		env[e.Name] = e.Value
	}
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}, nil
}

// addrPort returns the host and port of a listen address named key.
func addrPort(key, addr string) (string, int32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	port, err := strconv.ParseInt(p, 10, 32)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%s %s: the manifests need a fixed port", key, addr)
	}
	return host, int32(port), nil
}

// dockerfileInstruction returns the arguments of the last instruction
// named name (USER, CMD, ...) in the Dockerfile: the run stage's.
func dockerfileInstruction(dockerfile, name string) (string, bool) {
	var last string
	found := false
	for _, line := range strings.Split(dockerfile, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.EqualFold(f[0], name) {
			last, found = strings.TrimSpace(strings.TrimSpace(line)[len(f[0]):]), true
		}
	}
	return last, found
}

// dockerfileExec returns the JSON (exec) form of the last CMD or ENTRYPOINT.
func dockerfileExec(dockerfile, name string) ([]string, error) {
	s, ok := dockerfileInstruction(dockerfile, name)
	if !ok {
		return nil, fmt.Errorf("the Dockerfile has no %s", name)
	}
	var args []string
	if err := json.Unmarshal([]byte(s), &args); err != nil {
		return nil, fmt.Errorf("the Dockerfile's %s is not in exec (JSON) form: %w", name, err)
	}
	return args, nil
}
