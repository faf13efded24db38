// Package cache holds validate verdicts for the sidecar in two bigcache
// instances, one for "valid" and one for "not valid" verdicts, so that a flood
// of garbage IDs cannot push good entries out. bigcache only bounds memory: it
// never expires an entry on read, so every value carries the time it was
// fetched and freshness is decided on each call by the Policy passed in. A
// config reload that shortens a TTL therefore applies to existing entries at
// once. Misses for the same ID are coalesced into one fetch (see Fetch).
//
// bigcache is wrapped here and nowhere else; none of its types cross the API.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"golang.org/x/sync/singleflight"
)

// MaxIDLen is the longest ID, in bytes, the cache accepts. Longer IDs are a
// miss for Lookup and an error for Store and Fetch.
const MaxIDLen = 256

// MaxValueLen is the longest Entry.Value, in bytes, Store accepts.
const MaxValueLen = 1024

var (
	// ErrInvalidID means an ID is empty or longer than MaxIDLen.
	ErrInvalidID = errors.New("cache: id must be 1 to 256 bytes")
	// ErrValueTooLarge means an Entry.Value is longer than MaxValueLen.
	ErrValueTooLarge = errors.New("cache: value longer than 1024 bytes")
	// ErrClosed means Fetch missed after Close and could not fetch.
	ErrClosed = errors.New("cache: closed")
)

// Entry is one verdict.
type Entry struct {
	// Valid is the verdict.
	Valid bool
	// Shared says the entry came from a cache shared with other processes
	// (the sidecar's fleet tier) rather than from the origin. A fetch
	// function sets it; Fetch hands it to every caller of the flight, so
	// that each can say where its answer came from. It is not stored:
	// Lookup, LookupBytes and a snapshot never return it set.
	// (Next to Valid, where it costs the struct no size.)
	Shared bool
	// FetchedAt is when upstream gave the verdict; freshness is measured from
	// it. Store uses time.Now() when it is zero.
	FetchedAt time.Time
	// Value is opaque to the cache, e.g. the response ready to send. Store
	// copies it; what Lookup and Fetch return is shared with other callers,
	// so treat it as read-only.
	Value []byte
}

// Status says how an entry was found.
type Status uint8

const (
	// StatusMiss means no usable entry: the zero Status.
	StatusMiss Status = iota
	// StatusHit means an entry younger than its TTL.
	StatusHit
	// StatusStale means an entry past its TTL but younger than StaleIfError.
	StatusStale
)

// String returns "MISS", "HIT" or "STALE", the X-Cache header values.
func (s Status) String() string {
	switch s {
	case StatusMiss:
		return "MISS"
	case StatusHit:
		return "HIT"
	case StatusStale:
		return "STALE"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	// Hits counts Lookups that found a fresh entry. A request looks up
	// once, so this is a count of requests.
	Hits int64
	// Misses counts Lookups that did not; a STALE lookup counts as a miss.
	// Fetch, which follows a miss, does not count again.
	Misses int64
	// StaleServed counts stale entries Fetch returned plus ServeStale calls.
	StaleServed int64
	// Evictions counts entries removed for lack of space.
	Evictions int64
	// Coalesced counts Fetch callers that received the result of a flight
	// another caller started.
	Coalesced int64
	// Fetches counts calls of a fetch function.
	Fetches int64
	// StoreErrors counts fetched entries Fetch returned but could not store.
	StoreErrors int64
	// Entries is the number of entries held.
	Entries int64
	// Bytes is the memory allocated for entries, excluding the index.
	Bytes int64
}

// Cache is the verdict cache. It is safe for concurrent use. Build it with
// New and release it with Close.
type Cache struct {
	valid   *bigcache.BigCache // "valid" verdicts
	invalid *bigcache.BigCache // "not valid" verdicts
	now     func() time.Time   // time.Now unless WithClock
	hot     *hot               // recently read or stored entries, in front of the parts
	group   singleflight.Group
	once    sync.Once

	// mu guards closed, and orders flights.Add against Close's flights.Wait.
	mu      sync.Mutex
	closed  bool
	flights sync.WaitGroup

	hits, misses, staleServed, evictions atomic.Int64
	coalesced, fetches, storeErrors      atomic.Int64
}

// Option adjusts a Cache at construction.
type Option func(*Cache)

// WithClock makes the cache read time from now instead of time.Now (Fetch's
// freshness checks and Store's default FetchedAt). Tests use it to move TTLs
// without sleeping.
func WithClock(now func() time.Time) Option { return func(c *Cache) { c.now = now } }

// New builds a cache sized by cfg; a zero field of cfg means its default.
// p only bounds memory: an entry is dropped at the latest a little over
// max(TTL or NegativeTTL, StaleIfError) + 1s after it was stored, whatever
// policy later Lookups pass. A reload that raises those durations therefore
// needs a new Cache to take full effect; shortening them does not.
//
// New starts two cleaner goroutines; Close stops them.
func New(cfg Config, p Policy, opts ...Option) (*Cache, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating cache: %w", err)
	}
	c := &Cache{now: time.Now}
	for _, o := range opts {
		o(c)
	}
	h := seededHash{seed: maphash.MakeSeed()}
	c.hot = newHot(cfg.MaxSizeMB, h.seed)
	validMB, invalidMB := cfg.partsMB()
	var err error
	c.valid, err = newPart(c, cfg.Shards, validMB, lifeWindow(p.TTL, p.StaleIfError), h)
	if err != nil {
		return nil, fmt.Errorf("creating cache for valid verdicts: %w", err)
	}
	c.invalid, err = newPart(c, cfg.Shards, invalidMB, lifeWindow(p.NegativeTTL, p.StaleIfError), h)
	if err != nil {
		c.valid.Close()
		return nil, fmt.Errorf("creating cache for not valid verdicts: %w", err)
	}
	return c, nil
}

// Sizing of the initial allocation. bigcache allocates
// Shards × max(MaxEntriesInWindow/Shards, 10) × MaxEntrySize bytes up front
// per instance (about 300 MB with its DefaultConfig); we start at 1 KiB per
// shard, 128 KiB for both parts with the defaults, and let each shard's ring
// double up to its share of HardMaxCacheSize.
const (
	initialEntriesPerShard = 16
	initialEntryBytes      = 64 // 18 B bigcache header + ~30 B ID + 9 B ours + a few value bytes
)

// newPart builds one bigcache instance of mb MiB.
func newPart(c *Cache, shards, mb int, life time.Duration, h seededHash) (*bigcache.BigCache, error) {
	bc := bigcache.Config{
		Shards:             shards,
		LifeWindow:         life,
		CleanWindow:        time.Second,
		MaxEntriesInWindow: shards * initialEntriesPerShard,
		MaxEntrySize:       initialEntryBytes,
		HardMaxCacheSize:   mb,
		Verbose:            false,
		Hasher:             h,
		Logger:             log.New(io.Discard, "", 0),
		// Runs under the shard lock, also on the cleaner goroutine: calling
		// the cache from here would deadlock, so only count.
		OnRemoveWithReason: func(_ string, _ []byte, r bigcache.RemoveReason) {
			if r == bigcache.NoSpace {
				c.evictions.Add(1)
			}
		},
	}
	// The filter spares bigcache copying key and value for other reasons.
	return bigcache.New(context.Background(), bc.OnRemoveFilterSet(bigcache.NoSpace))
}

// maxLife caps the LifeWindow so the rounding below cannot overflow.
const maxLife = 100 * 365 * 24 * time.Hour

// lifeWindow returns bigcache's LifeWindow for entries that must stay readable
// for max(ttl, stale). bigcache compares whole seconds of insertion and
// current time (now_s - ts_s >= window_s), so an entry may go as early as
// window_s - 1s after it was stored: round up to whole seconds, then add 1s.
func lifeWindow(ttl, stale time.Duration) time.Duration {
	d := min(max(ttl, stale, 0), maxLife)
	return (d + time.Second - 1).Truncate(time.Second) + time.Second
}

// seededHash replaces bigcache's unkeyed FNV-1a so that nobody can craft IDs
// that collide and evict each other (bigcache keeps one entry per hash).
type seededHash struct{ seed maphash.Seed }

// Sum64 implements bigcache.Hasher. bigcache marks deleted entries with hash
// 0, so 0 is never returned.
func (h seededHash) Sum64(key string) uint64 {
	if s := maphash.String(h.seed, key); s != 0 {
		return s
	}
	return 1
}

// Close stops the cleaner goroutines, after waiting for fetches in flight to
// return (each fetch function bounds itself). Later calls do nothing. After
// Close, Fetch no longer fetches (a miss fails with ErrClosed, or serves a
// stale entry); Lookup and Store still work but nothing expires any more.
func (c *Cache) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.flights.Wait()
		c.valid.Close()
		c.invalid.Close()
	})
	return nil
}

// Lookup finds the verdict for id and judges it by p at now: HIT if younger
// than p.TTL ("valid") or p.NegativeTTL ("not valid"), else STALE if younger
// than p.StaleIfError, else MISS with a zero Entry. It counts a hit or a miss
// (STALE counts as a miss); a caller that answers with a stale entry should
// call ServeStale. A hit in the hot table allocates nothing; one read from
// bigcache allocates its copies of the key and value.
func (c *Cache) Lookup(id string, p Policy, now time.Time) (Entry, Status) {
	return c.counted(c.lookup(id, p, now))
}

// ServeStale counts one stale entry, got from Lookup, served to a caller.
// Fetch counts the stale entries it returns itself.
func (c *Cache) ServeStale() { c.staleServed.Add(1) }

// LookupBytes is Lookup for an ID still in a request buffer: a hit in the
// hot table allocates nothing (the ID is copied into a string only to read
// bigcache). The returned Value is shared: never write to it.
func (c *Cache) LookupBytes(id []byte, p Policy, now time.Time) (Entry, Status) {
	e, seen, ok := c.hot.getBytes(id)
	if !ok {
		return c.counted(c.lookupParts(string(id), seen, p, now))
	}
	return c.counted(judge(e, p, now))
}

// counted counts a Lookup's answer as a hit or a miss and passes it on.
func (c *Cache) counted(e Entry, st Status) (Entry, Status) {
	if st == StatusHit {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return e, st
}

// lookup is Lookup without counting: the hot table, then bigcache.
func (c *Cache) lookup(id string, p Policy, now time.Time) (Entry, Status) {
	e, seen, ok := c.hot.getString(id)
	if !ok {
		return c.lookupParts(id, seen, p, now)
	}
	return judge(e, p, now)
}

// lookupParts reads id from bigcache after the hot table missed it (seen is
// the set version that miss returned) and installs what it finds there.
// Both parts are searched, "valid" first; Store keeps at most one of them
// holding id.
func (c *Cache) lookupParts(id string, seen uint64, p Policy, now time.Time) (Entry, Status) {
	if !validID(id) {
		return Entry{}, StatusMiss
	}
	e, ok := get(c.valid, id)
	if !ok {
		e, ok = get(c.invalid, id)
	}
	if !ok {
		return Entry{}, StatusMiss
	}
	c.hot.install(id, e, seen)
	return judge(e, p, now)
}

// Judge returns e's status under p at now, as Lookup judges a stored
// entry: HIT while younger than its TTL, STALE while younger than
// StaleIfError, else MISS. For entries from elsewhere (a shared tier).
func (p Policy) Judge(e Entry, now time.Time) Status {
	_, st := judge(e, p, now)
	return st
}

// judge returns e with its status under p at now (a zero Entry if MISS).
func judge(e Entry, p Policy, now time.Time) (Entry, Status) {
	ttl := p.NegativeTTL
	if e.Valid {
		ttl = p.TTL
	}
	switch age := now.Sub(e.FetchedAt); {
	case age < ttl:
		return e, StatusHit
	case age < p.StaleIfError:
		return e, StatusStale
	}
	return Entry{}, StatusMiss
}

// get reads and decodes id from one part.
func get(bc *bigcache.BigCache, id string) (Entry, bool) {
	b, err := bc.Get(id) // b is a private copy: the only allocation of a hit
	if errors.Is(err, bigcache.ErrEntryNotFound) {
		return Entry{}, false // absent, or another key with the same hash
	}
	if err != nil {
		return Entry{}, false // bigcache's ring index is stale: treat as absent
	}
	return decode(b)
}

// Store saves e under id, replacing whatever verdict id had, "valid" or not.
// It copies e.Value.
func (c *Cache) Store(id string, e Entry) error {
	_, err := c.store(id, e)
	return err
}

// store is Store returning the entry as stored (FetchedAt filled in).
func (c *Cache) store(id string, e Entry) (Entry, error) {
	if !validID(id) {
		return e, fmt.Errorf("storing id of %d bytes: %w", len(id), ErrInvalidID)
	}
	if len(e.Value) > MaxValueLen {
		return e, fmt.Errorf("storing %q: %d bytes: %w", id, len(e.Value), ErrValueTooLarge)
	}
	if e.FetchedAt.IsZero() {
		e.FetchedAt = c.now()
	}
	dst, other := c.valid, c.invalid
	if !e.Valid {
		dst, other = c.invalid, c.valid
	}
	enc := encode(e)
	if err := dst.Set(id, enc); err != nil {
		return e, fmt.Errorf("storing %q: %w", id, err)
	}
	e.Value = enc[headerLen:len(enc):len(enc)] // a private copy for the hot table
	c.hot.put(id, e)
	// bigcache's Delete does not compare keys, so this may also drop an entry
	// whose ID merely shares the hash: a harmless miss. Concurrent Stores of
	// both kinds cannot leave both: each Sets before it Deletes.
	if err := other.Delete(id); err != nil && !errors.Is(err, bigcache.ErrEntryNotFound) {
		return e, fmt.Errorf("storing %q: removing the previous verdict: %w", id, err)
	}
	return e, nil
}

// Stats returns the counters and the current size.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:        c.hits.Load(),
		Misses:      c.misses.Load(),
		StaleServed: c.staleServed.Load(),
		Evictions:   c.evictions.Load(),
		Coalesced:   c.coalesced.Load(),
		Fetches:     c.fetches.Load(),
		StoreErrors: c.storeErrors.Load(),
		Entries:     int64(c.valid.Len() + c.invalid.Len()),
		Bytes:       int64(c.valid.Capacity() + c.invalid.Capacity()),
	}
}

func validID(id string) bool { return len(id) > 0 && len(id) <= MaxIDLen }

// Stored value layout: 8 bytes FetchedAt (UnixNano, little endian), 1 byte
// flags, then Entry.Value.
const (
	headerLen = 9
	flagValid = 1 << 0
)

func encode(e Entry) []byte {
	return appendEncoded(make([]byte, 0, headerLen+len(e.Value)), e)
}

// appendEncoded appends e's stored form to b.
func appendEncoded(b []byte, e Entry) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(e.FetchedAt.UnixNano()))
	var flags byte
	if e.Valid {
		flags = flagValid
	}
	b = append(b, flags)
	return append(b, e.Value...)
}

// decode aliases b; it never allocates.
func decode(b []byte) (Entry, bool) {
	if len(b) < headerLen {
		return Entry{}, false
	}
	return Entry{
		Valid:     b[8]&flagValid != 0,
		FetchedAt: time.Unix(0, int64(binary.LittleEndian.Uint64(b))),
		Value:     b[headerLen:len(b):len(b)],
	}, true
}
