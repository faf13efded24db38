// Command injectorbench measures chittyid-injector (k8s/cmd/chittyid-injector)
// as the API server uses it: the binary serving TLS on loopback, reviews
// of an annotated pod sent one after another over one keep-alive
// connection, each timed from the request's first byte written to the
// response's last byte read. It reports p50, p90, p99 and the largest of
// 1,000 reviews per round, and the injector's RSS, and writes them into
// bench/RESULTS.md between the injector markers. The review is JSON
// written out here, so the sidecar's module needs no Kubernetes types.
//
//	go run ./bench/cmd/injectorbench [--rounds 3] [--reviews 1000] [--out bench/RESULTS.md]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

const (
	markerBegin = "<!-- injector: begin (written by go run ./bench/cmd/injectorbench) -->"
	markerEnd   = "<!-- injector: end -->"
)

func main() {
	rounds := flag.Int("rounds", 3, "rounds of --reviews reviews each")
	reviews := flag.Int("reviews", 1000, "reviews per round")
	out := flag.String("out", "bench/RESULTS.md", "report file: the injector section is replaced or appended")
	flag.Parse()
	if err := run(*rounds, *reviews, *out); err != nil {
		fmt.Fprintln(os.Stderr, "injectorbench:", err)
		os.Exit(1)
	}
}

type round struct{ p50, p90, p99, max time.Duration }

func run(rounds, reviews int, out string) error {
	work, err := os.MkdirTemp("", "injectorbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "chittyid-injector")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/chittyid-injector")
	build.Dir = "k8s"
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the injector (run from the repository's root): %w", err)
	}
	pool, certFile, keyFile, err := certificates(work)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()

	// The injector on core 0 with one P, this client on core 1, as
	// bench/run pins its servers and wrk.
	args := []string{bin, "serve", "--listen", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--log-format", "text"}
	pinned := ""
	if ts, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		args = append([]string{ts, "-c", "0"}, args...)
		pinned = "injector on core 0 (GOMAXPROCS 1), this client on core 1"
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	logFile, err := os.Create(filepath.Join(work, "injector.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if pinned != "" {
		exec.Command("taskset", "-p", "-c", "1", fmt.Sprint(os.Getpid())).Run()
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 1}}
	url := "https://" + addr + "/mutate"
	if err := waitUp(client, "https://"+addr+"/readyz"); err != nil {
		return err
	}
	rssIdle, _ := procStatus(cmd.Process.Pid, "VmRSS")
	body := reviewBody()
	for range 200 { // warm-up: connection, TLS, the Go runtime
		if _, err := send(client, url, body); err != nil {
			return err
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	cpu0, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return err
	}
	var results []round
	for range rounds {
		lat := make([]time.Duration, 0, reviews)
		for range reviews {
			d, err := send(client, url, body)
			if err != nil {
				return err
			}
			lat = append(lat, d)
		}
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
		results = append(results, round{q(0.50), q(0.90), q(0.99), lat[len(lat)-1]})
	}
	cpu1, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return err
	}
	cpuPerReview := (cpu1 - cpu0) / time.Duration(rounds*reviews)
	rss, err := procStatus(cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	hwm, _ := procStatus(cmd.Process.Pid, "VmHWM")
	loadavg := strings.Join(strings.Fields(string(load))[:3], " ")
	section := report(results, reviews, len(body), rssIdle, rss, hwm, pinned, cpuPerReview, loadavg)
	fmt.Print(section)
	return writeSection(out, section)
}

// send posts one review and checks that the pod came out injected.
func send(c *http.Client, url string, body []byte) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	var r struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &r) != nil || !r.Response.Allowed || len(r.Response.Patch) == 0 {
		return 0, fmt.Errorf("review not injected: %s %.300s", resp.Status, data)
	}
	return d, nil
}

// reviewBody is the AdmissionReview the API server sends for a pod of a
// Deployment annotated for the sidecar: two containers, env, probes,
// resources, volumes, as a ReplicaSet creates it (defaulted fields
// included).
func reviewBody() []byte {
	container := func(name string) map[string]any {
		return map[string]any{
			"name": name, "image": "registry.example.com/orders:4.5.6", "imagePullPolicy": "IfNotPresent",
			"args":  []string{"--port=8080", "--log-format=json"},
			"ports": []any{map[string]any{"name": "http", "containerPort": 8080, "protocol": "TCP"}},
			"env": []any{
				map[string]any{"name": "LOG_LEVEL", "value": "info"},
				map[string]any{"name": "POD_NAME", "valueFrom": map[string]any{"fieldRef": map[string]any{"apiVersion": "v1", "fieldPath": "metadata.name"}}},
			},
			"resources":                map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "256Mi"}},
			"readinessProbe":           map[string]any{"httpGet": map[string]any{"path": "/ready", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
			"volumeMounts":             []any{map[string]any{"name": "scratch", "mountPath": "/tmp"}},
			"securityContext":          map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []string{"ALL"}}},
			"terminationMessagePath":   "/dev/termination-log",
			"terminationMessagePolicy": "File",
		}
	}
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"generateName": "orders-7d9f8c6b5-", "namespace": "payments",
			"labels":          map[string]any{"app": "orders", "pod-template-hash": "7d9f8c6b5"},
			"annotations":     map[string]any{"id.chitty.cc/inject": "true", "example.com/team": "payments"},
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7d9f8c6b5", "uid": "5b1f0c1e-3f7a-4c55-9d3e-1f2a3b4c5d6e", "controller": true, "blockOwnerDeletion": true}},
		},
		"spec": map[string]any{
			"containers":                    []any{container("orders"), container("worker")},
			"volumes":                       []any{map[string]any{"name": "scratch", "emptyDir": map[string]any{}}},
			"restartPolicy":                 "Always",
			"terminationGracePeriodSeconds": 45,
			"dnsPolicy":                     "ClusterFirst",
			"serviceAccountName":            "default",
			"securityContext":               map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
			"schedulerName":                 "default-scheduler",
			"enableServiceLinks":            true,
			"preemptionPolicy":              "PreemptLowerPriority",
			"priority":                      0,
		},
		"status": map[string]any{},
	}
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid":         "0b5d3c52-6e1c-4ad5-a3a1-6b9a7d2f0c11",
			"kind":        map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource":    map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"requestKind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"namespace":   "payments", "operation": "CREATE",
			"userInfo": map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
			"object":   pod, "oldObject": nil, "dryRun": false,
			"options": map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
		},
	}
	b, err := json.Marshal(review)
	if err != nil {
		panic(err)
	}
	return b
}

// certificates writes a certificate for 127.0.0.1 from a throwaway CA
// (upstream/sim's, as benchrun's TLS scenario) and returns a pool that
// trusts it.
func certificates(dir string) (*x509.CertPool, string, string, error) {
	ca, err := sim.NewCA("injectorbench CA")
	if err != nil {
		return nil, "", "", err
	}
	leaf, err := ca.Issue(sim.LeafSpec{Names: []string{"127.0.0.1"}})
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile, err := leaf.WriteFiles(dir, "tls")
	return ca.Pool(), certFile, keyFile, err
}

func waitUp(c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the injector did not come up at %s", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuTime returns a process's user plus system CPU time.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (100 per second here).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// procStatus returns a kB field of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func report(rs []round, reviews, bodyBytes int, idle, rss, hwm int64, pinned string, cpu time.Duration, loadavg string) string {
	var w strings.Builder
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	us := func(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
	fmt.Fprintf(&w, "%s\n## Injector: one admission review (chittyid-injector)\n\n", markerBegin)
	fmt.Fprintf(&w, "%s; %s. %d rounds of %d reviews of an annotated pod (a %d-byte AdmissionReview, as a ReplicaSet's pod reaches the webhook), sent one after another over one keep-alive TLS connection after 200 warm-up reviews; each timed from the request written to the response read, on the client. Every response checked: allowed, with a patch.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), pinnedOr(pinned), len(rs), reviews, bodyBytes)
	fmt.Fprintf(&w, "The machine's load average when the rounds began: %s (on 2 cores; other processes' work shows in the tail, not in the injector's CPU time).\n\n", loadavg)
	fmt.Fprintln(&w, "| Round | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|")
	for i, r := range rs {
		fmt.Fprintf(&w, "| %d | %s | %s | %s | %s |\n", i+1, us(r.p50), us(r.p90), us(r.p99), us(r.max))
	}
	med := func(f func(round) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(&w, "\nMedian of the rounds: **p50 %s, p99 %s** (the API server's limit for a webhook is 10 s; the chart's timeoutSeconds is 5 s).\n\n",
		us(med(func(r round) time.Duration { return r.p50 })), us(med(func(r round) time.Duration { return r.p99 })))
	fmt.Fprintf(&w, "The injector's CPU time (user + system, /proc/PID/stat) per review: **%d µs**.\n\n", cpu.Microseconds())
	fmt.Fprintf(&w, "RSS (VmRSS): **%s** idle, **%s** after the reviews; peak (VmHWM) %s.\n%s\n", mb(idle), mb(rss), mb(hwm), markerEnd)
	return w.String()
}

func pinnedOr(p string) string {
	if p == "" {
		return "not pinned (no taskset or one core)"
	}
	return p
}

// writeSection replaces the injector section of the report, or appends it.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	if i, j := strings.Index(s, markerBegin), strings.Index(s, markerEnd); i >= 0 && j > i {
		s = s[:i] + strings.TrimSuffix(section, "\n") + s[j+len(markerEnd):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
