//go:build linux

package conn

import (
	"errors"
	"net"
	"syscall"
)

// Peer tells what the caller has done to its end of c, by peeking at the
// socket without consuming anything: a read of zero bytes means it sent
// FIN, which a caller that half-closed (shutdown(SHUT_WR)) sends as well
// as one that closed: it may still read the answer. A reset means it is
// gone. c may wrap the socket (NetConn, as Lazy and tls.Conn have).
// Unknown (not a TCP connection, an error) counts as still there.
func Peer(c net.Conn) PeerState {
	st := PeerThere
	_ = rawSocket(c, func(fd int) {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(fd, buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil:
			st = PeerFIN
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			st = PeerReset
		}
	})
	return st
}

// Reset reports whether c has a pending error: the caller reset it, which
// a caller whose socket was closed does when the answer reaches it. On
// loopback the reset is handled before the write that provoked it
// returns; from a remote caller it arrives a round trip later.
func Reset(c net.Conn) bool {
	reset := false
	_ = rawSocket(c, func(fd int) {
		e, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		reset = err == nil && e != 0
	})
	return reset
}

// rawSocket runs f on the descriptor of c's TCP socket (unwrapping a
// connection that has NetConn, as Lazy and tls.Conn do).
func rawSocket(c net.Conn, f func(fd int)) error {
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}
