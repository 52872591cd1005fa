package debroot

import (
	"path/filepath"
	"testing"
)

// A root's name follows its release, variant and package list; apt's
// variant keeps the names roots had before variants were part of it.
func TestDir(t *testing.T) {
	build := Want{Release: "bullseye", Variant: "apt", Packages: []string{"gcc", "make"}}
	guest := Want{Release: "bullseye", Variant: "minbase", Packages: []string{"gcc", "make"}}
	other := Want{Release: "bullseye", Variant: "minbase", Packages: []string{"python3"}}
	names := map[string]bool{}
	for _, w := range []Want{build, guest, other} {
		d := Dir("/roots", w)
		if filepath.Dir(d) != "/roots" || names[d] {
			t.Errorf("Dir(%+v) = %s: not its own name under /roots", w, d)
		}
		names[d] = true
	}
	// sha256("bullseye\x00gcc,make")[:6], as build roots were named.
	if got, want := Dir("/roots", build), "/roots/bullseye-e07fe5da6197"; got != want {
		t.Errorf("Dir(build root) = %s, want %s", got, want)
	}
}
