//go:build linux

package sidecar

import (
	"errors"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"
)

// peerGone reports whether the caller has closed its connection (it gave
// up), by peeking at the socket without consuming anything: a read of zero
// bytes means the peer sent FIN. Unknown (not a TCP connection, an error)
// counts as still there.
func peerGone(ctx *fasthttp.RequestCtx) bool {
	c := ctx.Conn()
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || errors.Is(err, syscall.ECONNRESET)
		return true // never wait
	})
	return gone
}
