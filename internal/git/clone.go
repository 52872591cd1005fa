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
	"strings"

	"github.com/firstbad/firstbad/internal/cachedir"
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
	Source    string // the user's repository
	sourceGit string // its git dir
	root      string
}

// CloneDir is where the clone of the repository with git dir gitDir lives.
func CloneDir(cacheDir, gitDir string) string {
	sum := sha256.Sum256([]byte(gitDir))
	return cachedir.Dir(cacheDir).Repo(hex.EncodeToString(sum[:8]))
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
	c := &Clone{Repo: Repo{Dir: cachedir.CloneGit(root)}, Source: src.Dir, sourceGit: gitDir, root: root}
	if _, err := os.Stat(filepath.Join(c.Dir, ".git")); err == nil {
		return c, c.mirrorConfig(ctx, src)
	}
	if strings.ContainsAny(gitDir, "\n\r") {
		// git's alternates file holds one path per line: a clone of such
		// a path borrows nothing and breaks. Borrow through a link.
		link := root + ".src"
		_ = os.Remove(link)
		if err := os.Symlink(gitDir, link); err != nil {
			return nil, err
		}
		gitDir = link
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
	if err := os.WriteFile(cachedir.CloneSource(root), []byte(src.Dir+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, c.Dir); err != nil {
		return nil, err
	}
	return c, c.mirrorConfig(ctx, src)
}

// mirroredConfig is the repository configuration a checkout depends on:
// content filters (smudge/clean, e.g. git-lfs) and line-ending rules.
const mirroredConfig = `^(filter\..*|core\.(autocrlf|eol|safecrlf|symlinks))$`

// mirrorConfig copies the user's repository configuration that changes
// what a checkout contains into the clone, and the repository's own
// attributes file, so that each checkout has the bytes the user's would.
func (c *Clone) mirrorConfig(ctx context.Context, src *Repo) error {
	out, _ := src.Run(ctx, "config", "--local", "--null", "--get-regexp", mirroredConfig)
	for _, kv := range strings.Split(string(out), "\x00") {
		key, val, ok := strings.Cut(kv, "\n")
		if !ok || key == "" {
			continue
		}
		if _, err := c.Run(ctx, "config", key, val); err != nil {
			return err
		}
	}
	attrs, err := os.ReadFile(filepath.Join(c.sourceGit, "info", "attributes"))
	if err != nil {
		return nil
	}
	gitDir, err := c.GitDir(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(gitDir, "info"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(gitDir, "info", "attributes"), attrs, 0o644)
}

// Sync makes sure the clone has the given commits and the user's tags as
// they are now (a reproducer's `git describe` sees what the user's would),
// fetching from the user's repository.
func (c *Clone) Sync(ctx context.Context, shas ...string) error {
	missing := false
	for _, s := range shas {
		if !c.HasCommit(ctx, s) {
			missing = true
			break
		}
	}
	refspecs := []string{"+refs/tags/*:refs/tags/*"}
	if missing {
		refspecs = append(refspecs, "+refs/*:refs/firstbad/origin/*")
	}
	args := append([]string{"fetch", "--quiet", "--prune", "--no-tags", "origin"}, refspecs...)
	if _, err := c.Run(ctx, args...); err != nil {
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
	// NoSubmodules leaves submodules empty (as the clone makes them).
	NoSubmodules bool
	sourceGit    string // the user's git dir: its submodule clones
	lock         *lock.Lock
}

// Worktree takes a free checkout slot of the clone (creating it on first
// use). Two runs on one repository get different slots.
func (c *Clone) Worktree(ctx context.Context, at string) (*Worktree, error) {
	var held *lock.HeldError
	for i := 0; i < maxSlots; i++ {
		dir := filepath.Join(cachedir.CloneSlots(c.root), strconv.Itoa(i))
		l, err := lock.TryAcquire(dir + ".lock")
		if errors.As(err, &held) {
			continue
		}
		if err != nil {
			return nil, err
		}
		w := &Worktree{Repo: Repo{Dir: dir}, sourceGit: c.sourceGit, lock: l}
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
// to tracked files (untracked files stay, as with git bisect), with its
// submodules at the commits sha records.
func (w *Worktree) Checkout(ctx context.Context, sha string) error {
	if _, err := w.Run(ctx, "checkout", "--quiet", "--force", "--detach", sha, "--"); err != nil {
		return err
	}
	return w.updateSubmodules(ctx)
}

// updateSubmodules checks out the submodules that the user's repository has
// cloned (.git/modules/NAME), from those clones: the user's checkout has
// them filled, firstbad's must too, and nothing goes to the network. A
// submodule the user never cloned stays empty, as it is for the user.
func (w *Worktree) updateSubmodules(ctx context.Context) error {
	if w.NoSubmodules {
		return nil
	}
	if _, err := os.Stat(filepath.Join(w.Dir, ".gitmodules")); err != nil {
		return nil
	}
	out, err := w.Run(ctx, "config", "--file", ".gitmodules", "--null", "--get-regexp", `^submodule\..*\.path$`)
	if err != nil {
		return nil // no submodule entries
	}
	var paths []string
	for _, kv := range strings.Split(string(out), "\x00") {
		key, path, ok := strings.Cut(kv, "\n")
		name := strings.TrimSuffix(strings.TrimPrefix(key, "submodule."), ".path")
		local := filepath.Join(w.sourceGit, "modules", name)
		if !ok || !isDir(local) {
			continue
		}
		if _, err := w.Run(ctx, "config", "submodule."+name+".url", local); err != nil {
			return err
		}
		paths = append(paths, path)
	}
	if len(paths) == 0 {
		return nil
	}
	args := append([]string{"-c", "protocol.file.allow=always", "submodule", "update", "--init", "--force", "--quiet", "--"}, paths...)
	if _, err := w.Run(ctx, args...); err != nil {
		return fmt.Errorf("checking out submodules from %s/modules (--no-submodules leaves them empty): %w", w.sourceGit, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Release gives the slot back.
func (w *Worktree) Release() { w.lock.Release() }
