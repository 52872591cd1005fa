package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/firstbad/firstbad/internal/lock"
)

// maxSlots bounds how many runs can have a checkout of one repository at once.
const maxSlots = 8

// Clone is firstbad's own clone of a user's repository, made with
// `git clone --shared --no-checkout`: it borrows the user's objects through
// alternates (so it costs no copy and sees new commits at once) and has its
// own refs, index and work trees. All checkouts happen here.
type Clone struct {
	Repo
	Source string // the user's repository
	root   string
}

// CloneDir is where the clone of the repository with git dir gitDir lives.
func CloneDir(cacheDir, gitDir string) string {
	sum := sha256.Sum256([]byte(gitDir))
	return filepath.Join(cacheDir, "repos", hex.EncodeToString(sum[:8]))
}

// EnsureClone returns firstbad's clone of src under cacheDir, creating it on
// first use. It reads src and never writes to it.
func EnsureClone(ctx context.Context, src *Repo, cacheDir string) (*Clone, error) {
	gitDir, err := src.GitDir(ctx)
	if err != nil {
		return nil, err
	}
	root := CloneDir(cacheDir, gitDir)
	l, err := lock.Acquire(ctx, filepath.Join(root+".lock"), nil)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	c := &Clone{Repo: Repo{Dir: filepath.Join(root, "git")}, Source: src.Dir, root: root}
	if _, err := os.Stat(filepath.Join(c.Dir, ".git")); err == nil {
		return c, nil
	}
	// A half-made clone of a killed run is replaced.
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	tmp := c.Dir + ".tmp"
	parent := &Repo{Dir: root}
	if _, err := parent.Run(ctx, "clone", "--quiet", "--shared", "--no-checkout", "--", gitDir, tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("cloning %s: %w", src.Dir, err)
	}
	// Objects belong to the user's repo: never let git prune or repack here.
	tr := &Repo{Dir: tmp}
	for _, kv := range [][2]string{{"gc.auto", "0"}, {"maintenance.auto", "false"}, {"core.hooksPath", "/dev/null"}} {
		if _, err := tr.Run(ctx, "config", kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "source"), []byte(src.Dir+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, c.Dir); err != nil {
		return nil, err
	}
	return c, nil
}

// Sync makes sure the clone has the given commits, fetching from the user's
// repository when its refs moved past what the clone knows.
func (c *Clone) Sync(ctx context.Context, shas ...string) error {
	missing := false
	for _, s := range shas {
		if !c.HasCommit(ctx, s) {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
	if _, err := c.Run(ctx, "fetch", "--quiet", "--no-tags", "origin", "+refs/*:refs/firstbad/origin/*"); err != nil {
		return fmt.Errorf("refreshing firstbad's clone from %s: %w", c.Source, err)
	}
	for _, s := range shas {
		if !c.HasCommit(ctx, s) {
			return fmt.Errorf("commit %s is not reachable from any ref of %s", s, c.Source)
		}
	}
	return nil
}

// Worktree is a checkout of the clone held by one run at a time.
type Worktree struct {
	Repo
	lock *lock.Lock
}

// Worktree takes a free checkout slot of the clone (creating it on first
// use). Two runs on one repository get different slots.
func (c *Clone) Worktree(ctx context.Context, at string) (*Worktree, error) {
	var held *lock.HeldError
	for i := 0; i < maxSlots; i++ {
		dir := filepath.Join(c.root, "wt", strconv.Itoa(i))
		l, err := lock.TryAcquire(dir + ".lock")
		if errors.As(err, &held) {
			continue
		}
		if err != nil {
			return nil, err
		}
		w := &Worktree{Repo: Repo{Dir: dir}, lock: l}
		if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
			os.RemoveAll(dir)
			_, _ = c.Run(ctx, "worktree", "prune")
			if _, err := c.Run(ctx, "worktree", "add", "--quiet", "--force", "--detach", dir, at); err != nil {
				l.Release()
				return nil, err
			}
		}
		return w, nil
	}
	return nil, fmt.Errorf("all %d checkout slots of %s are in use (last: %v)", maxSlots, c.Dir, held)
}

// Checkout puts the work tree at sha, discarding changes a previous test made
// to tracked files (untracked files stay, as with git bisect).
func (w *Worktree) Checkout(ctx context.Context, sha string) error {
	_, err := w.Run(ctx, "checkout", "--quiet", "--force", "--detach", sha, "--")
	return err
}

// Release gives the slot back.
func (w *Worktree) Release() { w.lock.Release() }
