package cache

import (
	"bytes"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// hot is a small table of recently read or stored verdicts in front of the
// bigcache parts. bigcache's Get copies the value and the stored key on
// every read (two allocations) and its key parameter escapes; a hit here
// costs neither, and reads one 128-byte set: no pointer to follow, so a
// cached validate of a large working set pays about one cache miss here.
// bigcache stays the store of record: it bounds memory, keeps entries for
// stale reads and counts evictions; hot only shortcuts repeated reads.
//
// The table is 2-way set associative. A set is a version word and two
// entries, all atomic words (so the race detector agrees with what the
// version protocol guarantees): a writer makes the version odd, writes,
// and makes it even again, two higher; a reader copies what it needs and
// trusts it only if the version was even and unchanged. An entry holds the
// ID inline (up to hotIDMax bytes; longer IDs are not kept here) and its
// value as an index into a small append-only table of distinct values (the
// values are entity codes and reasons: a handful), so a hit hands out a
// shared, never-written value without allocating.
//
// Coherence with Store: Store writes bigcache, then the set,
// unconditionally; a Lookup that missed here installs what it read from
// bigcache only if the set's version is still the one it saw before
// reading, so an older read can never overwrite a newer Store.
type hot struct {
	seed maphash.Seed
	mask uint64
	sets []hotSet
	// vals is the value table, copied on write; index 0 is the empty value.
	vals  atomic.Pointer[[][]byte]
	valMu sync.Mutex // serialises additions to vals
}

const (
	hotWays       = 2
	hotEntryWords = 2 + hotIDMax/8 // fetchedAt, meta, ID
	hotIDMax      = 40             // bytes; official IDs have 22, numeric 25
	hotMaxValues  = 255            // distinct values the value table holds
)

// hotSet is one set: 8 + 2×56 + 8 = 128 bytes, two cache lines.
type hotSet struct {
	version atomic.Uint64 // odd while a writer holds the set
	ways    [hotWays][hotEntryWords]atomic.Uint64
	newest  uint64 // the way written last; only writers, holding the set, use it
}

// An entry's meta word: byte 0 the ID's length (0: empty), byte 1 the value
// index, byte 2 the flags (flagValid).
func meta(idLen int, val uint8, valid bool) uint64 {
	m := uint64(idLen) | uint64(val)<<8
	if valid {
		m |= flagValid << 16
	}
	return m
}

// Sets per MiB of cache.maxSizeMB; the table is a power of two between
// minHotSets and maxHotSets sets of 128 bytes: 8192 sets (1 MiB, 16384
// entries) for 16 MiB, at most 16384 sets (2 MiB, 32768 entries) from 32 MiB
// up (the default 64 included). The cap is about locality, not memory: a
// hit costs one cache miss on its set, and a working set spread over a
// bigger table also misses the TLB (profile of the load benchmark: 3.4 % of
// the server's CPU in the lookup with 65536 sets, 2.1 % with 16384).
// Working sets beyond the table are still hits, from bigcache.
const (
	hotSetsPerMB = 512
	minHotSets   = 1 << 9
	maxHotSets   = 1 << 14
)

func newHot(maxSizeMB int, seed maphash.Seed) *hot {
	n := minHotSets
	for n < maxSizeMB*hotSetsPerMB && n < maxHotSets {
		n <<= 1
	}
	h := &hot{seed: seed, mask: uint64(n - 1), sets: make([]hotSet, n)}
	h.vals.Store(&[][]byte{nil})
	return h
}

// idText is what an ID may come as: a string, or bytes still in a request.
type idText interface{ ~string | ~[]byte }

func (h *hot) set(id []byte) *hotSet { return &h.sets[maphash.Bytes(h.seed, id)&h.mask] }

func (h *hot) setString(id string) *hotSet {
	return &h.sets[maphash.String(h.seed, id)&h.mask]
}

// idWord is the i-th 8 bytes of id, little endian, zero-padded.
func idWord[T idText](id T, i int) uint64 {
	var w uint64
	for j := min(len(id), i*8+8) - 1; j >= i*8; j-- {
		w = w<<8 | uint64(id[j])
	}
	return w
}

// find returns the way of s that holds id, or -1. The caller validates the
// set's version around it.
func find[T idText](s *hotSet, id T) int {
	words := (len(id) + 7) / 8
ways:
	for w := range s.ways {
		e := &s.ways[w]
		if int(uint8(e[1].Load())) != len(id) {
			continue
		}
		for i := 0; i < words; i++ {
			if e[2+i].Load() != idWord(id, i) {
				continue ways
			}
		}
		return w
	}
	return -1
}

// hotGet returns the entry for id if the table holds it, and the set's version
// for a later install (odd: do not install).
func hotGet[T idText](h *hot, s *hotSet, id T) (Entry, uint64, bool) {
	v := s.version.Load()
	if v&1 != 0 || len(id) == 0 || len(id) > hotIDMax {
		return Entry{}, 1, false
	}
	w := find(s, id)
	if w < 0 {
		return Entry{}, v, false
	}
	e := &s.ways[w]
	at, m := e[0].Load(), e[1].Load()
	if s.version.Load() != v {
		return Entry{}, 1, false // a writer was here: read bigcache instead
	}
	vals := *h.vals.Load()
	return Entry{Valid: m>>16&flagValid != 0, FetchedAt: time.Unix(0, int64(at)), Value: vals[uint8(m>>8)]}, v, true
}

// getString and getBytes look id up; see hotGet.
func (h *hot) getString(id string) (Entry, uint64, bool) { return hotGet(h, h.setString(id), id) }
func (h *hot) getBytes(id []byte) (Entry, uint64, bool)  { return hotGet(h, h.set(id), id) }

// install puts what a read of bigcache found into id's set, unless the set
// was written since the read began (seen is the version get returned).
//
// When both ways are taken, it evicts one only one time in
// hotDisplaceOdds. More IDs than ways that are read in turn would otherwise
// evict each other on every read, and all go to bigcache (the load
// benchmark's 10,000 IDs: about one read in eight); this way the residents
// mostly stay and only the extra ID misses, while a new working set still
// moves in after a few reads. A hit writes nothing, so there is no recency
// to go by.
func (h *hot) install(id string, e Entry, seen uint64) {
	if seen&1 != 0 || len(id) > hotIDMax {
		return
	}
	s := h.setString(id)
	if full(s) && rand.Uint32()%hotDisplaceOdds != 0 {
		return
	}
	val, ok := h.valueIndex(e.Value)
	if !ok {
		return
	}
	if !s.version.CompareAndSwap(seen, seen+1) {
		return
	}
	write(s, victim(s), id, e, val)
	s.version.Store(seen + 2)
}

// put replaces id's entry with a stored one (or drops it, if it does not fit).
func (h *hot) put(id string, e Entry) {
	val, fits := h.valueIndex(e.Value)
	fits = fits && len(id) <= hotIDMax
	s := h.setString(id)
	v := lock(s)
	w := find(s, id)
	switch {
	case fits && w < 0:
		write(s, victim(s), id, e, val)
	case fits:
		write(s, w, id, e, val)
	case w >= 0:
		s.ways[w][1].Store(0)
	}
	s.version.Store(v + 2)
}

// forget drops id's entry, for a write to bigcache that does not go through
// put (RestoreSnapshot). The set's version changes whatever it held, so a
// Lookup that read bigcache before that write fails its install, as it
// would after a put.
func (h *hot) forget(id string) {
	s := h.setString(id)
	v := lock(s)
	if w := find(s, id); w >= 0 {
		s.ways[w][1].Store(0)
	}
	s.version.Store(v + 2)
}

// lock makes s's version odd and returns the even version it had. Writers
// hold a set for a few word stores; a writer that finds it held yields.
func lock(s *hotSet) uint64 {
	for {
		if v := s.version.Load(); v&1 == 0 && s.version.CompareAndSwap(v, v+1) {
			return v
		}
		runtime.Gosched()
	}
}

// hotDisplaceOdds: install evicts a resident one time in this many.
const hotDisplaceOdds = 4

// full reports whether every way of s holds an entry (a hint: unlocked).
func full(s *hotSet) bool {
	for w := range s.ways {
		if uint8(s.ways[w][1].Load()) == 0 {
			return false
		}
	}
	return true
}

// victim picks the way to overwrite: an empty one, else the one written
// before the other (first in, first out, as bigcache evicts). The set is
// held.
func victim(s *hotSet) int {
	for w := range s.ways {
		if uint8(s.ways[w][1].Load()) == 0 {
			return w
		}
	}
	return int((s.newest + 1) % hotWays)
}

// write fills way w of the held set s.
func write(s *hotSet, w int, id string, e Entry, val uint8) {
	x := &s.ways[w]
	x[0].Store(uint64(e.FetchedAt.UnixNano()))
	for i := 0; i < hotIDMax/8; i++ {
		x[2+i].Store(idWord(id, i))
	}
	x[1].Store(meta(len(id), val, e.Valid))
	s.newest = uint64(w)
}

// valueIndex returns v's index in the value table, adding it if needed;
// false if the table is full (the entry is then not kept here).
func (h *hot) valueIndex(v []byte) (uint8, bool) {
	if len(v) == 0 {
		return 0, true
	}
	if i, ok := indexOf(*h.vals.Load(), v); ok {
		return i, true
	}
	h.valMu.Lock()
	defer h.valMu.Unlock()
	vals := *h.vals.Load()
	if i, ok := indexOf(vals, v); ok {
		return i, true
	}
	if len(vals) > hotMaxValues {
		return 0, false
	}
	next := append(vals[:len(vals):len(vals)], bytes.Clone(v))
	h.vals.Store(&next)
	return uint8(len(next) - 1), true
}

func indexOf(vals [][]byte, v []byte) (uint8, bool) {
	for i := 1; i < len(vals); i++ {
		if bytes.Equal(vals[i], v) {
			return uint8(i), true
		}
	}
	return 0, false
}
