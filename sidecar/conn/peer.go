package conn

// PeerState is what a caller has done to its end of a connection, as far
// as the socket tells (Peer).
type PeerState uint8

const (
	// PeerThere: nothing seen, or the platform cannot tell.
	PeerThere PeerState = iota
	// PeerFIN: the caller sent FIN. It closed the connection, or only
	// half-closed it (shutdown(SHUT_WR)) and may still read the answer.
	PeerFIN
	// PeerReset: the caller reset the connection; an answer cannot reach
	// it.
	PeerReset
)
