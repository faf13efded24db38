package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The pod annotations and namespace label the injector reads and writes.
const (
	// AnnotationInject opts a pod in ("true") or, in a labelled namespace,
	// out ("false").
	AnnotationInject = "id.chitty.cc/inject"
	// LabelInject on a namespace, with the value LabelInjectEnabled, opts
	// every pod of it in, except those annotated AnnotationInject "false".
	LabelInject        = "id.chitty.cc/inject"
	LabelInjectEnabled = "enabled"
	// AnnotationStatus is StatusInjected on a pod the injector has changed;
	// such a pod is never changed again.
	AnnotationStatus = "id.chitty.cc/status"
	StatusInjected   = "injected"
	// AnnotationConfigMap and AnnotationTokenSecret name the pod's sidecar
	// ConfigMap and token Secret (Config.ConfigMap, Config.TokenSecret by
	// default), so that two apps in one namespace keep theirs apart.
	AnnotationConfigMap   = "id.chitty.cc/config-map"
	AnnotationTokenSecret = "id.chitty.cc/token-secret"
	// AnnotationImage picks the sidecar's image among Config.AllowedImages.
	AnnotationImage = "id.chitty.cc/image"
	// The sidecar's CPU and memory, within Config.MaxResources.
	AnnotationCPURequest    = "id.chitty.cc/cpu-request"
	AnnotationCPULimit      = "id.chitty.cc/cpu-limit"
	AnnotationMemoryRequest = "id.chitty.cc/memory-request"
	AnnotationMemoryLimit   = "id.chitty.cc/memory-limit"
	// AnnotationAPIPort moves the sidecar's API (on the pod's loopback)
	// to another port within Config.APIPorts, for an app that uses 8787.
	AnnotationAPIPort = "id.chitty.cc/api-port"

	// SidecarName is the name of the injected init container.
	SidecarName = "chittyid-sidecar"
	// EnvServiceURL is what the app's ChittyID client reads: the sidecar's
	// API, added to the app's containers that do not set it.
	EnvServiceURL = "CHITTYID_SERVICE_URL"
	// envListen overrides the sidecar's listen (config.EnvListen).
	envListen = "CHITTYID_SIDECAR_LISTEN"

	volumeConfig = "chittyid-config"
	volumeToken  = "chittyid-token"
	opsPortName  = "ops"
)

// Mode says which opt-in brought a pod to the injector: the webhook
// configuration sends annotated pods and pods of labelled namespaces to
// two paths, because the injector cannot see namespace labels.
type Mode int

const (
	// ByAnnotation injects a pod annotated AnnotationInject "true".
	ByAnnotation Mode = iota
	// ByNamespace injects a pod of a labelled namespace unless it is
	// annotated AnnotationInject "false".
	ByNamespace
)

// The outcomes of Mutate, as the metrics count them.
const (
	OutcomeInjected        = "injected"
	OutcomeNotRequested    = "not_requested"
	OutcomeOptedOut        = "opted_out"
	OutcomeAlreadyInjected = "already_injected"
)

// Result is what Mutate decided for one pod.
type Result struct {
	// Outcome is one of the Outcome constants.
	Outcome string
	// Patch is a JSON Patch (RFC 6902) of the pod, nil when unchanged.
	Patch []byte
	// Warnings are for the client (kubectl prints them): settings of the
	// app's that the injector kept although the sidecar wants another.
	Warnings []string
}

// Injector decides and builds the change to a pod. It is immutable and
// safe for concurrent use.
type Injector struct {
	cfg Config
	// tpl is the component's pod spec: the sidecar and its volumes.
	tpl *corev1.PodSpec
	// opsPort is the sidecar's operations port (metrics.listen), which the
	// Prometheus annotations name.
	opsPort int32
	// group is the sidecar's runAsGroup: the fsGroup of a pod without one.
	group int64
}

// New returns an Injector for cfg, whose zero fields take their defaults.
func New(cfg Config) (*Injector, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("injector config: %w", err)
	}
	tpl, err := componentPod()
	if err != nil {
		return nil, err
	}
	in := &Injector{cfg: cfg, tpl: tpl}
	for _, p := range tpl.InitContainers[0].Ports {
		if p.Name == opsPortName {
			in.opsPort = p.ContainerPort
		}
	}
	if in.opsPort == 0 {
		return nil, fmt.Errorf("the component's sidecar declares no port %q", opsPortName)
	}
	if sc := tpl.InitContainers[0].SecurityContext; sc == nil || sc.RunAsGroup == nil {
		return nil, errors.New("the component's sidecar sets no runAsGroup")
	} else {
		in.group = *sc.RunAsGroup
	}
	return in, nil
}

// Config returns the injector's config with its defaults.
func (in *Injector) Config() Config { return in.cfg }

// Mutate decides whether pod gets the sidecar and returns the patch that
// adds it, with a warning for each setting of the app's it kept. An error
// is a denial: the pod asked for the sidecar in a way it cannot have
// (a bad annotation, a name already taken); its message is for the user.
func (in *Injector) Mutate(pod *corev1.Pod, mode Mode) (Result, error) {
	if outcome, ok := in.skip(pod, mode); ok {
		return Result{Outcome: outcome}, nil
	}
	if err := inSidecar(pod); err != nil {
		return Result{}, err
	}
	o, err := in.options(pod.Annotations)
	if err != nil {
		return Result{}, err
	}
	if err := in.checkConflicts(pod, o.port); err != nil {
		return Result{}, err
	}
	var p patch
	var warnings []string
	warnings = append(warnings, in.annotate(&p, pod)...)
	warnings = append(warnings, in.gracePeriod(&p, pod)...)
	in.fsGroup(&p, pod)
	warnings = append(warnings, in.appEnv(&p, pod, o.port)...)
	in.addVolumes(&p, pod, o)
	c := in.sidecar(o)
	if len(pod.Spec.InitContainers) == 0 {
		p.add("/spec/initContainers", []corev1.Container{c})
	} else {
		p.add("/spec/initContainers/0", c) // first: before the app's init containers
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Result{}, fmt.Errorf("encoding the patch: %w", err)
	}
	return Result{Outcome: OutcomeInjected, Patch: data, Warnings: warnings}, nil
}

// skip says whether the pod is left alone, and why.
func (in *Injector) skip(pod *corev1.Pod, mode Mode) (string, bool) {
	if pod.Annotations[AnnotationStatus] == StatusInjected || hasContainer(pod, SidecarName) {
		return OutcomeAlreadyInjected, true
	}
	switch v := pod.Annotations[AnnotationInject]; {
	case v == "false":
		return OutcomeOptedOut, true
	case mode == ByAnnotation && v != "true":
		return OutcomeNotRequested, true
	}
	return "", false
}

// inSidecar refuses what the sidecar cannot run in, with a message saying
// why and how to opt out.
func inSidecar(pod *corev1.Pod) error {
	var errs []error
	if v := pod.Annotations[AnnotationInject]; v != "" && v != "true" && v != "false" {
		errs = append(errs, fmt.Errorf("annotation %s must be \"true\" or \"false\", got %q", AnnotationInject, v))
	}
	if pod.Spec.HostNetwork {
		errs = append(errs, fmt.Errorf("a hostNetwork pod shares the node's ports, and the sidecar's API (127.0.0.1:%d) would be every pod's on the node; annotate the pod %s: \"false\"", defaultAPIPort, AnnotationInject))
	}
	return errors.Join(errs...)
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// checkConflicts refuses a pod that already uses a name the sidecar's
// volumes need (merging would hand the sidecar the app's volume), or
// declares a port the sidecar listens on (apiPort on the pod's loopback,
// the operations port on all of its addresses): the containers share the
// pod's network, and whichever starts second could not listen.
func (in *Injector) checkConflicts(pod *corev1.Pod, apiPort int32) error {
	var errs []error
	for _, v := range in.tpl.Volumes {
		for _, pv := range pod.Spec.Volumes {
			if pv.Name == v.Name {
				errs = append(errs, fmt.Errorf("the pod already has a volume named %s, which the sidecar needs; rename it, or annotate the pod %s: \"false\"", v.Name, AnnotationInject))
			}
		}
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				switch p.ContainerPort {
				case apiPort:
					errs = append(errs, fmt.Errorf("container %s declares port %d, where the sidecar's API listens (127.0.0.1:%d); move the sidecar's with the annotation %s", c.Name, apiPort, apiPort, AnnotationAPIPort))
				case in.opsPort:
					errs = append(errs, fmt.Errorf("container %s declares port %d, where the sidecar's operations listener (/metrics, probes) listens; the pod cannot have the sidecar: annotate it %s: \"false\"", c.Name, in.opsPort, AnnotationInject))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// options are what the pod's annotations chose, within the config's bounds.
type options struct {
	configMap, tokenSecret, image string
	resources                     corev1.ResourceRequirements
	port                          int32
}

func (in *Injector) options(a map[string]string) (options, error) {
	o := options{
		configMap:   in.cfg.ConfigMap,
		tokenSecret: in.cfg.TokenSecret,
		image:       in.cfg.Image,
		resources:   *in.cfg.Resources.DeepCopy(),
		port:        in.cfg.APIPort,
	}
	var errs []error
	for _, n := range []struct {
		key string
		dst *string
	}{{AnnotationConfigMap, &o.configMap}, {AnnotationTokenSecret, &o.tokenSecret}} {
		v, ok := a[n.key]
		if !ok {
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("annotation %s %q is not a valid name: %s", n.key, v, strings.Join(msgs, "; ")))
			continue
		}
		*n.dst = v
	}
	if v, ok := a[AnnotationImage]; ok {
		if err := checkImage(v); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationImage, err))
		} else if !imageAllowed(in.cfg.AllowedImages, v) {
			errs = append(errs, fmt.Errorf("annotation %s %q: the injector allows only images of %q", AnnotationImage, v, in.cfg.AllowedImages))
		} else {
			o.image = v
		}
	}
	errs = append(errs, in.resourceOptions(a, &o.resources))
	if v, ok := a[AnnotationAPIPort]; ok {
		port, err := strconv.ParseInt(v, 10, 32)
		r := in.cfg.APIPorts
		switch {
		case err != nil || port < int64(r.Min) || port > int64(r.Max):
			errs = append(errs, fmt.Errorf("annotation %s %q: want a port from %d to %d", AnnotationAPIPort, v, r.Min, r.Max))
		case int32(port) == in.opsPort:
			errs = append(errs, fmt.Errorf("annotation %s %q: the sidecar's operations listener uses port %d", AnnotationAPIPort, v, in.opsPort))
		default:
			o.port = int32(port)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return options{}, err
	}
	return o, nil
}

// resourceOptions applies the CPU and memory annotations to r and holds
// the result to the config's bounds.
func (in *Injector) resourceOptions(a map[string]string, r *corev1.ResourceRequirements) error {
	var errs []error
	set := false
	for _, n := range []struct {
		key  string
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{AnnotationCPURequest, r.Requests, corev1.ResourceCPU},
		{AnnotationCPULimit, r.Limits, corev1.ResourceCPU},
		{AnnotationMemoryRequest, r.Requests, corev1.ResourceMemory},
		{AnnotationMemoryLimit, r.Limits, corev1.ResourceMemory},
	} {
		v, ok := a[n.key]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s %q: %w", n.key, v, err))
			continue
		}
		n.list[n.name], set = q, true
	}
	if len(errs) > 0 || !set {
		return errors.Join(errs...)
	}
	if err := in.cfg.checkResources(*r); err != nil {
		return fmt.Errorf("the sidecar's resources from the pod's annotations: %w", err)
	}
	return nil
}

// sidecar returns the component's sidecar container with the options.
func (in *Injector) sidecar(o options) corev1.Container {
	c := *in.tpl.InitContainers[0].DeepCopy()
	c.Image = o.image
	c.Resources = o.resources
	if lim, ok := o.resources.Limits[corev1.ResourceMemory]; ok {
		// As the component: GOMEMLIMIT at 100/128 of the limit (100MiB of
		// 128Mi), so that the Go runtime collects harder before the limit.
		setEnv(&c, "GOMEMLIMIT", strconv.FormatInt(lim.Value()*100/128>>20, 10)+"MiB")
	}
	if o.port != in.cfg.APIPort {
		setEnv(&c, envListen, fmt.Sprintf("127.0.0.1:%d", o.port))
	}
	return c
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// addVolumes adds the component's volumes, pointed at the pod's ConfigMap
// and Secret.
func (in *Injector) addVolumes(p *patch, pod *corev1.Pod, o options) {
	vs := make([]corev1.Volume, 0, len(in.tpl.Volumes))
	for _, v := range in.tpl.Volumes {
		v := *v.DeepCopy()
		switch v.Name {
		case volumeConfig:
			v.ConfigMap.Name = o.configMap
		case volumeToken:
			v.Secret.SecretName = o.tokenSecret
		}
		vs = append(vs, v)
	}
	if len(pod.Spec.Volumes) == 0 {
		p.add("/spec/volumes", vs)
		return
	}
	for _, v := range vs {
		p.add("/spec/volumes/-", v)
	}
}
