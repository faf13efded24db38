//go:build !unix

package file

import "io/fs"

// openFlags: no FIFO to block on where there is no Unix.
const openFlags = 0

// unixModes: the modes a platform without Unix permissions reports are
// made up (Windows says 0666 for any writable file), so Check accepts all.
const unixModes = false

// ownerOf reports no owner where the platform has no Unix user IDs.
func ownerOf(fs.FileInfo) (int, bool) { return 0, false }
