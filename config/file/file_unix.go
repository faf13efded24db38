//go:build unix

package file

import (
	"io/fs"
	"syscall"
)

// openFlags make opening a FIFO return at once instead of waiting for a
// writer, and keep a terminal from becoming the controlling one. Reads of
// a regular file ignore O_NONBLOCK.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY

// unixModes says that modes and owners mean what Check assumes.
const unixModes = true

// ownerOf returns the user ID that owns the file fi describes.
func ownerOf(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
