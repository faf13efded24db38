package kubeapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chittyos/chittyid-sidecar/k8s/inject"
)

// Injector is the injector served on loopback for the cluster to call.
type Injector struct {
	// URL is https://127.0.0.1:PORT; the webhooks add the path.
	URL    string
	cancel context.CancelFunc
	done   chan error
}

// ServeInjector serves the injector with its default config on a free
// loopback port, with a certificate of the cluster's CA (the webhooks'
// caBundle is CA.CertPEM), until Stop.
func (c *Cluster) ServeInjector(log *slog.Logger) (*Injector, error) {
	cert, key, err := c.CA.Issue("chittyid-injector", nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(c.Dir, "injector.crt"), filepath.Join(c.Dir, "injector.key")
	if err := errors.Join(os.WriteFile(certFile, cert, 0o600), os.WriteFile(keyFile, key, 0o600)); err != nil {
		return nil, err
	}
	in, err := inject.New(inject.Config{})
	if err != nil {
		return nil, err
	}
	srv, err := inject.NewServer(in, inject.ServerConfig{CertFile: certFile, KeyFile: keyFile}, prometheus.NewRegistry(), log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	inj := &Injector{URL: "https://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { inj.done <- srv.Serve(ctx, ln) }()
	return inj, nil
}

// Stop stops the injector and waits for it; it returns nil after the
// first call.
func (i *Injector) Stop() error {
	i.cancel()
	err, ok := <-i.done
	if ok {
		close(i.done)
	}
	return err
}

// RestrictedPod is an app's pod that meets the restricted Pod Security
// Standard on its own, with a grace period that suits the sidecar.
func RestrictedPod(name string, annotations map[string]string) *corev1.Pod {
	yes, no, grace := true, false, int64(45)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example.com/app:1",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}
