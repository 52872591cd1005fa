package netrc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(path, []byte("machine other login o password op\nmachine store\n  login me\n  password s3cret\ndefault login anon password x\n"), 0o600)
	t.Setenv("NETRC", path)
	got := [][2]string{}
	for _, h := range []string{"store", "other", "elsewhere"} {
		u, p := Lookup(h)
		got = append(got, [2]string{u, p})
	}
	want := [][2]string{{"me", "s3cret"}, {"o", "op"}, {"anon", "x"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
}
