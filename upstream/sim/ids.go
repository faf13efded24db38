package sim

import (
	"strings"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// version is the "version" the simulator reports in mint and health answers.
const version = "sim-1"

// The worker's fallback (error) codes, the SSSS of its placeholders.
const (
	codeUnavailable    = "0001" // its mint backend unreachable; the fallback fault's default
	codeRejected       = "0003" // MINT_REJECTED: the backend answered 401 or 5xx
	codeRateLimited    = "0007" // RATE_LIMITED: the backend answered 429
	codeInvalidRequest = "0008" // INVALID_REQUEST: the backend answered 400
	codeInternal       = "0099" // the worker's own error
)

// Radices of the numeric ID's varying segments, least significant first:
// SSSS 0100-9999 (0000-0099 are reserved for error codes), G 1-9, LLL three
// letters, C 0-5. Together about 9.4e9 distinct IDs per type letter and month.
const (
	numericSeqBase  = 100
	numericSeqRadix = 10000 - numericSeqBase
	numericGRadix   = 9
	letters3Radix   = 26 * 26 * 26
	// locationRadix is letters3Radix less one: the location "ERR" is left
	// to the placeholders (region 0, ERR, the error code), so that minted IDs
	// and placeholders differ at a glance (putLocation). The worker's rules
	// allow ERR with region 1-9.
	locationRadix = letters3Radix - 1
	errLocation   = ('E'-'A')*26*26 + ('R'-'A')*26 + ('R' - 'A')
	numericCRadix = 6
	// numericCapacity is how many distinct numeric IDs the counter spans
	// (per type letter and month) before it wraps.
	numericCapacity = numericSeqRadix * numericGRadix * locationRadix * numericCRadix
)

// Radices of the official ID's varying segments, least significant first:
// SSSS 0000-9999, G A-Z, LLL three letters, C A-Z, X 0-9A-Z. About 1.6e12.
const (
	officialSeqRadix = 10000
	officialGRadix   = 26
	officialCRadix   = 26
	officialXRadix   = 36
	// officialCapacity is how many distinct official IDs the counter spans
	// (per type letter and year) before it wraps.
	officialCapacity = officialSeqRadix * officialGRadix * locationRadix * officialCRadix * officialXRadix
	// officialVersion is the VV segment; never "CD", which the format rejects.
	officialVersion = "CT"
)

// formatID writes the n-th ID of format f with type letter t, dated now.
// Distinct n below the format's capacity give distinct IDs.
func formatID(f chittyid.Format, n uint64, t byte, now time.Time) string {
	if f == chittyid.FormatNumeric {
		return numericID(n, t, now)
	}
	return officialID(n, t, now)
}

// numericID writes 03-G-LLL-SSSS-T-YYMM-C-XX.
func numericID(n uint64, t byte, now time.Time) string {
	b := []byte("03-1-AAA-0100-P-0000-0-00")
	putDigits(b[9:13], numericSeqBase+n%numericSeqRadix)
	n /= numericSeqRadix
	b[3] = byte('1' + n%numericGRadix)
	n /= numericGRadix
	putLocation(b[5:8], n%locationRadix)
	n /= locationRadix
	b[21] = byte('0' + n%numericCRadix)
	b[14] = t
	putYYMM(b[16:20], now)
	putChecksum(b)
	return string(b)
}

// officialID writes CT-G-LLL-SSSS-T-YY-C-X.
func officialID(n uint64, t byte, now time.Time) string {
	b := []byte(officialVersion + "-A-AAA-0000-P-00-A-0")
	putDigits(b[9:13], n%officialSeqRadix)
	n /= officialSeqRadix
	b[3] = byte('A' + n%officialGRadix)
	n /= officialGRadix
	putLocation(b[5:8], n%locationRadix)
	n /= locationRadix
	b[19] = byte('A' + n%officialCRadix)
	n /= officialCRadix
	b[21] = alnum(n % officialXRadix)
	b[14] = t
	putDigits(b[16:18], uint64(now.Year()%100))
	return string(b)
}

// fallbackID writes the placeholder the worker hands out when its own minting
// fails: 03-0-ERR-<code>-T-YYMM-0-XX, with a correct checksum. As the
// worker's, it is the same for the same code, type letter and month.
func fallbackID(code string, t byte, now time.Time) string {
	b := []byte("03-0-ERR-" + code + "-P-0000-0-00")
	b[14] = t
	putYYMM(b[16:20], now)
	putChecksum(b)
	return string(b)
}

// putDigits writes v in decimal into b, right-aligned and zero-padded,
// keeping only the last len(b) digits.
func putDigits(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// putChecksum writes the XX of the numeric ID in b from what precedes it.
func putChecksum(b []byte) {
	putDigits(b[23:25], uint64(chittyid.NumericChecksum(string(b[:22]))))
}

// putLocation writes the v-th three-letter location, skipping "ERR".
func putLocation(b []byte, v uint64) {
	if v >= errLocation {
		v++
	}
	putLetters(b, v)
}

// putLetters writes v in base 26 (A-Z) into b, right-aligned.
func putLetters(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('A' + v%26)
		v /= 26
	}
}

func putYYMM(b []byte, now time.Time) {
	putDigits(b[:2], uint64(now.Year()%100))
	putDigits(b[2:], uint64(now.Month()))
}

func alnum(v uint64) byte {
	if v < 10 {
		return byte('0' + v)
	}
	return byte('A' + v - 10)
}

// otherFormat is the format the badformat fault mints in.
func otherFormat(f chittyid.Format) chittyid.Format {
	if f == chittyid.FormatNumeric {
		return chittyid.FormatOfficial
	}
	return chittyid.FormatNumeric
}

// workerEntity reads the worker dialect's entityType (a word or its first
// letter, any case) and returns the entity whose type letter it stands for;
// the answer echoes its WorkerType. Only the worker's own words and letters
// are read, not the codes or "location" that chittyid.ParseEntityName also
// takes.
func workerEntity(v string) (chittyid.Entity, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "person", "p":
		return chittyid.EntityPEO, true
	case "place", "l":
		return chittyid.EntityPLACE, true
	case "thing", "t":
		return chittyid.EntityPROP, true
	case "event", "e":
		return chittyid.EntityEVNT, true
	case "authority", "a":
		return chittyid.EntityAUTH, true
	}
	return 0, false
}
