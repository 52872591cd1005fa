// Package git shells out to the git binary. go-git is too slow for a kernel
// repository. Refs, paths and subjects always travel as argv, never through a
// shell, and nothing here writes to a user's repository: writes happen only in
// firstbad's own clone (see Clone).
package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrUnknownRef reports a ref that does not name a commit.
var ErrUnknownRef = errors.New("unknown ref")

// ErrNotRepo reports a directory that is not a git repository.
var ErrNotRepo = errors.New("not a git repository")

// Repo is a git repository on disk, driven through the git binary.
type Repo struct {
	Dir string
}

// Error is a failed git invocation with its stderr.
type Error struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("git %s: %s", strings.Join(e.Args, " "), msg)
}

func (e *Error) Unwrap() error { return e.Err }

// env is the environment for every git call: the caller's, minus variables
// that would redirect git to another repository (as inside a git hook), with
// prompts off, a fixed locale, and no optional lock-taking writes (so that
// reading a user's repo never refreshes its index).
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "LC_ALL=") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1")
}

// Run runs git with args in the repository and returns its stdout.
func (r *Repo) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = r.Dir
	cmd.Env = env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return stdout.Bytes(), &Error{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Open checks that dir is a git repository (a work tree or bare) and returns it.
func Open(ctx context.Context, dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w (no such directory)", dir, ErrNotRepo)
	}
	r := &Repo{Dir: abs}
	out, err := r.Run(ctx, "rev-parse", "--absolute-git-dir")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", dir, ErrNotRepo)
	}
	// A directory inside some other repository is not the repository the
	// user named unless it is that repository's top level or git dir.
	gitDir := strings.TrimSpace(string(out))
	top, _ := r.Run(ctx, "rev-parse", "--show-toplevel")
	if t := strings.TrimSpace(string(top)); t != "" && t != abs && gitDir != abs {
		return nil, fmt.Errorf("%s: %w (it is a subdirectory of %s)", dir, ErrNotRepo, t)
	}
	return r, nil
}

// GitDir returns the absolute path of the repository's common git directory.
func (r *Repo) GitDir(ctx context.Context) (string, error) {
	out, err := r.Run(ctx, "rev-parse", "--path-format=absolute", "--git-common-dir")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// ResolveCommit turns a ref into a full commit hash. A ref that looks like an
// option ("--help") is still treated as a ref.
func (r *Repo) ResolveCommit(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("empty ref: %w", ErrUnknownRef)
	}
	out, err := r.Run(ctx, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%q: %w in %s", ref, ErrUnknownRef, r.Dir)
	}
	return strings.TrimSpace(string(out)), nil
}

// HasCommit reports whether the object exists and is a commit.
func (r *Repo) HasCommit(ctx context.Context, sha string) bool {
	_, err := r.Run(ctx, "cat-file", "-e", sha+"^{commit}")
	return err == nil
}

// IsAncestor reports whether a is an ancestor of (or equal to) b.
func (r *Repo) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	_, err := r.Run(ctx, "merge-base", "--is-ancestor", a, b)
	if err == nil {
		return true, nil
	}
	var ge *Error
	var ee *exec.ExitError
	if errors.As(err, &ge) && errors.As(ge.Err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, err
}

// Commit is one commit of a candidate listing: its hash, its parents (all of
// them, possibly outside the listing) and its committer time.
type Commit struct {
	ID      string
	Parents []string
	Time    int64
	// TreeSame marks a commit of a path-limited range that does not touch
	// the paths.
	TreeSame bool
}

// Range selects the commits reachable from Bad and from none of Good, as
// `git rev-list Bad ^Good...` does, optionally along first parents only and
// limited to paths.
type Range struct {
	Bad         string
	Good        []string
	FirstParent bool
	Paths       []string
}

func (rg Range) args(extra ...string) []string {
	args := append([]string{"rev-list"}, extra...)
	if rg.FirstParent {
		args = append(args, "--first-parent")
	}
	args = append(args, "--end-of-options", rg.Bad)
	for _, g := range rg.Good {
		args = append(args, "^"+g)
	}
	args = append(args, "--")
	return append(args, rg.Paths...)
}

// RevList lists the range in git's own order (the order git bisect walks).
//
// Limited to paths, it is the graph git bisect itself searches: git walks
// the range with history simplification, so a merge that is TREESAME to
// one of its parents keeps only that parent (the other side is not walked
// through it), and every commit that does not touch the paths stays in the
// graph, marked TreeSame: it links the graph and counts in git's halfway
// shortcut, but is never chosen. `--sparse` lists that graph with the
// simplified parents, a plain listing names the commits that are not
// TREESAME.
func (r *Repo) RevList(ctx context.Context, rg Range) ([]Commit, error) {
	extra := []string{"--parents", "--timestamp"}
	if len(rg.Paths) > 0 {
		extra = append(extra, "--sparse")
	}
	commits, err := r.revList(ctx, rg, extra...)
	if err != nil || len(rg.Paths) == 0 {
		return commits, err
	}
	touching, err := r.revList(ctx, rg)
	if err != nil {
		return nil, err
	}
	touches := make(map[string]bool, len(touching))
	for _, c := range touching {
		touches[c.ID] = true
	}
	for i := range commits {
		commits[i].TreeSame = !touches[commits[i].ID]
	}
	return commits, nil
}

// ChangedFiles lists the paths each commit of the range changes against
// its first parent (a root commit: every file it has), in one git log pass.
func (r *Repo) ChangedFiles(ctx context.Context, rg Range) (map[string][]string, error) {
	args := rg.args("--format=%x01%H", "-z", "--name-only", "--no-renames", "--diff-merges=first-parent", "--root")
	args[0] = "log"
	out, err := r.Run(ctx, args...)
	if err != nil {
		return nil, err
	}
	files := map[string][]string{}
	for _, chunk := range strings.Split(string(out), "\x01")[1:] {
		parts := strings.Split(chunk, "\x00")
		changed := []string{}
		for _, p := range parts[1:] {
			if p = strings.TrimLeft(p, "\n"); p != "" {
				changed = append(changed, p)
			}
		}
		files[parts[0]] = changed
	}
	return files, nil
}

// DiffNames lists the paths whose contents differ between two commits.
func (r *Repo) DiffNames(ctx context.Context, a, b string) ([]string, error) {
	out, err := r.Run(ctx, "diff-tree", "-r", "--name-only", "--no-renames", "-z", a, b)
	if err != nil {
		return nil, err
	}
	return strings.FieldsFunc(string(out), func(r rune) bool { return r == 0 }), nil
}

// revList runs rev-list over the range and parses its lines: with
// --timestamp a time first, then the commit and (with --parents) its
// parents.
func (r *Repo) revList(ctx context.Context, rg Range, extra ...string) ([]Commit, error) {
	out, err := r.Run(ctx, rg.args(extra...)...)
	if err != nil {
		return nil, err
	}
	stamped := slices.Contains(extra, "--timestamp")
	var commits []Commit
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var c Commit
		if stamped {
			ts, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || len(f) < 2 {
				return nil, fmt.Errorf("rev-list: bad line %q", line)
			}
			c.Time, f = ts, f[1:]
		}
		c.ID, c.Parents = f[0], f[1:]
		commits = append(commits, c)
	}
	return commits, nil
}

// Info is what a report shows of a commit.
type Info struct {
	ID      string    `json:"commit"`
	Subject string    `json:"subject"`
	Author  string    `json:"author"`
	Date    time.Time `json:"date"`
	Tree    string    `json:"tree"`
	Files   []string  `json:"files,omitempty"`
}

// Info reads a commit's metadata. With files, it also lists the paths the
// commit changes (against its first parent for a merge).
func (r *Repo) Info(ctx context.Context, sha string, files bool) (Info, error) {
	out, err := r.Run(ctx, "show", "-s", "--format=%H%x00%T%x00%an <%ae>%x00%aI%x00%s", "--end-of-options", sha)
	if err != nil {
		return Info{}, err
	}
	f := strings.SplitN(strings.TrimRight(string(out), "\n"), "\x00", 5)
	if len(f) != 5 {
		return Info{}, fmt.Errorf("git show %s: unexpected output", sha)
	}
	date, _ := time.Parse(time.RFC3339, f[3])
	info := Info{ID: f[0], Tree: f[1], Author: f[2], Date: date, Subject: f[4]}
	if files {
		out, err := r.Run(ctx, "diff-tree", "-r", "--root", "--name-only", "--no-commit-id", "-z", "-m", "--first-parent", sha)
		if err != nil {
			return Info{}, err
		}
		for _, p := range strings.Split(string(out), "\x00") {
			if p != "" {
				info.Files = append(info.Files, p)
			}
		}
	}
	return info, nil
}
