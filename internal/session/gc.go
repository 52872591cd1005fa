package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/journal"
	"github.com/firstbad/firstbad/internal/lock"
)

// Freed is what gc removed, by kind, in bytes.
type Freed struct {
	Runs      int64 `json:"runs"`
	Builds    int64 `json:"builds"`
	Artifacts int64 `json:"artifacts"`
	Clones    int64 `json:"clones"`
	Roots     int64 `json:"build_roots"`
	Items     int   `json:"items"`
}

// GC removes what finished or old runs left: journals of finished runs last
// touched before cutoff, build dirs, extra checkout slots and cached
// kernels not used since, and clones of repositories that no longer
// exist. Unfinished runs are kept, and a build dir or checkout in use (its
// lock held) is never removed.
func (s *Session) GC(olderThan time.Duration, dry bool) (Freed, error) {
	var f Freed
	cutoff := time.Now().Add(-olderThan)
	remove := func(path string, into *int64) {
		n := du(path)
		if !dry {
			if err := os.RemoveAll(path); err != nil {
				return
			}
		}
		*into += n
		f.Items++
	}
	runs, err := s.List()
	if err != nil {
		return f, err
	}
	for _, r := range runs {
		if r.Outcome == journal.OutcomeRunning || r.Outcome == journal.OutcomeInterrupted || r.Outcome == "unreadable" {
			continue
		}
		if !r.Finished.IsZero() && r.Finished.Before(cutoff) {
			l, err := lock.TryAcquire(filepath.Join(s.RunDir(r.ID), "lock"))
			if err != nil {
				continue
			}
			remove(s.RunDir(r.ID), &f.Runs)
			l.Release()
		}
	}
	cache := cachedir.Dir(s.CacheDir)
	gcClones(cache, cutoff, remove, &f)
	gcRoots(cache, cutoff, remove, &f)
	arts, _ := filepath.Glob(filepath.Join(cache.Artifacts(), "*"))
	for _, a := range arts {
		if fi, err := os.Stat(a); err == nil && fi.IsDir() && fi.ModTime().Before(cutoff) {
			remove(a, &f.Artifacts)
		}
	}
	return f, nil
}

// gcRoots removes the Debian roots (build and guest roots) unused since
// cutoff, what a killed mmdebstrap left (ROOT.tmp), and the lock files of
// roots that are not there (mmdebstrap failed), each only while no
// firstbad holds the root's lock.
func gcRoots(cache cachedir.Dir, cutoff time.Time, remove func(string, *int64), f *Freed) {
	entries, _ := filepath.Glob(filepath.Join(cache.Roots(), "*"))
	for _, r := range entries {
		fi, err := os.Stat(r)
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		root, lockFile := r, r+".lock"
		if base, ok := strings.CutSuffix(r, ".lock"); ok {
			if _, err := os.Stat(base); !os.IsNotExist(err) {
				continue // the lock of a root that is there
			}
			root, lockFile = "", r
		} else if base, ok := strings.CutSuffix(r, ".tmp"); ok {
			lockFile = base + ".lock"
			if _, err := os.Stat(lockFile); os.IsNotExist(err) {
				remove(r, &f.Roots) // nobody made the lock to hold it
				continue
			}
		} else if !fi.IsDir() {
			continue
		}
		// A root is held (by its lock) only while it is made; builds and
		// guests refresh its time, so one unused this long is idle.
		l, err := lock.TryAcquire(lockFile)
		if err != nil {
			continue
		}
		if root != "" {
			remove(root, &f.Roots)
		} else {
			os.Remove(lockFile)
		}
		l.Release()
	}
}

// locked reports whether any lock file matching the patterns is held.
func locked(patterns ...string) bool {
	for _, p := range patterns {
		files, _ := filepath.Glob(p)
		for _, file := range files {
			l, err := lock.TryAcquire(file)
			if err != nil {
				return true
			}
			l.Release()
		}
	}
	return false
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// du is the size of the files under path.
func du(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// gcClones removes the clones of repositories that no longer exist (none
// of their checkouts or build dirs in use), and the other clones' build
// dirs unused since cutoff.
func gcClones(cache cachedir.Dir, cutoff time.Time, remove func(string, *int64), f *Freed) {
	clones, _ := filepath.Glob(cachedir.CloneSource(cache.Repo("*")))
	for _, src := range clones {
		root := filepath.Dir(src)
		data, _ := os.ReadFile(src)
		if _, err := os.Stat(string(trimNL(data))); errors.Is(err, os.ErrNotExist) {
			if held := locked(filepath.Join(cachedir.CloneSlots(root), "*.lock"), cachedir.CloneBuildDirs(root)+".lock", filepath.Join(cachedir.CloneBuilds(root), "*.lock")); !held {
				remove(root, &f.Clones)
				continue
			}
		}
		// Build dirs live in the checkouts; those in builds/ are from
		// firstbad before that, or lists of builds.
		builds, _ := filepath.Glob(cachedir.CloneBuildDirs(root))
		old, _ := filepath.Glob(filepath.Join(cachedir.CloneBuilds(root), "*"))
		for _, b := range append(builds, old...) {
			if filepath.Ext(b) == ".lock" {
				continue
			}
			fi, err := os.Stat(b)
			if err != nil || fi.ModTime().After(cutoff) {
				continue
			}
			l, err := lock.TryAcquire(b + ".lock")
			if err != nil {
				continue // in use
			}
			remove(b, &f.Builds)
			l.Release()
		}
		gcSlots(root, cutoff, remove, f)
	}
}

// gcSlots removes a clone's extra checkout slots (all but the first)
// unused since cutoff, with their build dirs: a second run at once on a
// repository made one, a whole checkout of the tree, and nothing else
// gives it back. A slot's lock file says when it was last taken.
func gcSlots(root string, cutoff time.Time, remove func(string, *int64), f *Freed) {
	locks, _ := filepath.Glob(filepath.Join(cachedir.CloneSlots(root), "*.lock"))
	for _, lf := range locks {
		dir := strings.TrimSuffix(lf, ".lock")
		if filepath.Base(dir) == "0" {
			continue
		}
		fi, err := os.Stat(lf)
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		l, err := lock.TryAcquire(lf)
		if err != nil {
			continue // in use
		}
		if !locked(filepath.Join(dir, cachedir.BuildDirPrefix+"*.lock")) {
			remove(dir, &f.Clones)
		}
		l.Release()
	}
}
