package upstream_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// TestLateBatchReportsMintedIDsOnly: a client-v1 batch answered after its
// caller gave up reports the IDs upstream minted for nobody, and not the
// fallback placeholders of the same answer, which are not IDs (a single
// mint's late answer leaves its placeholder out too).
func TestLateBatchReportsMintedIDsOnly(t *testing.T) {
	t.Parallel()
	const (
		minted      = "03-1-USA-0001-P-2601-3-92"
		placeholder = "03-0-ERR-0001-P-2601-0-07"
	)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-release // answer only once the caller has given up
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"chittyIds":["`+placeholder+`","`+minted+`"]}`)
	}))
	t.Cleanup(srv.Close)

	var (
		mu       sync.Mutex
		reported [][]string
	)
	late := upstream.NewLateAnswers(func(_, _ string, _ upstream.CallInfo, ids []string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("late answer: %v", err)
		}
		reported = append(reported, ids)
	})
	cfg := upstream.Defaults()
	cfg.URL, cfg.Token, cfg.Timeout, cfg.LateAnswerWindow = srv.URL+"/v1", token, 5*time.Second, 5*time.Second
	cfg.Retry.MaxAttempts = 1
	c, err := upstream.New(cfg, chittyid.FormatNumeric, upstream.NewBreaker(cfg.Breaker, nil), upstream.Options{Late: late})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	items := []upstream.MintRequest{{Entity: chittyid.EntityPEO}, {Entity: chittyid.EntityPEO}}
	if _, err := c.MintBatch(ctx, items, "", upstream.CallInfo{}); err == nil {
		t.Fatal("MintBatch succeeded before upstream answered")
	}
	close(release)
	late.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !slices.Equal(reported[0], []string{minted}) {
		t.Errorf("late batch reported %q, want [[%s]]", reported, minted)
	}
}
