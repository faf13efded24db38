package chittyid

import (
	"errors"
	"strings"
	"testing"
)

func TestFormatCheckContractVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		format Format
		id     string
		want   error
	}{
		{"official CT", FormatOfficial, "CT-A-CHI-1234-I-24-A-0", nil},
		{"official ID", FormatOfficial, "ID-B-CHI-5678-P-24-B-X", nil},
		{"official EV", FormatOfficial, "EV-C-TES-9999-E-25-C-Y", nil},
		{"official PL", FormatOfficial, "PL-A-NYC-0001-L-24-D-Z", nil},
		{"official chitty_ prefix", FormatOfficial, "chitty_PEO_1234", ErrIDFormat},
		{"official CHITTY- prefix", FormatOfficial, "CHITTY-A-CHI-1234-I-24-A-0", ErrIDFormat},
		{"official CD- prefix", FormatOfficial, "CD-A-CHI-1234-I-24-A-0", ErrIDFormat},
		{"official numeric version", FormatOfficial, "01-A-CHI-1234-I-2409-5-0", ErrIDFormat},
		{"official too few segments", FormatOfficial, "CT-A-CHI-1234-I-24-A", ErrIDFormat},
		{"official too many segments", FormatOfficial, "CT-A-CHI-1234-I-24-A-0-0", ErrIDFormat},
		{"official short location", FormatOfficial, "CT-A-CH-11234-I-24-A-0", ErrIDFormat},
		{"official lower case", FormatOfficial, "ct-a-chi-1234-i-24-a-0", ErrIDFormat},
		{"official empty", FormatOfficial, "", ErrIDFormat},
		{"official numeric id", FormatOfficial, "03-1-USA-0001-P-2601-3-92", ErrIDFormat},
		{"numeric 0001", FormatNumeric, "03-1-USA-0001-P-2601-3-92", nil},
		{"numeric 1234", FormatNumeric, "03-1-USA-1234-P-2601-3-86", nil},
		{"numeric GBR", FormatNumeric, "03-9-GBR-0042-E-2512-5-29", nil},
		{"numeric fallback", FormatNumeric, "03-0-ERR-0001-T-2601-0-35", ErrFallbackID},
		{"numeric bad checksum", FormatNumeric, "03-1-USA-1234-P-2601-3-42", ErrIDChecksum},
		{"numeric official id", FormatNumeric, "CT-A-CHI-1234-I-24-A-0", ErrIDFormat},
		{"numeric bad type letter", FormatNumeric, "03-1-USA-0001-X-2601-3-92", ErrIDFormat},
		{"numeric trust above 5", FormatNumeric, "03-1-USA-0001-P-2601-6-92", ErrIDFormat},
		{"numeric empty", FormatNumeric, "", ErrIDFormat},
		{"unset format", 0, "CT-A-CHI-1234-I-24-A-0", ErrIDFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.format.Check(tc.id); !errors.Is(got, tc.want) {
				t.Errorf("%v.Check(%q) = %v, want %v", tc.format, tc.id, got, tc.want)
			}
		})
	}
}

func TestNumericChecksumVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefix string
		want   int
	}{
		{"03-1-USA-0001-P-2601-3", 92},
		{"03-1-USA-1234-P-2601-3", 86},
		{"03-9-GBR-0042-E-2512-5", 29},
		{"03-0-ERR-0001-T-2601-0", 35},
		{"031USA1234P26013", 86},
	} {
		if got := NumericChecksum(tc.prefix); got != tc.want {
			t.Errorf("NumericChecksum(%q) = %d, want %d", tc.prefix, got, tc.want)
		}
	}
}

// TestNumericChecksumRejectsEverySingleChange changes each character of a
// valid ID to every other character of its class and checks the ID no longer
// passes.
func TestNumericChecksumRejectsEverySingleChange(t *testing.T) {
	t.Parallel()
	const id = "03-1-USA-1234-P-2601-3-86"
	for i := 0; i < len(id); i++ {
		for c := byte('0'); c <= 'Z'; c++ {
			if c == id[i] || (c > '9' && c < 'A') {
				continue
			}
			b := []byte(id)
			b[i] = c
			if err := FormatNumeric.Check(string(b)); err == nil {
				t.Errorf("changed %q at %d to %q: %q still passes", id[i], i, c, b)
			}
		}
	}
}

func TestFormatTypeLetter(t *testing.T) {
	t.Parallel()
	if got := FormatOfficial.TypeLetter("EV-C-TES-9999-E-25-C-Y"); got != 'E' {
		t.Errorf("TypeLetter = %q, want E", got)
	}
	if got := FormatNumeric.TypeLetter("03-0-ERR-0001-T-2601-0-35"); got != 'T' {
		t.Errorf("TypeLetter of fallback = %q, want T", got)
	}
	if got := FormatOfficial.TypeLetter("nope"); got != 0 {
		t.Errorf("TypeLetter of malformed = %q, want 0", got)
	}
}

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"official", "numeric"} {
		f, err := ParseFormat(s)
		if err != nil || f.String() != s {
			t.Errorf("ParseFormat(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("OFFICIAL"); err == nil {
		t.Error("ParseFormat(OFFICIAL) accepted")
	}
}

func TestParseEntity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		want     Entity
		official byte
		numeric  byte
		worker   string
	}{
		{"PEO", EntityPEO, 'P', 'P', "person"},
		{"place", EntityPLACE, 'L', 'L', "place"},
		{"PROP", EntityPROP, 'T', 'T', "thing"},
		{"evnt", EntityEVNT, 'E', 'E', "event"},
		{"AUTH", EntityAUTH, 'A', 'A', "authority"},
		{"Info", EntityINFO, 'I', 'T', "thing"},
		{"FACT", EntityFACT, 'F', 'T', "thing"},
		{"CONTEXT", EntityCONTEXT, 'C', 'P', "person"},
		{"ACTOR", EntityACTOR, 'R', 'P', "person"},
	} {
		e, err := ParseEntity(tc.in)
		if err != nil || e != tc.want {
			t.Fatalf("ParseEntity(%q) = %v, %v; want %v", tc.in, e, err, tc.want)
		}
		if got := e.TypeLetter(FormatOfficial); got != tc.official {
			t.Errorf("%v official letter = %q, want %q", e, got, tc.official)
		}
		if got := e.TypeLetter(FormatNumeric); got != tc.numeric {
			t.Errorf("%v numeric letter = %q, want %q", e, got, tc.numeric)
		}
		if got := e.WorkerType(); got != tc.worker {
			t.Errorf("%v worker type = %q, want %q", e, got, tc.worker)
		}
	}
	_, err := ParseEntity("PERSON")
	if err == nil {
		t.Fatal("ParseEntity(PERSON) accepted")
	}
	if want := EntityCodes; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not list the codes", err)
	}
}

func BenchmarkFormatCheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		f    Format
		id   string
	}{
		{"official", FormatOfficial, "CT-A-CHI-1234-I-24-A-0"},
		{"numeric", FormatNumeric, "03-1-USA-1234-P-2601-3-86"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bc.f.Check(bc.id) != nil {
					b.Fatal("rejected")
				}
			}
		})
	}
}

func TestParseEntityName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Entity{
		"PEO": EntityPEO, "peo": EntityPEO, " Person ": EntityPEO, "p": EntityPEO, "P": EntityPEO,
		"PLACE": EntityPLACE, "place": EntityPLACE, "Location": EntityPLACE, "l": EntityPLACE,
		"PROP": EntityPROP, "thing": EntityPROP, "T": EntityPROP,
		"EVNT": EntityEVNT, "event": EntityEVNT, "e": EntityEVNT,
		"AUTH": EntityAUTH, "AUTHORITY": EntityAUTH, "a": EntityAUTH,
		"INFO": EntityINFO, "fact": EntityFACT, "Context": EntityCONTEXT, "actor": EntityACTOR,
	} {
		if got, err := ParseEntityName(in); err != nil || got != want {
			t.Errorf("ParseEntityName(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "X", "people", "persons", "I", "F", "C", "R", "PE", "thing s", "EVENTS"} {
		_, err := ParseEntityName(in)
		if err == nil || !strings.Contains(err.Error(), "PEO, PLACE") || !strings.Contains(err.Error(), "person, place (or location)") {
			t.Errorf("ParseEntityName(%q) = %v; want an error listing every accepted form", in, err)
		}
	}
	// ParseEntity stays the strict reader of the nine codes.
	if _, err := ParseEntity("person"); err == nil {
		t.Error(`ParseEntity("person") succeeded; it reads codes only`)
	}
}
