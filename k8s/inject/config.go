package inject

import (
	"errors"
	"fmt"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsyaml "sigs.k8s.io/yaml"

	component "github.com/chittyos/chittyid-sidecar/k8s/components/chittyid-sidecar"
)

// Config is the injector's own config file (--config; the Helm chart's
// values under sidecar): what it injects by default, and the bounds within
// which a pod's annotations may change it. Zero values mean the default,
// which is the Kustomize component's (components/chittyid-sidecar).
type Config struct {
	// Image is the sidecar's image when a pod's id.chitty.cc/image names
	// none. Default: the component's.
	Image string `json:"image,omitempty"`
	// AllowedImages are the repositories (an image without its tag or
	// digest) that id.chitty.cc/image may name. Default: Image's.
	AllowedImages []string `json:"allowedImages,omitempty"`
	// ConfigMap is the sidecar's ConfigMap when a pod's
	// id.chitty.cc/config-map names none. Default: chittyid-sidecar-config.
	ConfigMap string `json:"configMap,omitempty"`
	// TokenSecret is the Secret with the upstream token (key "token") when
	// a pod's id.chitty.cc/token-secret names none. Default: chittyid-token.
	TokenSecret string `json:"tokenSecret,omitempty"`
	// Resources are the sidecar's requests and limits when a pod's
	// annotations set none. Default: the component's (50m and 64Mi, limits
	// 500m and 128Mi).
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// MaxResources bounds what id.chitty.cc/cpu-* and memory-* may ask
	// for. Default: cpu 2, memory 1Gi.
	MaxResources corev1.ResourceList `json:"maxResources,omitempty"`
	// MinMemoryLimit is the smallest memory limit an annotation may set:
	// the sidecar's cache (cache.maxSizeMB, 32 in the component's config)
	// must stay at most half of it. Default: 64Mi.
	MinMemoryLimit *resource.Quantity `json:"minMemoryLimit,omitempty"`
	// APIPort is the port of the sidecar's API (listen in its config file,
	// 127.0.0.1:8787 in the component's), which the app's
	// CHITTYID_SERVICE_URL names. Default: 8787.
	APIPort int32 `json:"apiPort,omitempty"`
	// APIPorts bounds what id.chitty.cc/api-port may choose. Default:
	// 1024 to 65535.
	APIPorts PortRange `json:"apiPorts,omitempty"`
	// MinTerminationGracePeriodSeconds is the grace period the pod needs:
	// the app's own stop, then the sidecar's shutdown.drainTimeout (20s),
	// then a margin. A pod with less keeps its value and gets a warning.
	// Default: 45.
	MinTerminationGracePeriodSeconds int64 `json:"minTerminationGracePeriodSeconds,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Min int32 `json:"min,omitempty"`
	Max int32 `json:"max,omitempty"`
}

// LoadConfig reads the config file at path: strict YAML, then defaults,
// then Validate. An empty path means every default.
func LoadConfig(path string) (Config, error) {
	var c Config
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("loading injector config %q: %w", path, err)
		}
		if err := sigsyaml.UnmarshalStrict(data, &c); err != nil {
			return Config{}, fmt.Errorf("loading injector config %q: %w", path, err)
		}
	}
	if err := c.withDefaults(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("injector config %q: %w", path, err)
	}
	return c, nil
}

// withDefaults fills the zero fields; the sidecar's own defaults come from
// the component's patch.
func (c *Config) withDefaults() error {
	tpl, err := componentPod()
	if err != nil {
		return err
	}
	s := tpl.InitContainers[0]
	if c.Image == "" {
		c.Image = s.Image
	}
	if len(c.AllowedImages) == 0 {
		c.AllowedImages = []string{repository(c.Image)}
	}
	if c.ConfigMap == "" {
		c.ConfigMap = volumeRef(tpl, volumeConfig)
	}
	if c.TokenSecret == "" {
		c.TokenSecret = volumeRef(tpl, volumeToken)
	}
	if c.Resources.Requests == nil && c.Resources.Limits == nil {
		c.Resources = *s.Resources.DeepCopy()
	}
	if c.MaxResources == nil {
		c.MaxResources = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("1Gi"),
		}
	}
	if c.MinMemoryLimit == nil {
		q := resource.MustParse("64Mi")
		c.MinMemoryLimit = &q
	}
	if c.APIPort == 0 {
		c.APIPort = defaultAPIPort
	}
	if c.APIPorts == (PortRange{}) {
		c.APIPorts = PortRange{Min: 1024, Max: 65535}
	}
	if c.MinTerminationGracePeriodSeconds == 0 {
		c.MinTerminationGracePeriodSeconds = 45
	}
	return nil
}

// Validate reports every problem of a config with its defaults filled in.
func (c Config) Validate() error {
	var errs []error
	if err := checkImage(c.Image); err != nil {
		errs = append(errs, fmt.Errorf("image: %w", err))
	} else if !imageAllowed(c.AllowedImages, c.Image) {
		errs = append(errs, fmt.Errorf("image %q is not in allowedImages %q", c.Image, c.AllowedImages))
	}
	for _, name := range []struct{ key, v string }{{"configMap", c.ConfigMap}, {"tokenSecret", c.TokenSecret}} {
		if msgs := validation.IsDNS1123Subdomain(name.v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s %q: %s", name.key, name.v, strings.Join(msgs, "; ")))
		}
	}
	if c.APIPorts.Min < 1 || c.APIPorts.Max > 65535 || c.APIPorts.Min > c.APIPorts.Max {
		errs = append(errs, fmt.Errorf("apiPorts %d-%d: want 1 <= min <= max <= 65535", c.APIPorts.Min, c.APIPorts.Max))
	}
	if c.APIPort < c.APIPorts.Min || c.APIPort > c.APIPorts.Max {
		errs = append(errs, fmt.Errorf("apiPort %d is outside apiPorts %d-%d", c.APIPort, c.APIPorts.Min, c.APIPorts.Max))
	}
	if c.MinTerminationGracePeriodSeconds < 0 {
		errs = append(errs, fmt.Errorf("minTerminationGracePeriodSeconds %d is negative", c.MinTerminationGracePeriodSeconds))
	}
	if err := c.checkResources(c.Resources); err != nil {
		errs = append(errs, fmt.Errorf("resources: %w", err))
	}
	return errors.Join(errs...)
}

// checkResources holds r to the bounds: both CPU and memory requested and
// limited, requests at most limits, limits at most MaxResources, the memory
// limit at least MinMemoryLimit.
func (c Config) checkResources(r corev1.ResourceRequirements) error {
	var errs []error
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		switch {
		case !hasReq || !hasLim:
			errs = append(errs, fmt.Errorf("%s needs a request and a limit", name))
			continue
		case req.Sign() <= 0:
			errs = append(errs, fmt.Errorf("%s request %s must be above zero", name, req.String()))
		case req.Cmp(lim) > 0:
			errs = append(errs, fmt.Errorf("%s request %s is above its limit %s", name, req.String(), lim.String()))
		}
		if max, ok := c.MaxResources[name]; ok && lim.Cmp(max) > 0 {
			errs = append(errs, fmt.Errorf("%s limit %s is above the injector's maximum %s", name, lim.String(), max.String()))
		}
	}
	if lim, ok := r.Limits[corev1.ResourceMemory]; ok && lim.Cmp(*c.MinMemoryLimit) < 0 {
		errs = append(errs, fmt.Errorf("memory limit %s is below the injector's minimum %s (the sidecar's cache must fit in half of it)", lim.String(), c.MinMemoryLimit.String()))
	}
	return errors.Join(errs...)
}

// defaultAPIPort is the port of listen in the component's config.yaml.
const defaultAPIPort = 8787

// componentPod returns the pod spec of the component's patch, checked for
// the shape the injector relies on: the sidecar as the one init container,
// its volumes.
func componentPod() (*corev1.PodSpec, error) {
	var d appsv1.Deployment
	if err := sigsyaml.UnmarshalStrict(component.Patch(), &d); err != nil {
		return nil, fmt.Errorf("decoding the component's sidecar.yaml: %w", err)
	}
	p := &d.Spec.Template.Spec
	if len(p.InitContainers) != 1 || p.InitContainers[0].Name != SidecarName {
		return nil, fmt.Errorf("the component's sidecar.yaml must hold one init container, %s", SidecarName)
	}
	for _, v := range []string{volumeConfig, volumeToken} {
		if volumeRef(p, v) == "" {
			return nil, fmt.Errorf("the component's sidecar.yaml has no ConfigMap or Secret volume %s", v)
		}
	}
	return p, nil
}

// volumeRef returns the ConfigMap or Secret that volume name of p refers to.
func volumeRef(p *corev1.PodSpec, name string) string {
	for _, v := range p.Volumes {
		switch {
		case v.Name != name:
		case v.ConfigMap != nil:
			return v.ConfigMap.Name
		case v.Secret != nil:
			return v.Secret.SecretName
		}
	}
	return ""
}

// repository returns image without its tag or digest.
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// checkImage accepts an image reference of printable characters without
// spaces: what the kubelet's runtime makes of it is the runtime's affair,
// but the repository must be one of AllowedImages.
func checkImage(image string) error {
	if image == "" {
		return errors.New("empty")
	}
	if len(image) > 512 {
		return fmt.Errorf("%d characters, more than 512", len(image))
	}
	for _, r := range image {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("%q has a character other than visible ASCII", image)
		}
	}
	return nil
}

func imageAllowed(allowed []string, image string) bool {
	repo := repository(image)
	for _, a := range allowed {
		if a == repo {
			return true
		}
	}
	return false
}
