//go:build linux

package conn

import (
	"errors"
	"net"
	"syscall"
)

// Peer tells what the caller has done to its end of c, by peeking at the
// socket without consuming anything: a read of zero bytes means it sent
// FIN; ECONNRESET, that it reset the connection. c may wrap the socket
// (NetConn, as Lazy and tls.Conn have). Unknown (not a TCP connection, an
// error) counts as still there.
func Peer(c net.Conn) PeerState {
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return PeerThere
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return PeerThere
	}
	st := PeerThere
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil:
			st = PeerFIN
		case errors.Is(err, syscall.ECONNRESET):
			st = PeerReset
		}
		return true // never wait
	})
	return st
}
