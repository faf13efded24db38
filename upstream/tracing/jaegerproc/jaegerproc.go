// Package jaegerproc runs a Jaeger of its own on loopback ports, with
// in-memory storage: the trace backend `chittyid-sidecar dev --tracing`
// starts and the tracing tests check against. Jaeger (v1.75.0, the
// OpenTelemetry-collector-based all-in-one binary) is built by
// .ci/jaeger-tool, never imported. The sidecar itself never starts it.
package jaegerproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// EnvBinary names the jaeger binary (.ci/jaeger-tool prints it).
const EnvBinary = "CHITTYID_JAEGER"

// ErrNotFound means no jaeger binary was found.
var ErrNotFound = errors.New("no jaeger binary: set " + EnvBinary + ", put jaeger on PATH, or build it with bash .ci/jaeger-tool")

// Find returns the jaeger binary: $CHITTYID_JAEGER, else the newest one
// .ci/jaeger-tool built into the tools cache, else jaeger on PATH.
func Find(lookupEnv func(string) (string, bool)) (string, error) {
	if v, ok := lookupEnv(EnvBinary); ok && v != "" {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinary, err)
		}
		return v, nil
	}
	cache, _ := lookupEnv("XDG_CACHE_HOME")
	if cache == "" {
		if home, ok := lookupEnv("HOME"); ok && home != "" {
			cache = filepath.Join(home, ".cache")
		}
	}
	if cache != "" {
		bins, _ := filepath.Glob(filepath.Join(cache, "chittyid-sidecar", "tools", "jaeger-*", "jaeger"))
		slices.SortFunc(bins, func(a, b string) int { return modTime(b).Compare(modTime(a)) })
		if len(bins) > 0 {
			return bins[0], nil
		}
	}
	if p, err := exec.LookPath("jaeger"); err == nil {
		return p, nil
	}
	return "", ErrNotFound
}

func modTime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// startTimeout bounds how long Start waits for Jaeger to answer.
const startTimeout = 60 * time.Second

// Process is a running Jaeger.
type Process struct {
	cmd       *exec.Cmd
	exited    chan struct{}
	otlp      string // host:port of the OTLP/HTTP receiver
	query     string // host:port of the query API and UI
	LogFile   string // its output
	waitError error
}

// config is Jaeger's: the OTLP/HTTP receiver, memory storage and the
// query service, each on the loopback port given, and none of the
// all-in-one's other listeners (its own metrics off).
const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// Start runs bin with its config and output in dir (which must exist) on
// free loopback ports, and waits until its query API answers (a minute
// at most, or until ctx ends). A port taken between choosing it and
// Jaeger binding it makes Jaeger exit: Start then tries again with new
// ones, three times in all.
func Start(ctx context.Context, bin, dir string) (*Process, error) {
	var err error
	for range 3 {
		var p *Process
		if p, err = start(ctx, bin, dir); err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func start(ctx context.Context, bin, dir string) (*Process, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, config, ports[0], ports[1], ports[2]), 0o600); err != nil {
		return nil, fmt.Errorf("writing Jaeger's config: %w", err)
	}
	logFile := filepath.Join(dir, "jaeger.log")
	out, err := os.Create(logFile)
	if err != nil {
		return nil, fmt.Errorf("creating Jaeger's log: %w", err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr, cmd.Dir = out, out, dir
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{}), LogFile: logFile,
		query: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		otlp:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))}
	go func() { p.waitError = cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		if p.answers(ctx) && p.listening(p.otlp) {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("jaeger exited at start (%v); its output is in %s", p.waitError, logFile)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("jaeger did not answer within %s; its output is in %s", startTimeout, logFile)
		}
	}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var ports []int
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

func (p *Process) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.UIURL()+"api/services", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (p *Process) listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// OTLPEndpoint is the base URL to export to (tracing.endpoint).
func (p *Process) OTLPEndpoint() string { return "http://" + p.otlp }

// UIURL is the URL of Jaeger's UI, and of its query API under it.
func (p *Process) UIURL() string { return "http://" + p.query + "/" }

// Stop ends Jaeger (SIGTERM, SIGKILL after 5s) and waits until it is
// reaped. It may be called more than once.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Span is a span as Jaeger's query API returns it.
type Span struct {
	TraceID       string
	SpanID        string
	OperationName string
	// ParentID is the span of its CHILD_OF reference; "" for a root.
	ParentID string
	// Tags are the span's attributes (and Jaeger's own, span.kind among
	// them), their values as text.
	Tags map[string]string
	// Service is its process's service.name.
	Service string
}

// Trace returns the spans Jaeger holds of the trace id (32 hex digits),
// none if it holds none yet.
func (p *Process) Trace(ctx context.Context, id string) ([]Span, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.UIURL()+"api/traces/"+id, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking Jaeger for trace %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("asking Jaeger for trace %s: status %d", id, resp.StatusCode)
	}
	var body struct {
		Data []struct {
			Spans []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				ProcessID     string `json:"processID"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				Tags []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("reading Jaeger's trace %s: %w", id, err)
	}
	var out []Span
	for _, t := range body.Data {
		for _, s := range t.Spans {
			sp := Span{TraceID: s.TraceID, SpanID: s.SpanID, OperationName: s.OperationName, Tags: map[string]string{},
				Service: t.Processes[s.ProcessID].ServiceName}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					sp.ParentID = r.SpanID
				}
			}
			for _, tag := range s.Tags {
				sp.Tags[tag.Key] = fmt.Sprint(tag.Value)
			}
			out = append(out, sp)
		}
	}
	return out, nil
}
