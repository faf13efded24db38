package chittyid

import (
	"fmt"
	"strings"
)

// Entity is one of the nine entity codes apps may mint (PEO, PLACE, …).
// The zero value is not a valid entity.
type Entity uint8

// The entity codes accepted from apps, in the order the contract lists them.
const (
	EntityPEO Entity = iota + 1
	EntityPLACE
	EntityPROP
	EntityEVNT
	EntityAUTH
	EntityINFO
	EntityFACT
	EntityCONTEXT
	EntityACTOR
)

// entityInfo holds, per entity: its code, the worker dialect's entityType word,
// and the T letter of the official and numeric profiles.
var entityInfo = [...]struct {
	code, worker      string
	official, numeric byte
}{
	EntityPEO:     {"PEO", "person", 'P', 'P'},
	EntityPLACE:   {"PLACE", "place", 'L', 'L'},
	EntityPROP:    {"PROP", "thing", 'T', 'T'},
	EntityEVNT:    {"EVNT", "event", 'E', 'E'},
	EntityAUTH:    {"AUTH", "authority", 'A', 'A'},
	EntityINFO:    {"INFO", "thing", 'I', 'T'},
	EntityFACT:    {"FACT", "thing", 'F', 'T'},
	EntityCONTEXT: {"CONTEXT", "person", 'C', 'P'},
	EntityACTOR:   {"ACTOR", "person", 'R', 'P'},
}

// EntityCodes lists the nine codes, for messages and the /health document.
const EntityCodes = "PEO, PLACE, PROP, EVNT, AUTH, INFO, FACT, CONTEXT, ACTOR"

// ParseEntity reads an entity code, upper-casing it first. An unknown code is
// an error whose message lists the allowed ones.
func ParseEntity(s string) (Entity, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	for e := EntityPEO; e <= EntityACTOR; e++ {
		if entityInfo[e].code == u {
			return e, nil
		}
	}
	return 0, fmt.Errorf("unsupported entity %q: must be one of %s", s, EntityCodes)
}

// EntityNames lists every form ParseEntityName accepts, for messages.
const EntityNames = "one of the codes " + EntityCodes +
	", the letters P, L, T, E, A, or the words person, place (or location), thing, event, authority (any case)"

// entityWords maps the worker's words and letters to the code they stand
// for: its table of entity types read backwards (person→PEO, place→PLACE,
// thing→PROP, event→EVNT, authority→AUTH), and location for place.
var entityWords = map[string]Entity{
	"PERSON": EntityPEO, "P": EntityPEO,
	"PLACE": EntityPLACE, "LOCATION": EntityPLACE, "L": EntityPLACE,
	"THING": EntityPROP, "T": EntityPROP,
	"EVENT": EntityEVNT, "E": EntityEVNT,
	"AUTHORITY": EntityAUTH, "A": EntityAUTH,
}

// ParseEntityName reads an entity as apps send it on any mint route: one
// of the nine codes, a letter of the worker's T segment (P L T E A), or a
// word of the worker's (person, place or location, thing, event,
// authority), in any case. An unknown name is an error whose message lists
// every accepted form.
func ParseEntityName(s string) (Entity, error) {
	if e, err := ParseEntity(s); err == nil {
		return e, nil
	}
	if e, ok := entityWords[strings.ToUpper(strings.TrimSpace(s))]; ok {
		return e, nil
	}
	return 0, fmt.Errorf("unsupported entity %q: must be %s", s, EntityNames)
}

// Entities returns the nine codes in contract order.
func Entities() []Entity {
	out := make([]Entity, 0, EntityACTOR)
	for e := EntityPEO; e <= EntityACTOR; e++ {
		out = append(out, e)
	}
	return out
}

// Valid reports whether e is one of the nine codes.
func (e Entity) Valid() bool { return e >= EntityPEO && e <= EntityACTOR }

// String returns the entity code (for example "EVNT").
func (e Entity) String() string {
	if !e.Valid() {
		return fmt.Sprintf("Entity(%d)", uint8(e))
	}
	return entityInfo[e].code
}

// WorkerType returns the worker dialect's entityType word (person, place,
// thing, event, authority).
func (e Entity) WorkerType() string {
	if !e.Valid() {
		return ""
	}
	return entityInfo[e].worker
}

// TypeLetter returns the T segment an ID of entity e carries in profile f:
// the contract's table for numeric (P L T E A), and for official the letter
// the apps' fixtures expect (INFO→I, PEO→P, PLACE→L, EVNT→E; the rest are
// this project's choice: PROP→T, AUTH→A, FACT→F, CONTEXT→C, ACTOR→R).
func (e Entity) TypeLetter(f Format) byte {
	if !e.Valid() {
		return 0
	}
	if f == FormatNumeric {
		return entityInfo[e].numeric
	}
	return entityInfo[e].official
}

// EntityForLetter returns the entity whose T letter in profile f is c, for
// reporting the entity of a validated ID. Numeric letters are shared by
// several entities; the first in contract order is returned.
func EntityForLetter(f Format, c byte) (Entity, bool) {
	for e := EntityPEO; e <= EntityACTOR; e++ {
		if e.TypeLetter(f) == c {
			return e, true
		}
	}
	return 0, false
}
