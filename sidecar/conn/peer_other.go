//go:build !linux

package conn

import "net"

// Peer cannot tell on this platform: the caller counts as there.
func Peer(net.Conn) PeerState { return PeerThere }

// Reset cannot tell on this platform.
func Reset(net.Conn) bool { return false }
