package journal

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"modernc.org/sqlite"
)

// What can go wrong with a journal that is not a bug: each says what to
// do, and none advises deleting a journal that is healthy.
var (
	// ErrReadOnly: the state dir cannot be written (permissions, a
	// read-only file system). Reading still works.
	ErrReadOnly = errors.New("cannot be written")
	// ErrFull: the file system holding the state dir is full.
	ErrFull = errors.New("disk full")
	// ErrCorrupt: the file is not a journal, or it is damaged.
	ErrCorrupt = errors.New("damaged")
)

// SQLite's primary result codes for the failures above.
const (
	sqliteReadOnly = 8
	sqliteCorrupt  = 11
	sqliteFull     = 13
	sqliteCantOpen = 14
	sqliteNotADB   = 26
)

// wrap gives a database error its meaning and a message that names the
// journal and the next thing to do.
func (j *Journal) wrap(err error) error {
	path := filepath.Join(j.Dir, FileName)
	switch {
	case err == nil:
		return nil
	case IsFull(err):
		return fmt.Errorf("journal %s: %w (%s): free space there, then continue the run with firstbad resume", path, ErrFull, FreeSpace(j.Dir))
	case errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || sqliteCode(err) == sqliteReadOnly || sqliteCode(err) == sqliteCantOpen:
		return fmt.Errorf("journal %s %w (%v): the state dir is read-only or not yours; give a writable --state-dir (reports still read it)", path, ErrReadOnly, err)
	case sqliteCode(err) == sqliteCorrupt || sqliteCode(err) == sqliteNotADB:
		return fmt.Errorf("journal %s is %w (%v): the run's evidence files in %s stay intact; restore journal.db from a backup, or start the bisect again with --new",
			path, ErrCorrupt, err, filepath.Join(j.Dir, "steps"))
	}
	return fmt.Errorf("journal %s: %w", path, err)
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// IsFull reports whether err is a full disk (SQLite's or the kernel's).
func IsFull(err error) bool {
	return errors.Is(err, ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || sqliteCode(err) == sqliteFull
}

// FreeSpace says how much room the file system holding dir has left.
func FreeSpace(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "free space unknown"
	}
	return fmt.Sprintf("%d MiB free", int64(st.Bavail)*int64(st.Bsize)>>20)
}
