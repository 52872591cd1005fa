package kbuild

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A build killed with its controller leaves files of unknown completeness;
// the next build removes exactly those, keeping the config and the headers
// generated from it.
func TestRemoveInterrupted(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	write := func(rel string, mtime time.Time) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"kernel/fork.o", "kernel/.fork.o.cmd", "vmlinux", ".config"} {
		write(f, old)
	}
	marker := filepath.Join(dir, building)
	write(building, old.Add(time.Minute))
	later := old.Add(2 * time.Minute)
	for _, f := range []string{"kernel/sched/core.o", "kernel/sched/.core.o.cmd", "arch/x86/boot/bzImage", ".config.firstbad",
		"include/generated/autoconf.h", "include/config/auto.conf"} {
		write(f, later)
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir, "source")); err != nil {
		t.Fatal(err)
	}

	n, err := removeInterrupted(dir, marker)
	if err != nil || n != 3 {
		t.Fatalf("removed %d, err %v; want 3", n, err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return nil
	})
	sort.Strings(left)
	want := []string{".config", ".config.firstbad", "include/config/auto.conf", "include/generated/autoconf.h",
		"kernel/.fork.o.cmd", "kernel/fork.o", "source", "vmlinux"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("files left (-want +got):\n%s", diff)
	}
	// Without a marker (the last build ended on its own) nothing goes.
	if n, err := removeInterrupted(dir, marker); n != 0 || err != nil {
		t.Errorf("second call: removed %d, err %v", n, err)
	}
}

// The config cache's key follows the Kconfig language's inputs only.
func TestConfigInputs(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"init/Kconfig", true}, {"arch/x86/Kconfig.cpu", true}, {"scripts/kconfig/conf.c", true}, {"scripts/Kconfig.include", true},
		{"Makefile", true}, {"arch/x86/Makefile", true}, {"arch/x86/configs/x86_64_defconfig", true},
		{"kernel/sched/core.c", false}, {"include/linux/sched.h", false}, {"drivers/net/Makefile", false}, {"Documentation/Kconfig", true},
		{"net/ipv4/Kbuild", false},
	} {
		if got := configInput(c.path, "x86_64"); got != c.want {
			t.Errorf("configInput(%q) = %v, want %v", c.path, got, c.want)
		}
	}
}
