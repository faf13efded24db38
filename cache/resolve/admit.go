package resolve

import (
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// ReasonUpstream is the Value of a "not valid" verdict upstream gave: the
// only reason a sidecar stores. (The local format check's reasons are
// answered at once and never stored.)
const ReasonUpstream = "upstream"

// Admit is the re-check of an entry that came from outside this process
// (the fleet tier, a snapshot file) before it is served: it reports why e
// is not one a sidecar of format f stores for id, or nil. The ID passes
// the format check (placeholders never reach a tier); a "valid" verdict
// names one of the entity codes, or none; a "not valid" one gives
// ReasonUpstream. Anything else would let whoever can write the fleet
// tier's keys or the snapshot file make an ID validate in the wrong format
// or put text into answers, which carry the stored value as it is.
func Admit(f chittyid.Format, id string, e cache.Entry) error {
	if err := f.Check(id); err != nil {
		return fmt.Errorf("id %.40q is not a %s ID: %w", id, f, err)
	}
	v := string(e.Value)
	switch {
	case e.Valid && v != "":
		if ent, err := chittyid.ParseEntity(v); err != nil || ent.String() != v {
			return fmt.Errorf("entity %.40q of %s is not one of %s", v, id, chittyid.EntityCodes)
		}
	case !e.Valid && v != ReasonUpstream:
		return fmt.Errorf("reason %.40q of %s is not one the sidecar caches", v, id)
	}
	return nil
}

// Minted is the entry of an ID minted at now for entity: valid, with its
// entity code.
func Minted(entity chittyid.Entity, now time.Time) cache.Entry {
	return cache.Entry{Valid: true, FetchedAt: now, Value: []byte(entity.String())}
}

// entityOf picks the entity code to report for a valid ID: upstream's if it
// gave one, else the one the ID's type letter stands for.
func entityOf(f chittyid.Format, id, fromUpstream string) string {
	if e, err := chittyid.ParseEntity(fromUpstream); err == nil {
		return e.String()
	}
	if e, ok := chittyid.EntityForLetter(f, f.TypeLetter(id)); ok {
		return e.String()
	}
	return ""
}
