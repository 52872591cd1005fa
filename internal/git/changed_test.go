package git_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
)

// ChangedFiles lists each commit's paths against its first parent: a
// merge shows what it brings to its first parent's line, an empty commit
// nothing, a name with a space or beyond ASCII whole; commits
// outside the range are absent.
func TestChangedFiles(t *testing.T) {
	b := gittest.Builder{Files: []string{"a"}} // merges get their parents' newest files
	base := b.CommitFiles("base", map[string]string{"a": "1", "b": "1"})
	change := b.CommitFiles("change a", map[string]string{"a": "2", "dir/with space": "x"}, base)
	side := b.CommitFiles("side", map[string]string{"b": "2", "é name": "y"}, base)
	merge := b.CommitFiles("merge", nil, change, side)
	empty := b.CommitFiles("nothing", nil, merge)
	repo := b.Write(t)
	r := &git.Repo{Dir: repo.Dir}
	got, err := r.ChangedFiles(context.Background(), git.Range{Bad: repo.SHAs[empty], Good: []string{repo.SHAs[base]}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		repo.SHAs[change]: {"a", "dir/with space"},
		repo.SHAs[side]:   {"b", "é name"},
		repo.SHAs[merge]:  {"b", "é name"},
		repo.SHAs[empty]:  {},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ChangedFiles (-want +got):\n%s", diff)
	}
}
