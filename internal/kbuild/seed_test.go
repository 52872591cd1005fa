package kbuild

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/google/go-cmp/cmp"
)

// A build dir copied from another checkout slot is retimed against this
// one: make rebuilds what the files that differ feed, and only that. The
// other slot's checkout here is older than the copied objects, so a plain
// copy would keep an object of the old header (the control shows it).
func TestSeedFromOtherSlot(t *testing.T) {
	for _, tool := range []string{"git", "make", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " missing")
		}
	}
	root := t.TempDir()
	clone := filepath.Join(root, "clone")
	git := func(dir string, args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	writeFile := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(root, "init", "-q", clone)
	writeFile(filepath.Join(clone, "a.h"), "a1\n")
	writeFile(filepath.Join(clone, "b.h"), "b1\n")
	git(clone, "add", ".")
	git(clone, "commit", "-qm", "one")
	c1 := git(clone, "rev-parse", "HEAD")
	writeFile(filepath.Join(clone, "a.h"), "a2\n")
	git(clone, "commit", "-qam", "two")
	c2 := git(clone, "rev-parse", "HEAD")
	slot0, slot1 := filepath.Join(root, "wt", "0"), filepath.Join(root, "wt", "1")
	// Slot 1 is checked out at the second commit before slot 0 builds the
	// first: its a.h is older than slot 0's object of the other a.h.
	git(clone, "worktree", "add", "-q", "--detach", slot1, c2)
	git(clone, "worktree", "add", "-q", "--detach", slot0, c1)
	hourAgo := time.Now().Add(-time.Hour)
	for _, f := range []string{"a.h", "b.h"} {
		os.Chtimes(filepath.Join(slot1, f), hourAgo, hourAgo)
	}

	makefile := "all: a.o b.o\na.o: ../a.h\n\tcp $< $@\nb.o: ../b.h\n\tcp $< $@\n"
	config := []byte("CONFIG_X=y\n")
	built := filepath.Join(slot0, cachedir.BuildDirPrefix+"aaaa")
	writeFile(filepath.Join(built, "Makefile"), makefile)
	writeFile(filepath.Join(built, ".config"), string(config))
	runMake := func(dir string) {
		t.Helper()
		if out, err := exec.Command("make", "-C", dir).CombinedOutput(); err != nil {
			t.Fatalf("make: %v\n%s", err, out)
		}
	}
	runMake(built)
	writeFile(filepath.Join(built, builtTree), git(clone, "rev-parse", c1+"^{tree}")+"\n")
	// Not copied: the same config, but no tree it built whole; or building
	// (its tree is the newest: it would be taken first).
	for name, mark := range map[string]string{"bbbb": "", "cccc": building} {
		d := filepath.Join(slot0, cachedir.BuildDirPrefix+name)
		writeFile(filepath.Join(d, ".config"), string(config))
		writeFile(filepath.Join(d, "a.o"), "wrong\n")
		if mark != "" {
			writeFile(filepath.Join(d, builtTree), git(clone, "rev-parse", c1+"^{tree}")+"\n")
			writeFile(filepath.Join(d, mark), "")
		}
	}

	control := filepath.Join(slot1, cachedir.BuildDirPrefix+"control")
	if out, err := exec.Command("cp", "-a", built, control).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	runMake(control)
	if a, _ := os.ReadFile(filepath.Join(control, "a.o")); string(a) != "a1\n" {
		t.Fatalf("the control copy rebuilt a.o (%q): the test does not set up the danger it checks", a)
	}

	dir := filepath.Join(slot1, cachedir.BuildDirPrefix+"dddd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(root, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	j := &buildJob{b: &Builder{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, dir: dir, log: logf,
		req: Request{Src: slot1, Tree: git(clone, "rev-parse", c2+"^{tree}")}}
	j.seed(context.Background(), config)
	log, _ := os.ReadFile(logf.Name())
	if !strings.Contains(string(log), cachedir.BuildDirPrefix+"aaaa, which built the same .config in checkout slot 0") || !strings.Contains(string(log), "(1 files differ here") {
		t.Fatalf("not seeded from slot 0's dir that built a tree:\n%s", log)
	}
	bBefore, _ := os.Stat(filepath.Join(dir, "b.o"))
	runMake(dir)
	got := map[string]string{}
	for _, f := range []string{"a.o", "b.o"} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		got[f] = string(data)
	}
	if diff := cmp.Diff(map[string]string{"a.o": "a2\n", "b.o": "b1\n"}, got); diff != "" {
		t.Errorf("objects after make in the seeded dir (-want +got):\n%s", diff)
	}
	if bAfter, _ := os.Stat(filepath.Join(dir, "b.o")); !bAfter.ModTime().Equal(bBefore.ModTime()) {
		t.Errorf("b.o was rebuilt: its source is the same in both trees")
	}
	// The next step's checkout of the same commit rebuilds nothing.
	aBefore, _ := os.Stat(filepath.Join(dir, "a.o"))
	git(slot1, "checkout", "--quiet", "--force", "--detach", c2, "--")
	runMake(dir)
	if aAfter, _ := os.Stat(filepath.Join(dir, "a.o")); !aAfter.ModTime().Equal(aBefore.ModTime()) {
		t.Errorf("a.o was rebuilt after a checkout of the same commit")
	}
}

// A copy into a build dir cut short (the controller killed mid-copy) is
// not trusted: the next build empties the dir first.
func TestInterruptedSeed(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "wt", "0", cachedir.BuildDirPrefix+"aaaa")
	for _, f := range []string{seeding, "vmlinux", "kernel/fork.o"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logf, err := os.Create(filepath.Join(root, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	j := &buildJob{b: &Builder{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, dir: dir, log: logf, req: Request{Src: filepath.Dir(dir)}}
	j.seed(context.Background(), []byte("CONFIG_X=y\n"))
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the build dir of a copy cut short still holds %v", left)
	}
	if log, _ := os.ReadFile(logf.Name()); !strings.Contains(string(log), "cut short") {
		t.Errorf("the build log does not say so:\n%s", log)
	}
}

// A build dir with no sibling of the same config starts from the nearest
// config the same compiler built for the same arch; configs of another
// compiler or arch, or too far apart, are no start (kbuild would rebuild
// everything).
func TestSeedNear(t *testing.T) {
	head := "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.176 Kernel Configuration\n#\n"
	tools := "CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\nCONFIG_AS_VERSION=24000\nCONFIG_LD_VERSION=24000\n"
	cfg := func(head, tools string, opts ...string) string {
		return head + tools + strings.Join(opts, "\n") + "\n"
	}
	final := cfg(head, tools, "CONFIG_A=y", "CONFIG_B=y", "# CONFIG_C is not set", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=y")
	for _, c := range []struct {
		name   string
		config string
		delta  []string
		ok     bool
	}{
		{"one option apart", cfg(head, tools, "CONFIG_A=y", "CONFIG_B=y", "CONFIG_C=y", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=y"), []string{"CONFIG_C"}, true},
		{"unset and absent are the same", cfg(head, tools, "CONFIG_A=y", "CONFIG_B=y", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=m"), []string{"CONFIG_F"}, true},
		{"an option only there", cfg(head, tools, "CONFIG_A=y", "CONFIG_B=y", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=y", "CONFIG_G=y"), []string{"CONFIG_G"}, true},
		{"another compiler", cfg(head, strings.Replace(tools, "12.2.0", "14.2.0", 2), "CONFIG_A=y"), nil, false},
		{"another arch", cfg(strings.Replace(head, "x86", "arm64", 1), tools, "CONFIG_A=y"), nil, false},
		{"no compiler said (before 5.8)", cfg(head, "", "CONFIG_A=y"), nil, false},
	} {
		delta, ok := configDelta([]byte(c.config), []byte(final))
		if diff := cmp.Diff(c.delta, delta); ok != c.ok || diff != "" {
			t.Errorf("%s: ok %v, want %v; delta (-want +got):\n%s", c.name, ok, c.ok, diff)
		}
	}

	// The nearest sibling is taken; one more than half the config apart is
	// not; nor is a dir without a config.
	root := t.TempDir()
	sibs := map[string]string{
		"two":  cfg(head, tools, "CONFIG_A=y", "CONFIG_B=n", "CONFIG_C=y", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=y"),
		"one":  cfg(head, tools, "CONFIG_A=y", "CONFIG_B=y", "CONFIG_C=y", "CONFIG_D=y", "CONFIG_E=y", "CONFIG_F=y"),
		"far":  cfg(head, tools, "CONFIG_G=y", "CONFIG_H=y", "CONFIG_I=y", "CONFIG_J=y", "CONFIG_K=y", "CONFIG_L=y"),
		"none": "",
	}
	var dirs []string
	for name, text := range sibs {
		d := filepath.Join(root, name)
		dirs = append(dirs, d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if text != "" {
			if err := os.WriteFile(filepath.Join(d, ".config"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sib, _, delta := near(dirs, []byte(final)); filepath.Base(sib) != "one" || !cmp.Equal(delta, []string{"CONFIG_C"}) {
		t.Errorf("near: %s %v, want one [CONFIG_C]", sib, delta)
	}
	if sib, _, _ := near([]string{filepath.Join(root, "far"), filepath.Join(root, "none")}, []byte(final)); sib != "" {
		t.Errorf("near: %s, want none (too far apart, no config)", sib)
	}
}

// The copy itself: a new build dir of a checkout takes its nearest
// sibling's objects, and the log names the options apart.
func TestSeedNearCopy(t *testing.T) {
	slot := t.TempDir()
	tools := "# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_CC_VERSION_TEXT=\"gcc 12\"\nCONFIG_AS_VERSION=1\nCONFIG_LD_VERSION=1\n"
	sib := filepath.Join(slot, cachedir.BuildDirPrefix+"aaaa")
	for name, text := range map[string]string{".config": tools + "CONFIG_A=y\n# CONFIG_B is not set\n", "vmlinux": "v", "kernel/a.o": "a"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sib, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sib, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(slot, cachedir.BuildDirPrefix+"bbbb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	j := &buildJob{b: &Builder{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, dir: dir, log: logf}
	j.seed(context.Background(), []byte(tools+"CONFIG_A=y\nCONFIG_B=y\n"))
	log, _ := os.ReadFile(logf.Name())
	if !strings.Contains(string(log), cachedir.BuildDirPrefix+"aaaa, which built a config 1 option(s) apart (CONFIG_B)") {
		t.Errorf("not seeded from the near sibling:\n%s", log)
	}
	if a, _ := os.ReadFile(filepath.Join(dir, "kernel/a.o")); string(a) != "a" {
		t.Errorf("the sibling's objects were not copied")
	}
}
