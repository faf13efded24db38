package sim

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

func TestFaultHangReleased(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		release func(t *testing.T, s *Sim, c *client)
	}{
		{"ok in process", func(t *testing.T, s *Sim, c *client) { mustSetFault(t, s, Fault{Mode: ModeOK}) }},
		{"ok over http", func(t *testing.T, s *Sim, c *client) { setFault(t, s, c, true, Fault{Mode: ModeOK}) }},
		{"new fault", func(t *testing.T, s *Sim, c *client) {
			mustSetFault(t, s, Fault{Mode: ModeStatus, Status: 503, Routes: []string{"health"}})
		}},
		{"reset in process", func(t *testing.T, s *Sim, c *client) { s.Reset() }},
		{"reset over http", func(t *testing.T, s *Sim, c *client) {
			if r := c.do("POST", s.ControlURL()+"/sim/reset", nil); r.status != 200 {
				t.Fatalf("POST /sim/reset: %d %s", r.status, r.body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{})
			c := newClient(t)
			mustSetFault(t, s, Fault{Mode: ModeHang, Routes: []string{"mint"}})
			results := make(chan response, 2)
			for range 2 {
				go func() { results <- c.mintRaw(s, "PEO") }()
			}
			waitHung(t, s, 2)
			// Other routes still answer, and so does the control API.
			if r := c.do("GET", s.URL()+"/health", nil); r.status != 200 {
				t.Errorf("health during a mint hang: %d", r.status)
			}
			if st := s.Stats(); st.Mint != 2 || st.Minted != 0 {
				t.Errorf("stats during the hang %+v, want 2 mints seen, none minted", st)
			}
			tc.release(t, s, c)
			for range 2 {
				r := <-results
				var a struct{ ChittyID string }
				r.decode(t, &a)
				if r.status != 200 || chittyid.FormatOfficial.Check(a.ChittyID) != nil {
					t.Errorf("released mint: %d %s, want a normal answer", r.status, r.body)
				}
			}
			// Released mints really mint (after a reset, into the fresh list).
			if got := len(s.Minted()); got != 2 {
				t.Errorf("%d IDs minted by the released requests, want 2", got)
			}
		})
	}
}

func TestFaultHangCountKeepsHolding(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	mustSetFault(t, s, Fault{Mode: ModeHang, Count: 1})
	hung := make(chan response, 1)
	go func() { hung <- c.mintRaw(s, "PEO") }()
	waitHung(t, s, 1)
	// The count is used up, so the next request answers, and the first
	// stays hung until the fault is cleared.
	c.mint(s, "PEO")
	select {
	case r := <-hung:
		t.Fatalf("hung request answered before the clear: %d", r.status)
	default:
	}
	mustSetFault(t, s, Fault{Mode: ModeOK})
	if r := <-hung; r.status != 200 {
		t.Errorf("released request: %d", r.status)
	}
}

func TestFaultHangReleasedOnClose(t *testing.T) {
	t.Parallel()
	s, err := Start(Config{}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	mustSetFault(t, s, Fault{Mode: ModeHang})
	type answer struct {
		r   response
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := c.try("POST", s.URL()+"/mint", `{"entity":"PEO"}`)
		done <- answer{r, err}
	}()
	waitHung(t, s, 1)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// Released by Close, the request is answered; held, it would have been
	// cut when Close's grace (closeGrace) ran out.
	if a := <-done; a.err != nil || a.r.status != 200 {
		t.Errorf("the hung request at Close: %d, %v; want it released and answered", a.r.status, a.err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.SetFault(Fault{Mode: ModeOK}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetFault after Close = %v, want ErrClosed", err)
	}
	if err := s.WaitHung(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitHung after Close = %v, want ErrClosed", err)
	}
}

func TestFaultRefuse(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, viaHTTP bool) {
		s := start(t, Config{})
		c := newClient(t)
		id := c.mint(s, "PEO")
		kept, err := net.Dial("tcp", s.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer kept.Close()

		setFault(t, s, c, viaHTTP, Fault{Mode: ModeRefuse})
		if conn, err := net.Dial("tcp", s.APIAddr()); !errors.Is(err, syscall.ECONNREFUSED) {
			if conn != nil {
				conn.Close()
			}
			t.Fatalf("dial under refuse: %v, want connection refused", err)
		}
		if _, err := c.try("POST", s.URL()+"/mint", `{"entity":"PEO"}`); err == nil {
			t.Error("mint under refuse succeeded")
		}
		// Connections open before the fault are cut too.
		_ = kept.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := kept.Read(make([]byte, 1)); err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
			t.Errorf("read on a connection opened before refuse: %v, want it closed", err)
		}
		// The control API keeps working.
		var st Stats
		c.do("GET", s.ControlURL()+"/sim/stats", nil).decode(t, &st)
		if st.Mint != 1 {
			t.Errorf("stats under refuse %+v", st)
		}

		setFault(t, s, c, viaHTTP, Fault{Mode: ModeOK})
		// The refuse cut the pooled API connections; a POST on one of
		// them would fail with EOF before the client noticed.
		c.hc.CloseIdleConnections()
		if !c.validate(s, id) {
			t.Error("validate after the refuse cleared: not valid")
		}
		c.mint(s, "PEO")
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestFaultRefuseThenReset(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	c := newClient(t)
	mustSetFault(t, s, Fault{Mode: ModeRefuse})
	mustSetFault(t, s, Fault{Mode: ModeRefuse}) // again: still refused, no error
	s.Reset()
	c.mint(s, "PEO")
	// Replaced by another fault, the listener opens too.
	mustSetFault(t, s, Fault{Mode: ModeRefuse})
	mustSetFault(t, s, Fault{Mode: ModeStatus, Status: 503})
	// The refuse cut the pooled connection; a POST on it would fail with EOF.
	c.hc.CloseIdleConnections()
	if r := c.mintRaw(s, "PEO"); r.status != 503 {
		t.Errorf("mint after refuse → status: %d, want 503", r.status)
	}
	// Close while refused.
	mustSetFault(t, s, Fault{Mode: ModeRefuse})
}
