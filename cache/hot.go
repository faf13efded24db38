package cache

import (
	"hash/maphash"
	"sync/atomic"
)

// hot is a small direct-mapped table of recently read or stored entries in
// front of the bigcache parts. bigcache's Get copies the value and the stored
// key on every read (two allocations) and its key parameter escapes; a hit
// here costs neither. bigcache stays the store of record: it bounds memory,
// keeps entries for stale reads and counts evictions; hot only shortcuts
// repeated reads of the same IDs.
//
// Each slot holds an immutable *hotEntry, replaced whole. Coherence with
// Store: Store writes bigcache, then its slot, unconditionally; a Lookup that
// missed here installs what it read from bigcache with a CompareAndSwap
// against the pointer it saw before reading, so an older read can never
// overwrite a newer Store.
type hot struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[hotEntry]
	none  *hotEntry // an empty slot that is not nil; see forget
}

type hotEntry struct {
	id string
	e  Entry // Value is private to the entry and never written after
}

// Slots per MiB of cache.maxSizeMB; the table is a power of two between
// minHotSlots and maxHotSlots. At 8 bytes a slot, the default 64 MiB cache
// gets a 512 KiB table; entries are allocated as they are read.
const (
	hotSlotsPerMB = 1024
	minHotSlots   = 1 << 10
	maxHotSlots   = 1 << 20
)

func newHot(maxSizeMB int, seed maphash.Seed) *hot {
	n := minHotSlots
	for n < maxSizeMB*hotSlotsPerMB && n < maxHotSlots {
		n <<= 1
	}
	return &hot{seed: seed, mask: uint64(n - 1), slots: make([]atomic.Pointer[hotEntry], n), none: &hotEntry{}}
}

func (h *hot) slot(id string) *atomic.Pointer[hotEntry] {
	return &h.slots[maphash.String(h.seed, id)&h.mask]
}

// get returns the entry for id if its slot holds it, and the slot's current
// pointer for a later install.
func (h *hot) get(id string) (Entry, *hotEntry, bool) {
	p := h.slot(id).Load()
	if p != nil && p.id == id {
		return p.e, p, true
	}
	return Entry{}, p, false
}

// install puts what a read found into id's slot, unless the slot changed
// since the read began (seen is what get returned).
func (h *hot) install(id string, e Entry, seen *hotEntry) {
	h.slot(id).CompareAndSwap(seen, &hotEntry{id: id, e: e})
}

// put replaces id's slot with a stored entry.
func (h *hot) put(id string, e Entry) {
	h.slot(id).Store(&hotEntry{id: id, e: e})
}

// forget empties id's slot without allocating, for a write to bigcache that
// does not go through put (RestoreSnapshot). The slot changes whatever it
// held, nil included, so a Lookup that read bigcache before that write fails
// its install, as it would after a put. none never matches an ID: IDs are
// never empty.
func (h *hot) forget(id string) {
	h.slot(id).Store(h.none)
}
