package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chittyos/chittyid-sidecar/k8s/internal/pki"
)

// testServer is a Server on files of a test CA's certificate.
type testServer struct {
	*Server
	ca                *pki.CA
	certFile, keyFile string
}

func newTestServer(t *testing.T, reload time.Duration) *testServer {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ts := &testServer{ca: ca, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
	ts.issue(t, "first")
	s, err := NewServer(newInjector(t, Config{}), ServerConfig{CertFile: ts.certFile, KeyFile: ts.keyFile, CertReloadInterval: reload},
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	return ts
}

// issue writes a new certificate for 127.0.0.1 named cn.
func (ts *testServer) issue(t *testing.T, cn string) {
	t.Helper()
	cert, key, err := ts.ca.Issue(cn, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: a check between the two writes sees a
	// pair that does not match and keeps the old one.
	if err := os.WriteFile(ts.keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ts.certFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
}

// review returns an AdmissionReview of a pod create.
func review(t *testing.T, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("0b5d3c52-6e1c-4ad5-a3a1-6b9a7d2f0c11"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "team",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview" || r.Response == nil {
		t.Fatalf("not an AdmissionReview v1 response: %s", w.Body)
	}
	return r.Response
}

// TestReviewPaths: /mutate injects annotated pods, /mutate/namespace
// every pod but those opted out; the response carries the request's UID.
func TestReviewPaths(t *testing.T) {
	t.Parallel()
	h := newTestServer(t, time.Hour).Handler()
	for _, tc := range []struct {
		path      string
		ann       map[string]string
		wantPatch bool
	}{
		{PathMutate, map[string]string{AnnotationInject: "true"}, true},
		{PathMutate, nil, false},
		{PathMutateNamespace, nil, true},
		{PathMutateNamespace, map[string]string{AnnotationInject: "false"}, false},
	} {
		resp := decodeResponse(t, post(t, h, tc.path, "application/json", review(t, testPod(tc.ann))))
		if !resp.Allowed || resp.UID != "0b5d3c52-6e1c-4ad5-a3a1-6b9a7d2f0c11" {
			t.Errorf("%s %v: allowed %v uid %q", tc.path, tc.ann, resp.Allowed, resp.UID)
		}
		if got := resp.Patch != nil && resp.PatchType != nil && *resp.PatchType == admissionv1.PatchTypeJSONPatch; got != tc.wantPatch {
			t.Errorf("%s %v: patch %s, want one: %v", tc.path, tc.ann, resp.Patch, tc.wantPatch)
		}
	}
}

// TestMalformedReviews: what is not a review gets a 4xx with a message;
// a review the injector cannot handle gets a denial that says why. No
// panic, every request answered.
func TestMalformedReviews(t *testing.T) {
	t.Parallel()
	h := newTestServer(t, time.Hour).Handler()
	good := review(t, testPod(map[string]string{AnnotationInject: "true"}))
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		status            int
		want              string
	}{
		{"not JSON", "application/json", []byte("{"), 400, "decoding the AdmissionReview"},
		{"wrong content type", "text/plain", good, 415, "want application/json"},
		{"v1beta1", "application/json", bytes.Replace(good, []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), 400, "want admission.k8s.io/v1 AdmissionReview"},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "no request"},
		{"too big", "application/json", append(good[:len(good)-1], []byte(`,"x":"`+strings.Repeat("a", maxReviewBytes)+`"}`)...), 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := post(t, h, PathMutate, tc.contentType, tc.body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("status %d %q, want %d with %q", w.Code, w.Body, tc.status, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		edit func(*admissionv1.AdmissionReview)
		want string
	}{
		{"a deployment", func(r *admissionv1.AdmissionReview) {
			r.Request.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
		}, "handles v1 Pods"},
		{"an update", func(r *admissionv1.AdmissionReview) { r.Request.Operation = admissionv1.Update }, "handles CREATE"},
		{"no object", func(r *admissionv1.AdmissionReview) { r.Request.Object.Raw = nil }, "no object"},
		{"not a pod", func(r *admissionv1.AdmissionReview) { r.Request.Object.Raw = []byte(`{"spec":{"containers":"app"}}`) }, "decoding the pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r admissionv1.AdmissionReview
			if err := json.Unmarshal(good, &r); err != nil {
				t.Fatal(err)
			}
			tc.edit(&r)
			body, _ := json.Marshal(r)
			resp := decodeResponse(t, post(t, h, PathMutate, "application/json", body))
			if resp.Allowed || resp.Result == nil || resp.Result.Code != 400 || !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("response %+v, want a 400 denial saying %q", resp, tc.want)
			}
		})
	}
}

// FuzzReview: any body gets an answer (a response or a 4xx), never a
// panic or a 5xx.
func FuzzReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"id.chitty.cc/inject":"true"}},"spec":{"containers":[{"name":"a"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"id.chitty.cc/inject":"true","id.chitty.cc/memory-limit":"1e9"}},"spec":{"initContainers":[{"name":"x","env":[{"name":"CHITTYID_SERVICE_URL"}]}],"containers":null,"volumes":[{"name":"v"}]}}}}`))
	f.Add([]byte(`null`))
	in, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	h := &reviewHandler{in: in, mode: ByNamespace, metrics: m, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := post(t, h, PathMutateNamespace, "application/json", body)
		if w.Code >= 500 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

// TestCertificateReload: a new certificate in the files is served to new
// connections, while a connection made before goes on with the old one;
// files that do not load leave the current certificate in use.
func TestCertificateReload(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, 10*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ts.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	url := "https://" + ln.Addr().String()

	// A client that keeps its connection: the one made before the reload.
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.ca.Pool()}}}
	defer kept.CloseIdleConnections()
	if cn := servedCN(t, kept, url); cn != "first" {
		t.Fatalf("serving %q, want first", cn)
	}

	ts.issue(t, "second")
	waitFor(t, func() bool { return servedCN(t, freshClient(ts.ca), url) == "second" }, "the new certificate on a new connection")
	if cn := servedCN(t, kept, url); cn != "first" {
		t.Errorf("the connection made before the reload now has %q: it was dropped", cn)
	}

	// A check between the two writes of issue may have counted an error
	// already: wait for one more, the bad file's.
	const reloadErrors = `chittyid_injector_certificate_reloads_total{result="error"}`
	before := counter(t, ts, reloadErrors)
	if err := os.WriteFile(ts.certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return counter(t, ts, reloadErrors) > before }, "the failed reload counted")
	if cn := servedCN(t, freshClient(ts.ca), url); cn != "second" {
		t.Errorf("after files that do not load, serving %q, want second", cn)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		c := freshClient(ts.ca)
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.CloseIdleConnections()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
}

func freshClient(ca *pki.CA) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}}
}

// servedCN GETs /healthz and returns the common name of the certificate
// the server showed.
func servedCN(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if c.Transport.(*http.Transport).DisableKeepAlives {
		c.CloseIdleConnections()
	}
	return resp.TLS.PeerCertificates[0].Subject.CommonName
}

// waitFor polls cond until it holds or 10s pass: a reload happens on the
// server's ticker, which a test can only wait for.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter returns the value of a metric line of /metrics.
func counter(t *testing.T, ts *testServer, series string) float64 {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	w := httptest.NewRecorder()
	ts.Handler().ServeHTTP(w, req)
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// TestMetricsCountReviews: each review is counted by result.
func TestMetricsCountReviews(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, time.Hour)
	post(t, ts.Handler(), PathMutate, "application/json", review(t, testPod(map[string]string{AnnotationInject: "true"})))
	post(t, ts.Handler(), PathMutate, "application/json", review(t, testPod(nil)))
	post(t, ts.Handler(), PathMutate, "application/json", []byte("x"))
	for series, want := range map[string]float64{
		`chittyid_injector_reviews_total{result="injected"}`:      1,
		`chittyid_injector_reviews_total{result="not_requested"}`: 1,
		`chittyid_injector_reviews_total{result="malformed"}`:     1,
		`chittyid_injector_review_duration_seconds_count`:         3,
	} {
		if got := counter(t, ts, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}
