// Package sim is a stand-in for the ChittyID service, for tests, the dev
// mode, benchmarks and fault drills. Start serves the upstream API of either
// dialect (client-v1 or worker, minting IDs of either format) on one loopback
// listener and a control API on another, so that a fault injected through the
// control API never cuts the control API off. Every minted ID is unique (a
// counter written in mixed radix into the ID's segments), passes the
// configured chittyid.Format check and carries its entity's type letter; the
// simulator remembers the last million of them, so client-v1's validate
// answers valid exactly for those. Faults (status, slow, hang, refuse,
// fallback, badformat, garbage) can be set over HTTP (POST /sim/faults) or
// in process (SetFault) with the same semantics; the control API also
// reports per-route counters, the minted IDs, the last 1000 API requests
// and the API connections.
//
// The worker dialect behaves as the public service's worker does when run
// (docs/upstream.md, "Upstream dialects"): its mint backend's failures, the status
// and fallback faults and a refused token, are HTTP 200 fallbacks with the
// worker's codes and leave /health and validate alone; validate checks
// format and checksum only (minted or not) and answers error IDs with
// isError; a missing entityType mints a thing; Idempotency-Key is ignored.
// The slow, hang, refuse and garbage faults are the worker itself
// misbehaving, as in client-v1, and badformat has it mint IDs of the other
// format.
//
// With Config.TLS the API is served over HTTPS (and may require client
// certificates); the simulator counts accepted connections and TLS
// handshakes (Conns), so a test can check that its client keeps connections
// alive and resumes sessions. NewCA and CA.Issue make a throwaway CA and
// certificates at run time for that; ServerTLS reads PEM files.
//
// A Sim owns every goroutine it starts: Close releases hung requests, stops
// both servers and waits for them. The package has no mutable package-level
// state, so any number of simulators can run side by side.
package sim
