// Package kubeapi starts a real etcd and kube-apiserver on free loopback
// ports (the binaries .ci/k8s-tools builds) and talks to the API server
// over plain REST with a bearer token: server-side apply, create, get and
// delete of k8s.io/api objects, with the warnings the server returns. The
// k8s/ tests and `chittyid-injector dev` use it. There is no kubelet or
// controller manager: pods are admitted and stored, never run.
package kubeapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/chittyos/chittyid-sidecar/k8s/internal/pki"
)

// Environment variables naming the binaries (.ci/k8s-tools prints them).
const (
	EnvAPIServer = "CHITTYID_KUBE_APISERVER"
	EnvEtcd      = "CHITTYID_ETCD"
)

// Options say where the binaries are and where their files go.
type Options struct {
	// APIServer and Etcd are the paths of the binaries. Default: the
	// environment's EnvAPIServer and EnvEtcd.
	APIServer, Etcd string
	// Dir holds the data, certificates and the two servers' logs
	// (etcd.log, kube-apiserver.log). It must exist.
	Dir string
}

// Binaries returns the paths from the environment, and an error naming
// what is missing and how to build it.
func Binaries() (apiServer, etcd string, err error) {
	apiServer, etcd = os.Getenv(EnvAPIServer), os.Getenv(EnvEtcd)
	var errs []error
	for _, b := range []struct{ env, path string }{{EnvAPIServer, apiServer}, {EnvEtcd, etcd}} {
		if b.path == "" {
			errs = append(errs, fmt.Errorf("%s is not set", b.env))
			continue
		}
		if _, err := os.Stat(b.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.env, err))
		}
	}
	if len(errs) > 0 {
		return "", "", fmt.Errorf("%w (build them with: eval \"$(bash .ci/k8s-tools)\" in the repository)", errors.Join(errs...))
	}
	return apiServer, etcd, nil
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// URL is the API server's, https://127.0.0.1:PORT.
	URL string
	// Token is the bearer token of a member of system:masters.
	Token string
	// CA signed the API server's certificate; test webhooks can use it too.
	CA *pki.CA
	// Dir is Options.Dir.
	Dir string
	// Client talks to the API server as Token's user.
	Client *Client

	etcd, apiServer *proc
}

// proc is a server process; exited is closed once it has exited, with
// err set.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func (p *proc) wait() {
	p.err = p.cmd.Wait()
	close(p.exited)
}

// stop sends SIGTERM and waits for the exit, killing the process after
// 30s.
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop on SIGTERM within 30s", p.name)
}

// Start starts etcd, then the API server, and returns once the API
// server's /readyz answers ok. Stop stops both; on an error Start stops
// what it started. The logs stay in opts.Dir.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.APIServer == "" || opts.Etcd == "" {
		a, e, err := Binaries()
		if err != nil {
			return nil, err
		}
		opts.APIServer, opts.Etcd = a, e
	}
	ca, err := pki.NewCA("chittyid-test-kubernetes-ca")
	if err != nil {
		return nil, err
	}
	c := &Cluster{CA: ca, Dir: opts.Dir, Token: "chittyid-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if err := c.start(ctx, opts); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	etcdURL, err := c.startEtcd(opts.Etcd)
	if err != nil {
		return err
	}
	if err := c.startAPIServer(opts.APIServer, etcdURL); err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CA.Pool()}}}
	c.Client = NewClient(c.URL, c.Token, hc)
	return c.waitReady(ctx)
}

// startEtcd runs a one-member etcd without fsync (its data is thrown
// away) and returns its client URL.
func (c *Cluster) startEtcd(bin string) (string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.etcd, err = c.spawn("etcd", bin,
		"--name=test",
		"--data-dir="+filepath.Join(c.Dir, "etcd-data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=test="+peer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	return client, err
}

// startAPIServer runs kube-apiserver on a free loopback port with a token
// file, RBAC, and the admission plugins a cluster has by default (Pod
// Security and the admission webhooks among them).
func (c *Cluster) startAPIServer(bin, etcdURL string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	cert, key, err := c.CA.Issue("kube-apiserver", []string{"localhost", "kubernetes.default.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	saKey, err := signingKey()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"apiserver.crt": cert,
		"apiserver.key": key,
		"sa.key":        saKey,
		"tokens.csv":    []byte(c.Token + ",chittyid-test-admin,chittyid-test-admin,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	f := func(name string) string { return filepath.Join(c.Dir, name) }
	c.apiServer, err = c.spawn("kube-apiserver", bin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[0]),
		"--tls-cert-file="+f("apiserver.crt"),
		"--tls-private-key-file="+f("apiserver.key"),
		"--cert-dir="+f("certs"),
		"--token-auth-file="+f("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+f("sa.key"),
		"--service-account-signing-key-file="+f("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// The kubernetes Service's endpoints would be 127.0.0.1, which
		// the reconciler refuses; nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	)
	return err
}

// signingKey is the service-account token signing key (PEM).
func signingKey() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// spawn starts bin with its output in Dir/name.log. It dies with this
// process (Pdeathsig), so a test binary that crashes leaves no server.
func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	// The log file stays open in the child; ours is not needed.
	log.Close()
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go p.wait()
	return p, nil
}

// waitReady polls /readyz until it answers 200: the API server is ready
// once it reaches etcd and its post-start hooks (RBAC's bootstrap roles,
// the default namespaces) have run.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		resp, err := c.Client.Do(ctx, http.MethodGet, "/readyz", "", nil)
		if err == nil && resp.Status == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-c.etcd.exited:
			return fmt.Errorf("etcd exited (%v); its log: %s", c.etcd.err, c.logTail("etcd.log"))
		case <-c.apiServer.exited:
			return fmt.Errorf("kube-apiserver exited (%v); its log: %s", c.apiServer.err, c.logTail("kube-apiserver.log"))
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready (last: %v); its log: %s", last, c.logTail("kube-apiserver.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logTail returns the path of a log and its last lines.
func (c *Cluster) logTail(name string) string {
	path := filepath.Join(c.Dir, name)
	f, err := os.Open(path)
	if err != nil {
		return path
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return path
	}
	const tail = 2000
	if fi.Size() > tail {
		f.Seek(fi.Size()-tail, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return path + ", ending:\n" + string(b)
}

// Stop stops the API server, then etcd, and waits for both.
func (c *Cluster) Stop() error {
	return errors.Join(c.apiServer.stop(), c.etcd.stop())
}

// freePorts returns n ports free on 127.0.0.1 a moment ago. Another
// process may take one before the server binds it; the server then fails
// to start and says so in its log.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
