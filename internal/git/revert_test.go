package git_test

import (
	"context"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
)

// Revert undoes a commit on a later tip, a merge against its first parent,
// and reports a conflict with its files; the user's branches are untouched.
func TestRevert(t *testing.T) {
	var b gittest.Builder
	base := b.CommitFiles("base", map[string]string{"a": "1\n", "b": "1\n", "c": "1\n"})
	change := b.CommitFiles("change a", map[string]string{"a": "2\n"}, base)
	side := b.CommitFiles("side: change b", map[string]string{"b": "2\n"}, base)
	merge := b.CommitFiles("merge side", nil, change, side)
	again := b.CommitFiles("change a again", map[string]string{"a": "3\n"}, merge)
	tip := b.CommitFiles("change c", map[string]string{"c": "2\n"}, again)
	repo := b.Write(t)
	r := &git.Repo{Dir: repo.Dir}
	ctx := context.Background()
	show := func(sha, file string) string {
		out, err := r.Run(ctx, "show", sha+":"+file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	// The merge reverted on the tip: b goes back, the rest stays.
	sha, conflicts, err := r.Revert(ctx, repo.SHAs[tip], repo.SHAs[merge], "refs/firstbad/revert/merge")
	if err != nil || len(conflicts) > 0 {
		t.Fatalf("revert of the merge: %v %v", err, conflicts)
	}
	if got := show(sha, "b") + show(sha, "a") + show(sha, "c"); got != "132" {
		t.Errorf("after reverting the merge b, a, c = %s, want 1, 3, 2", got)
	}
	if subj := gittest.Git(t, repo.Dir, "log", "-1", "--format=%s", sha); !strings.HasPrefix(subj, "Revert "+repo.SHAs[merge][:12]+" ") {
		t.Errorf("subject %q does not name the reverted commit", subj)
	}
	// c's change reverted: clean.
	if sha, _, err = r.Revert(ctx, repo.SHAs[tip], repo.SHAs[tip], "refs/firstbad/revert/tip"); err != nil || show(sha, "c") != "1" {
		t.Fatalf("revert of the tip: %v", err)
	}
	// a's first change was changed again later: a conflict on a.
	if _, conflicts, err = r.Revert(ctx, repo.SHAs[tip], repo.SHAs[change], "refs/firstbad/revert/a"); err != nil || strings.Join(conflicts, ",") != "a" {
		t.Fatalf("conflict: %v %v", err, conflicts)
	}
	// Not in the tip.
	if _, _, err = r.Revert(ctx, repo.SHAs[side], repo.SHAs[change], "refs/firstbad/revert/x"); err == nil {
		t.Error("a commit not in the tip was reverted")
	}
}
