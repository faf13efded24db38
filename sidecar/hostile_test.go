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

// normalClientStaysFast validates a cached ID n times while an attack runs
// and fails if the answers get slow. "Fast" allows for -race and a busy
// 2-core machine: the median under 20ms, none over 250ms.
func normalClientStaysFast(t *testing.T, h *harness, id string) {
	t.Helper()
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		began := time.Now()
		v := h.validate(id)
		lat = append(lat, time.Since(began))
		if v.status != 200 || v.header.Get("X-Cache") != "HIT" {
			t.Fatalf("cached validate during the attack: %d %s", v.status, v.raw)
		}
	}
	slices.Sort(lat)
	if med, worst := lat[len(lat)/2], lat[len(lat)-1]; med > 20*time.Millisecond || worst > 250*time.Millisecond {
		t.Errorf("cached validate during the attack: median %v, worst %v", med, worst)
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
	id := h.mustMint("PEO")
	h.validate(id)

	t.Run("thousands of idle keep-alive connections", func(t *testing.T) {
		for i := 0; i < 2000; i++ {
			dial(t, h)
		}
		normalClientStaysFast(t, h, id)
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
		normalClientStaysFast(t, h, id)
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
		normalClientStaysFast(t, h, id)
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
		normalClientStaysFast(t, h, id)
	})
	t.Run("pipelined garbage", func(t *testing.T) {
		c := dial(t, h)
		_, _ = c.Write([]byte(strings.Repeat("GARBAGE \x00\x01 / HTTP/9\r\n\r\n", 1000)))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("answer to garbage: %q, %v", line, err)
		}
		normalClientStaysFast(t, h, id)
	})
}
