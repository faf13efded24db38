// Package chittyid is the ChittyID grammar: the two ID format profiles
// (official and numeric, with the numeric mod-97 checksum and the worker's
// rule for fallback placeholders), the nine entity codes apps mint and the
// words and letters that name them, and the errors of a failed check.
//
// It imports no other package of this module, so the upstream client, the
// config, the local API and the simulator all share one definition of what
// an ID is. Checks use no regular expression and do not allocate.
package chittyid
