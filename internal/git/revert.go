package git

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNotContained says a commit to revert is not in the tip it would be
// reverted on.
var ErrNotContained = errors.New("not contained in the tip")

// identity lets commit-tree write in a clone that has no user configured.
var identity = []string{"-c", "user.name=firstbad", "-c", "user.email=firstbad@localhost"}

// Revert makes, in this repository (firstbad's clone, never a user's), a
// commit on top of onto that undoes c (against c's first parent, as `git
// revert -m 1` for a merge), without a checkout. It is `git revert` as a
// three-way merge: onto and c's parent's tree, with c as the base. The
// commit is kept alive under ref. On a conflict it returns no commit and
// the files in conflict.
func (r *Repo) Revert(ctx context.Context, onto, c, ref string) (sha string, conflicts []string, err error) {
	if ok, err := r.IsAncestor(ctx, c, onto); err != nil || !ok {
		return "", nil, errors.Join(fmt.Errorf("%s is %w %s", c, ErrNotContained, onto), err)
	}
	info, err := r.Info(ctx, c, false)
	if err != nil {
		return "", nil, err
	}
	parentTree, err := r.Run(ctx, "rev-parse", "--verify", "--end-of-options", c+"^1^{tree}")
	if err != nil {
		return "", nil, fmt.Errorf("%s has no parent to revert to: %w", c, err)
	}
	// A commit on c whose tree is c's parent's: merged into onto (their
	// merge base is c), it brings c's inverse.
	inverse, err := r.Run(ctx, append(identity, "commit-tree", strings.TrimSpace(string(parentTree)), "-p", c, "-m", "inverse of "+c)...)
	if err != nil {
		return "", nil, err
	}
	out, err := r.Run(ctx, "merge-tree", "--write-tree", "--name-only", "--no-messages", onto, strings.TrimSpace(string(inverse)))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		// Exit 1 is a conflict: the tree, then the files in conflict.
		return "", lines[1:], nil
	}
	if err != nil {
		return "", nil, err
	}
	// The subject names the commit reverted (firstbad's reports link the
	// two by it).
	msg := fmt.Sprintf("Revert %.12s \"%s\"\n\nThis reverts commit %s.\n(made by firstbad's revert check on %s)\n", c, info.Subject, c, onto)
	commit, err := r.Run(ctx, append(identity, "commit-tree", lines[0], "-p", onto, "-m", msg)...)
	if err != nil {
		return "", nil, err
	}
	sha = strings.TrimSpace(string(commit))
	if _, err := r.Run(ctx, "update-ref", ref, sha); err != nil {
		return "", nil, err
	}
	return sha, nil, nil
}
