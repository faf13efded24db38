//go:build linux

package sim

import (
	"errors"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"
)

// clientGone reports whether the client has closed its connection, by
// peeking at the socket without consuming anything.
func clientGone(ctx *fasthttp.RequestCtx) bool {
	tc, ok := ctx.Conn().(*net.TCPConn)
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
		return true
	})
	return gone
}
