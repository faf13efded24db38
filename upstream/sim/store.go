package sim

import (
	"sync"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// Sizes of the simulator's memories.
const (
	// defaultMaxMinted is how many minted IDs are remembered when
	// Config.MaxMinted is zero.
	defaultMaxMinted = 1_000_000
	// maxKeys is how many Idempotency-Keys are remembered.
	maxKeys = 100_000
	// maxRequests is how many API requests Requests reports.
	maxRequests = 1000
)

// Request is one API request the simulator saw, as Requests and
// GET /sim/requests report it. Strings are copies of the request's values.
type Request struct {
	// Route is mint, batch, validate or health, or "" for an unknown route.
	Route string `json:"route"`
	// Method and Path are the request line's, the path as sent (not decoded).
	Method string `json:"method"`
	Path   string `json:"path"`
	// IdempotencyKey, RequestID, TraceParent and TraceState are the
	// Idempotency-Key, X-Request-ID, traceparent and tracestate headers.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	RequestID      string `json:"requestId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
	TraceState     string `json:"tracestate,omitempty"`
	// Authorized says the bearer token matched, or no token is configured.
	Authorized bool `json:"authorized"`
	// Status is the answer's status code; 0 when the connection was closed
	// instead (refuse).
	Status int `json:"status"`
	// Time is when the request arrived. A request is recorded when it is
	// answered, so a hung request shows up once it is released.
	Time time.Time `json:"time"`
}

// ring keeps the last max values pushed, in order.
type ring[T any] struct {
	max  int
	buf  []T
	next int // once full, the index of the oldest value
}

// push appends v, returning the value it evicted, if any.
func (r *ring[T]) push(v T) (old T, evicted bool) {
	if len(r.buf) < r.max {
		r.buf = append(r.buf, v)
		return old, false
	}
	old = r.buf[r.next]
	r.buf[r.next] = v
	r.next = (r.next + 1) % r.max
	return old, true
}

// items returns a copy of the values, oldest first.
func (r *ring[T]) items() []T {
	out := make([]T, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

func (r *ring[T]) reset() {
	r.buf = nil
	r.next = 0
}

// mintedStore remembers the last minted IDs, in order, with their entities.
type mintedStore struct {
	// mu guards ids and set.
	mu  sync.Mutex
	ids ring[string]
	set map[string]chittyid.Entity
}

func newMintedStore(max int) *mintedStore {
	return &mintedStore{ids: ring[string]{max: max}, set: make(map[string]chittyid.Entity)}
}

// add remembers ids[i] as minted for ents[i], forgetting the oldest IDs
// beyond the limit.
func (m *mintedStore) add(ids []string, ents []chittyid.Entity) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, id := range ids {
		if old, ok := m.ids.push(id); ok {
			delete(m.set, old)
		}
		m.set[id] = ents[i]
	}
}

// lookup reports whether id was minted and is still remembered.
func (m *mintedStore) lookup(id string) (chittyid.Entity, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.set[id]
	return e, ok
}

func (m *mintedStore) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids.items()
}

func (m *mintedStore) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids.reset()
	m.set = make(map[string]chittyid.Entity)
}

// keyStore remembers the answers to the last mints that carried an
// Idempotency-Key.
type keyStore struct {
	// mu guards keys and answers, and is held across a whole keyed mint: two
	// requests with the same key arriving together must mint once, so the
	// second has to wait for the first's answer rather than miss and mint.
	mu      sync.Mutex
	keys    ring[string]
	answers map[string][]byte
}

func newKeyStore() *keyStore {
	return &keyStore{keys: ring[string]{max: maxKeys}, answers: make(map[string][]byte)}
}

// do returns the answer remembered for key, or else calls mint, remembers
// its answer and returns it. replayed says the answer was remembered.
func (k *keyStore) do(key string, mint func() []byte) (answer []byte, replayed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, hit := k.answers[key]; hit {
		return a, true
	}
	a := mint()
	if old, evicted := k.keys.push(key); evicted {
		delete(k.answers, old)
	}
	k.answers[key] = a
	return a, false
}

func (k *keyStore) reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys.reset()
	k.answers = make(map[string][]byte)
}

// requestLog keeps the last API requests.
type requestLog struct {
	// mu guards reqs.
	mu   sync.Mutex
	reqs ring[Request]
}

func (l *requestLog) add(r Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs.push(r)
}

func (l *requestLog) list() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs.items()
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs.reset()
}
