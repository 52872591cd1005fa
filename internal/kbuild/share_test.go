package kbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The team ccache's URL gets its credentials from the environment, else
// netrc, never from the flag; attributes after "|" stay.
func TestRemoteStorage(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(rc, []byte("machine cache.example login team password fromnetrc\n"), 0o600)
	t.Setenv("NETRC", rc)
	for _, c := range []struct{ raw, user, pass, want string }{
		{raw: "redis://cache.example:6379", want: "redis://team:fromnetrc@cache.example:6379"},
		{raw: "redis://cache.example", pass: "fromenv", want: "redis://:fromenv@cache.example"},
		{raw: "http://other.example/ccache|read-only", want: "http://other.example/ccache|read-only"},
		{raw: "http://cache.example/c|layout=bazel", user: "me", pass: "pw", want: "http://me:pw@cache.example/c|layout=bazel"},
	} {
		t.Setenv("FIRSTBAD_CCACHE_REMOTE_USER", c.user)
		t.Setenv("FIRSTBAD_CCACHE_REMOTE_PASSWORD", c.pass)
		if got := remoteStorage(c.raw); got != c.want {
			t.Errorf("remoteStorage(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
	for _, c := range []struct{ raw, want string }{
		{"redis://me:s3cret@cache.example", "not in the URL"},
		{"ftp://me:s3cret@cache.example", "not in the URL"},
		{"ftp://cache.example", "give redis://HOST"},
	} {
		err := CheckSharing(Options{CcacheRemote: c.raw})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CheckSharing(%q): %v, want an error saying %q without the password", c.raw, err, c.want)
		}
	}
}
