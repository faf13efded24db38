package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestGetPutRoundTrip: a verdict keeps its verdict, value and fetched-at
// (to the millisecond), lives its life counted from fetched-at, and is not
// written when its life is already over.
func TestGetPutRoundTrip(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	ctx := context.Background()

	fetched := time.Now().Add(-9 * time.Second).Truncate(time.Millisecond)
	for _, tc := range []struct {
		id string
		v  Verdict
	}{
		{"CT-A-CHI-1234-I-24-A-0", Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: fetched}},
		{"CT-A-CHI-9999-I-24-A-0", Verdict{Valid: false, Value: []byte("not_found"), FetchedAt: fetched}},
		{"03-1-USA-0001-P-2601-3-92", Verdict{Valid: true, FetchedAt: fetched}},
	} {
		if err := tr.Put(ctx, tc.id, tc.v, 10*time.Second); err != nil {
			t.Fatalf("Put(%s): %v", tc.id, err)
		}
		got, found, err := tr.Get(ctx, tc.id)
		if err != nil || !found {
			t.Fatalf("Get(%s) = %v, %v", tc.id, found, err)
		}
		if got.Valid != tc.v.Valid || string(got.Value) != string(tc.v.Value) || !got.FetchedAt.Equal(tc.v.FetchedAt) {
			t.Errorf("Get(%s) = %+v, want %+v", tc.id, got, tc.v)
		}
		// 10s of life from 9s ago: about 1s left in Redis.
		ms, err := srv.do("", "PTTL", verdictKey(tr.live.Load().keyPrefix, tc.id)).AsInt64()
		if err != nil || ms <= 0 || ms > 1000 {
			t.Errorf("PTTL of %s = %d, %v; want (0, 1000]", tc.id, ms, err)
		}
	}

	// Life already over: nothing is written.
	if err := tr.Put(ctx, "CT-A-CHI-0000-I-24-A-0", Verdict{Valid: true, FetchedAt: time.Now().Add(-time.Hour)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, found, err := tr.Get(ctx, "CT-A-CHI-0000-I-24-A-0"); found || err != nil {
		t.Errorf("a verdict past its life was written: found %v, err %v", found, err)
	}
	if _, found, err := tr.Get(ctx, "CT-A-NONE-0000-I-24-A-0"); found || err != nil {
		t.Errorf("Get of an unknown ID = %v, %v; want a miss", found, err)
	}
	st := tr.Stats()
	if st.Hits != 3 || st.Misses != 2 || st.Errors != 0 {
		t.Errorf("stats %+v, want 3 hits, 2 misses, no errors", st)
	}
}

// TestGetMalformedEntry: something else under a verdict key is a miss with
// ErrBadEntry, and Fetch treats it as a miss and overwrites it.
func TestGetMalformedEntry(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	key := verdictKey(tr.live.Load().keyPrefix, "X")
	if err := srv.do("", "SET", key, "garbage").Error(); err != nil {
		t.Fatal(err)
	}
	if _, found, err := tr.Get(context.Background(), "X"); found || !errors.Is(err, ErrBadEntry) {
		t.Fatalf("Get = %v, %v; want a miss with ErrBadEntry", found, err)
	}
	calls := 0
	v, src, err := tr.Fetch(context.Background(), "X", testPolicy(), func(context.Context) (Verdict, error) {
		calls++
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	})
	if err != nil || src != SourceFetched || calls != 1 || !v.Valid {
		t.Fatalf("Fetch = %+v, %s, %v after %d fetches", v, src, err, calls)
	}
	if got, found, err := tr.Get(context.Background(), "X"); !found || err != nil || string(got.Value) != "PEO" {
		t.Errorf("after Fetch: Get = %+v, %v, %v", got, found, err)
	}
}

// TestBadArguments: IDs and values out of bounds are refused before Redis.
func TestBadArguments(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	ctx := context.Background()
	if _, _, err := tr.Get(ctx, ""); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Get(\"\"): %v", err)
	}
	if err := tr.Put(ctx, strings.Repeat("x", MaxIDLen+1), Verdict{}, time.Minute); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Put of a long ID: %v", err)
	}
	if err := tr.Put(ctx, "id", Verdict{Value: make([]byte, MaxValueLen+1)}, time.Minute); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("Put of a long value: %v", err)
	}
	// Fetch still answers an ID the tier cannot key: it asks upstream.
	v, src, err := tr.Fetch(ctx, "", testPolicy(), func(context.Context) (Verdict, error) { return Verdict{Valid: false}, nil })
	if err != nil || src != SourceFetched || v.Valid {
		t.Errorf("Fetch(\"\") = %+v, %s, %v", v, src, err)
	}
}

// TestOff: without addresses the tier is off: calls return ErrOff, Fetch
// asks upstream, AllowMint lets everything through, and nothing runs.
func TestOff(t *testing.T) {
	t.Parallel()
	tr, err := New(Defaults(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if tr.Enabled() || tr.Status().State != StateOff {
		t.Errorf("Enabled %v, status %+v", tr.Enabled(), tr.Status())
	}
	if _, _, err := tr.Get(ctx, "id"); !errors.Is(err, ErrOff) {
		t.Errorf("Get: %v", err)
	}
	if err := tr.Put(ctx, "id", Verdict{}, time.Minute); !errors.Is(err, ErrOff) {
		t.Errorf("Put: %v", err)
	}
	if ok, _, err := tr.AllowMint(ctx, 1, 60, 10); !ok || !errors.Is(err, ErrOff) {
		t.Errorf("AllowMint = %v, %v", ok, err)
	}
	v, src, err := tr.Fetch(ctx, "id", testPolicy(), func(context.Context) (Verdict, error) { return Verdict{Valid: true}, nil })
	if err != nil || src != SourceFetched || !v.Valid {
		t.Errorf("Fetch = %+v, %s, %v", v, src, err)
	}
	tr.Close()
	tr.Close()
	if _, _, err := tr.Get(ctx, "id"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

// TestClose: Close is idempotent, stops the prober and makes calls return
// ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	tr := newTier(t, testConfig(t, srv.Addr), testOptions(), true)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if _, _, err := tr.Get(context.Background(), "id"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if s := tr.Status(); s.State != StateClosed {
		t.Errorf("state %s after Close", s.State)
	}
}
