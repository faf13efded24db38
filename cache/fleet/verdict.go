package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MaxIDLen is the longest ID, in bytes, the tier keeps.
const MaxIDLen = 256

// MaxValueLen is the longest Verdict.Value, in bytes, the tier keeps.
const MaxValueLen = 1024

var (
	// ErrInvalidID means an ID is empty or longer than MaxIDLen.
	ErrInvalidID = errors.New("fleet: id must be 1 to 256 bytes")
	// ErrValueTooLarge means a Verdict.Value is longer than MaxValueLen.
	ErrValueTooLarge = errors.New("fleet: value longer than 1024 bytes")
	// ErrBadEntry means Redis held something under a verdict key that is
	// not a verdict this package wrote; it is treated as a miss.
	ErrBadEntry = errors.New("fleet: malformed entry")
)

// Verdict is one validate verdict as the fleet tier keeps it.
type Verdict struct {
	// Valid is the verdict.
	Valid bool
	// Value is opaque to the tier: the entity code of a valid ID, or the
	// reason of a "not valid" one. At most MaxValueLen bytes.
	Value []byte
	// FetchedAt is when upstream gave the verdict, to the millisecond;
	// freshness and life are measured from it. Put and Fetch use the
	// current time when it is zero.
	FetchedAt time.Time
}

// Policy says how long verdicts are fresh, as the validate section of the
// config does; it may change on every reload, so it is passed per call.
type Policy struct {
	// TTL is how long a "valid" verdict is fresh.
	TTL time.Duration
	// NegativeTTL is how long a "not valid" verdict is fresh.
	NegativeTTL time.Duration
	// StaleIfError is how old a verdict may be and still be served, marked
	// stale, while upstream fails.
	StaleIfError time.Duration
}

// freshFor returns how long v is fresh.
func (p Policy) freshFor(v Verdict) time.Duration {
	if v.Valid {
		return p.TTL
	}
	return p.NegativeTTL
}

// Life returns how long a fleet entry of v lives, counted from its
// FetchedAt: its TTL (or NegativeTTL) plus StaleIfError, so that a sidecar
// can still serve it stale from the fleet tier while upstream fails.
func (p Policy) Life(v Verdict) time.Duration { return p.freshFor(v) + p.StaleIfError }

// fresh reports whether v is younger than its TTL at now.
func (p Policy) fresh(v Verdict, now time.Time) bool { return now.Sub(v.FetchedAt) < p.freshFor(v) }

// The encoding of a verdict in Redis, the value of its key:
//
//	byte 0     format version 1 in the high bits, bit 0 = valid
//	uvarint    FetchedAt in Unix milliseconds (6 bytes for dates this century)
//	rest       Value
//
// A valid ID with a three-letter entity code takes 10 bytes.
const (
	encVersion = 1 << 1
	encValid   = 1
)

// appendVerdict appends the encoding of v to b.
func appendVerdict(b []byte, v Verdict) []byte {
	flags := byte(encVersion)
	if v.Valid {
		flags |= encValid
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(max(v.FetchedAt.UnixMilli(), 0)))
	return append(b, v.Value...)
}

// decodeVerdict decodes an encoding made by appendVerdict. Value is a copy.
func decodeVerdict(b []byte) (Verdict, error) {
	if len(b) < 2 || b[0]&^encValid != encVersion {
		return Verdict{}, ErrBadEntry
	}
	ms, n := binary.Uvarint(b[1:])
	if n <= 0 || ms > 1<<62 {
		return Verdict{}, ErrBadEntry
	}
	rest := b[1+n:]
	if len(rest) > MaxValueLen {
		return Verdict{}, ErrBadEntry
	}
	v := Verdict{Valid: b[0]&encValid != 0, FetchedAt: time.UnixMilli(int64(ms))}
	if len(rest) > 0 {
		v.Value = append([]byte(nil), rest...)
	}
	return v, nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("id of %d bytes: %w", len(id), ErrInvalidID)
	}
	return nil
}

func checkVerdict(v Verdict) error {
	if len(v.Value) > MaxValueLen {
		return fmt.Errorf("value of %d bytes: %w", len(v.Value), ErrValueTooLarge)
	}
	return nil
}

// The keys of one ID. The ID sits in a Cluster hash tag ({…}), so that its
// verdict and its lock are in one slot and a script may use both. An ID
// holding braces still gives both keys the same slot: the tag ends at the
// first "}" after the prefix, which both keys share.
//
//	<prefix>{<id>}        the verdict (see appendVerdict)
//	<prefix>{<id>}:lock   the single-flight lock: a holder's token, or "!"
//	                      after its fetch failed
//	<prefix>limit:mint    the fleet mint limit's GCRA state
func verdictKey(prefix, id string) string { return prefix + "{" + id + "}" }

func lockKey(prefix, id string) string { return prefix + "{" + id + "}:lock" }

func mintKey(prefix string) string { return prefix + "limit:mint" }
