package chittyid

import (
	"errors"
	"fmt"
)

// Format is an ID format profile: which shape of ChittyID the sidecar accepts
// and expects upstream to mint. The zero value is not a valid profile; use
// FormatOfficial or FormatNumeric, or ParseFormat for a config word.
type Format uint8

const (
	// FormatOfficial is VV-G-LLL-SSSS-T-YM-C-X with letters, as the JS client
	// 1.0.0 and the apps' tests enforce (for example CT-A-CHI-1234-I-24-A-0).
	// No checksum is defined publicly for it.
	FormatOfficial Format = iota + 1
	// FormatNumeric is VV-G-LLL-SSSS-T-YYMM-C-XX with a mod-97 checksum in XX,
	// as the newest ChittyID service mints (for example 03-1-USA-0001-P-2601-3-92).
	FormatNumeric
)

// Errors returned by Format.Check. They are sentinels so that checking an ID
// on the hot path never allocates.
var (
	// ErrIDFormat means the ID does not have the profile's shape.
	ErrIDFormat = errors.New("chittyid: id does not match the format")
	// ErrIDChecksum means a numeric ID has the right shape but a wrong checksum.
	ErrIDChecksum = errors.New("chittyid: id checksum mismatch")
	// ErrFallbackID means the ID is an error (fallback) ID, the placeholder
	// the worker hands out when its own minting failed: region 0, location
	// ERR and a sequence of at most 0099 (the error code). It is never a real
	// ID.
	ErrFallbackID = errors.New("chittyid: id is a fallback placeholder")
)

// Templates, one byte per position: 'A' an upper-case letter, '9' a digit,
// 'X' a digit or an upper-case letter, '-' itself.
const (
	officialTemplate = "AA-A-AAA-9999-A-99-A-X"
	numericTemplate  = "99-9-AAA-9999-A-9999-9-99"
)

// ParseFormat returns the profile named by a config word ("official" or "numeric").
func ParseFormat(s string) (Format, error) {
	switch s {
	case "official":
		return FormatOfficial, nil
	case "numeric":
		return FormatNumeric, nil
	}
	return 0, fmt.Errorf("unknown format %q (want official or numeric)", s)
}

// String returns the config word of the profile.
func (f Format) String() string {
	switch f {
	case FormatOfficial:
		return "official"
	case FormatNumeric:
		return "numeric"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// MarshalText writes the config word, so a Format reads as "official" in YAML and JSON.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads a config word.
func (f *Format) UnmarshalText(b []byte) error {
	v, err := ParseFormat(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// Check reports whether id is a well-formed ID of the profile: nil, or one of
// ErrIDFormat, ErrIDChecksum, ErrFallbackID. It uses no regular expression and
// does not allocate.
func (f Format) Check(id string) error { return check(f, id) }

// CheckBytes is Check for an ID still in a request buffer: the hot path
// checks it without first copying it into a string.
func (f Format) CheckBytes(id []byte) error { return check(f, id) }

// idText is what an ID may come as.
type idText interface{ ~string | ~[]byte }

func check[T idText](f Format, id T) error {
	switch f {
	case FormatOfficial:
		return checkOfficial(id)
	case FormatNumeric:
		return checkNumeric(id)
	}
	return ErrIDFormat
}

// TypeLetter returns the T segment of the ID (the entity's type letter), or 0
// if id does not have the profile's shape.
func (f Format) TypeLetter(id string) byte {
	if err := f.Check(id); err != nil && err != ErrFallbackID {
		return 0
	}
	return id[14]
}

func checkOfficial[T idText](id T) error {
	if !matchTemplate(id, officialTemplate) {
		return ErrIDFormat
	}
	// "CD-" is a retired prefix that happens to fit the shape; the contract
	// says to reject it.
	if id[0] == 'C' && id[1] == 'D' {
		return ErrIDFormat
	}
	return nil
}

// checkNumeric gives the worker's verdict (its validateChittyId and
// isErrorId): the region G is 1-9, except in an error ID, which is exactly
// G=0, LLL=ERR and SSSS <= 0099; any other G=0 ID is malformed. LLL=ERR with
// G 1-9 is an ordinary ID.
func checkNumeric[T idText](id T) error {
	if !matchTemplate(id, numericTemplate) {
		return ErrIDFormat
	}
	if !isTypeLetter(id[14]) || id[21] > '5' {
		return ErrIDFormat
	}
	errorID := id[3] == '0'
	if errorID && !hasErrorMarks(id) {
		return ErrIDFormat
	}
	if numericChecksum(id[:22]) != int(id[23]-'0')*10+int(id[24]-'0') {
		return ErrIDChecksum
	}
	if errorID {
		return ErrFallbackID
	}
	return nil
}

// hasErrorMarks reports whether an ID of the numeric shape has the location
// ERR and a sequence of at most 0099, as an error ID must.
func hasErrorMarks[T idText](id T) bool {
	return id[5] == 'E' && id[6] == 'R' && id[7] == 'R' && id[9] == '0' && id[10] == '0'
}

// FallbackCode returns the error code of a worker error (fallback) ID, its
// SSSS segment (1 for "03-0-ERR-0001-…"): ok is true when id has the numeric
// shape with G=0, LLL=ERR and SSSS <= 0099, whatever its checksum, type
// letter or trust level, so that a placeholder is recognised even when it
// is otherwise damaged.
func FallbackCode(id string) (code int, ok bool) {
	if len(id) != len(numericTemplate) || !matchTemplate(id[:14], numericTemplate[:14]) ||
		id[3] != '0' || !hasErrorMarks(id) {
		return 0, false
	}
	return int(id[11]-'0')*10 + int(id[12]-'0'), true
}

func isTypeLetter(c byte) bool {
	switch c {
	case 'P', 'L', 'T', 'E', 'A':
		return true
	}
	return false
}

func matchTemplate[T idText](id T, tmpl string) bool {
	if len(id) != len(tmpl) {
		return false
	}
	for i := 0; i < len(tmpl); i++ {
		c := id[i]
		switch tmpl[i] {
		case 'A':
			if c < 'A' || c > 'Z' {
				return false
			}
		case '9':
			if c < '0' || c > '9' {
				return false
			}
		case 'X':
			if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
				return false
			}
		default:
			if c != tmpl[i] {
				return false
			}
		}
	}
	return true
}

// NumericChecksum computes the two-digit check value of a numeric ID from its
// first seven segments (with or without dashes; dashes are skipped): walking
// left to right from r = 0, a digit d gives r = (10r + d) mod 97 and a letter
// gives r = (100r + v) mod 97 with A=10 … Z=35; the check value is
// (98 − r) mod 97. Other characters are ignored.
func NumericChecksum(prefix string) int { return numericChecksum(prefix) }

func numericChecksum[T idText](prefix T) int {
	r := 0
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case c >= '0' && c <= '9':
			r = (10*r + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			r = (100*r + int(c-'A') + 10) % 97
		}
	}
	return (98 - r) % 97
}
