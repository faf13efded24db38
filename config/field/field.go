// Package field is what the config's sections share about a key: Secret,
// a value that never prints (the upstream token, a TLS key, the Redis
// password), and Error, a problem with a key's value: which key, which
// other keys the problem depends on, and what is wrong. The packages that
// own a config section (upstream, cache, cache/fleet, fsm, config) return
// Errors from Validate; config matches them with errors.As to say where a
// key's value came from (a line of the file, an environment variable) and
// to leave out problems about keys that did not decode, without reading
// message text. It imports nothing of this module, so the packages that
// own sections can use it.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a problem with the value of Key.
type Error struct {
	// Key is the dotted key, as in the file: "upstream.timeout", or a list
	// element: "fleet.redis.addrs[1]".
	Key string
	// Related are other keys whose values the problem depends on, such as
	// the bound a value is compared with.
	Related []string
	// Problem is what is wrong, the message after the key.
	Problem string
}

// Errorf returns the problem with key, described by format and a.
func Errorf(key, format string, a ...any) *Error {
	return &Error{Key: key, Problem: fmt.Sprintf(format, a...)}
}

// With names other keys the problem depends on.
func (e *Error) With(related ...string) *Error {
	e.Related = append(e.Related, related...)
	return e
}

// Error is the key, a space and the problem: "upstream.timeout must be > 0,
// got 0s".
func (e *Error) Error() string { return e.Key + " " + e.Problem }

// Section is the key without a list index: "fleet.redis.addrs" for
// "fleet.redis.addrs[1]".
func (e *Error) Section() string {
	k, _, _ := strings.Cut(e.Key, "[")
	return k
}

// Of returns the field error err is or wraps, and false for an error that
// is not about a key.
func Of(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}

// Errors collects the problems a section's Validate finds, each reported
// with Add; Join returns them all.
type Errors []error

// Add records the problem with key, described by format and a, and returns
// it, for With.
func (es *Errors) Add(key, format string, a ...any) *Error {
	e := Errorf(key, format, a...)
	*es = append(*es, e)
	return e
}

// Join returns the problems joined with errors.Join: nil if there are none.
func (es Errors) Join() error { return errors.Join(es...) }
