package sidecar_test

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// normalClient is a well-behaved app beside a sidecar under attack, and
// the same app beside a control sidecar of the same process that nobody
// attacks.
type normalClient struct {
	h, control   *harness
	id, idAtCtrl string // a cached ID on each
}

func newNormalClient(t *testing.T, h *harness) normalClient {
	t.Helper()
	c := normalClient{h: h, control: start(t, sim.Config{}, ""), id: h.mustMint("PEO")}
	c.idAtCtrl = c.control.mustMint("PEO")
	return c
}

// staysFast validates a cached ID 50 times on each sidecar, alternately,
// while an attack runs, and fails if an answer is not a HIT or the
// attacked sidecar's median is over 10 times the control's: an attack
// that held up the request path (the server's workers, a lock) makes
// its answers wait for the attackers' timeouts, seconds. Both medians come
// from the same moments, so a busy machine slows both alike.
func (c normalClient) staysFast(t *testing.T) {
	t.Helper()
	var lat, ctl []time.Duration
	for range 50 {
		for _, side := range []struct {
			h   *harness
			id  string
			out *[]time.Duration
		}{{c.h, c.id, &lat}, {c.control, c.idAtCtrl, &ctl}} {
			began := time.Now()
			v := side.h.validate(side.id)
			*side.out = append(*side.out, time.Since(began))
			if v.status != 200 || v.header.Get("X-Cache") != "HIT" {
				t.Fatalf("cached validate during the attack: %d %s", v.status, v.raw)
			}
		}
	}
	slices.Sort(lat)
	slices.Sort(ctl)
	med, ctlMed := lat[len(lat)/2], ctl[len(ctl)/2]
	t.Logf("cached validates during the attack: median %v, worst %v; on the control sidecar: median %v, worst %v", med, lat[len(lat)-1], ctlMed, ctl[len(ctl)-1])
	if med > 10*ctlMed {
		t.Errorf("cached validates during the attack: median %v, over 10 times the control sidecar's %v", med, ctlMed)
	}
}

func dial(t *testing.T, h *harness) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestHostileClients(t *testing.T) {
	t.Parallel()
	h := start(t, sim.Config{}, "")
	app := newNormalClient(t, h)
	id := app.id

	t.Run("thousands of idle keep-alive connections", func(t *testing.T) {
		for i := 0; i < 2000; i++ {
			dial(t, h)
		}
		app.staysFast(t)
	})
	t.Run("slow-header clients", func(t *testing.T) {
		conns := make([]net.Conn, 200)
		for i := range conns {
			conns[i] = dial(t, h)
			fmt.Fprintf(conns[i], "GET /v1/validate/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", id)
		}
		done := make(chan struct{})
		go func() { // a byte now and then, never finishing the header
			defer close(done)
			for round := 0; round < 5; round++ {
				for _, c := range conns {
					_, _ = c.Write([]byte("a"))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		app.staysFast(t)
		<-done
	})
	t.Run("huge headers get 431", func(t *testing.T) {
		c := dial(t, h)
		fmt.Fprintf(c, "GET /v1/validate/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n", id, strings.Repeat("b", 64<<10))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, " 431 ") {
			t.Errorf("answer to a 64 KiB header: %q, %v", line, err)
		}
		app.staysFast(t)
	})
	t.Run("a client that never reads its answers", func(t *testing.T) {
		c := dial(t, h)
		go func() { // pipelined requests for a large answer, never read
			req := "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
			for i := 0; i < 2000; i++ {
				if _, err := c.Write([]byte(req)); err != nil {
					return
				}
			}
		}()
		app.staysFast(t)
	})
	t.Run("pipelined garbage", func(t *testing.T) {
		c := dial(t, h)
		_, _ = c.Write([]byte(strings.Repeat("GARBAGE \x00\x01 / HTTP/9\r\n\r\n", 1000)))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("answer to garbage: %q, %v", line, err)
		}
		app.staysFast(t)
	})
}
