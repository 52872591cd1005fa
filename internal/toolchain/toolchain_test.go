package toolchain

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/outcome"
)

func TestParse(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr", "bin", "gcc"), nil, 0o755)
	for _, c := range []struct {
		in   string
		want Spec
		err  bool
	}{
		{"", Spec{Kind: "host"}, false},
		{"host", Spec{Kind: "host"}, false},
		{"auto", Spec{Kind: "auto"}, false},
		{"debian:bullseye", Spec{Kind: "debian", Release: "bullseye"}, false},
		{"debian:jessie", Spec{}, true},
		{root, Spec{Kind: "dir", Dir: root}, false},
		{t.TempDir(), Spec{}, true}, // no gcc in it
		{"gcc-10", Spec{}, true},
	} {
		got, err := Parse(c.in)
		if (err != nil) != c.err || err != nil && !outcome.IsInput(err) {
			t.Errorf("Parse(%q) error %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" && !c.err {
			t.Errorf("Parse(%q) (-want +got):\n%s", c.in, diff)
		}
	}
}

func TestEras(t *testing.T) {
	for _, c := range []struct {
		v, p int
		want string
	}{
		{4, 9, "bullseye"}, {5, 10, "bullseye"}, {5, 15, "bullseye"}, {5, 16, "bookworm"}, {6, 1, "bookworm"},
		{6, 5, "bookworm"}, {6, 6, "trixie"}, {6, 12, "trixie"}, {7, 0, "trixie"},
	} {
		if got := ForKernel(c.v, c.p); got != c.want {
			t.Errorf("ForKernel(%d, %d) = %s, want %s", c.v, c.p, got, c.want)
		}
	}
	if Older("trixie") != "bookworm" || Older("bookworm") != "bullseye" || Older("bullseye") != "" {
		t.Error("Older does not walk the releases back")
	}
	if !Newer("trixie", "bullseye") || Newer("bullseye", "bookworm") || Newer("sid", "bullseye") {
		t.Error("Newer is wrong")
	}
}

func TestKernelVersion(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("# SPDX\nVERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 28\n"), 0o644)
	if v, p, ok := KernelVersion(dir); !ok || v != 5 || p != 10 {
		t.Errorf("KernelVersion = %d.%d %v", v, p, ok)
	}
	if _, _, ok := KernelVersion(t.TempDir()); ok {
		t.Error("a dir without a Makefile has a version")
	}
}

// The signatures seen building old trees with new toolchains are
// recognized; an ordinary compile error is not a toolchain's.
func TestSignatures(t *testing.T) {
	for _, c := range []struct {
		log      string
		mismatch bool
		fixes    int
	}{
		{"arch/x86/tools/relocs: Unsupported relocation type: R_X86_64_PLT32 (4)", true, 0},
		{"security/selinux/include/classmap.h:249:2: error: #error New address family defined, please update secclass_map.", true, 0},
		{"/usr/bin/ld: scripts/dtc/dtc-parser.tab.o:(.bss+0x10): multiple definition of `yylloc'; scripts/dtc/dtc-lexer.lex.o:(.bss+0x0): first defined here", true, 0},
		{"subcmd-util.h:58:31: error: pointer 'ptr' may be used after 'realloc' [-Werror=use-after-free]", true, 1},
		// gcc 12.2 in objtool's build on 5.10.28 (no pointer name)
		{"subcmd-util.h:56:23: error: pointer may be used after ‘realloc’ [-Werror=use-after-free]", true, 1},
		{"kernel/foo.c:12:3: error: implicit declaration of function 'bar' [-Werror=implicit-function-declaration]", true, 0},
		{"kernel/sched/core.c:100:5: error: 'x' undeclared (first use in this function)", false, 0},
	} {
		_, _, ok := MatchMismatch("make: entering\n" + c.log + "\nmake: *** Error 1\n")
		if ok != c.mismatch {
			t.Errorf("MatchMismatch(%q) = %v", c.log, ok)
		}
		if n := len(MatchFixes(c.log)); n != c.fixes {
			t.Errorf("MatchFixes(%q) = %d fixes, want %d", c.log, n, c.fixes)
		}
	}
	for _, f := range Fixes {
		if p, err := f.PatchText(); err != nil || len(p) == 0 {
			t.Errorf("fix %q has no patch: %v", f.Subject, err)
		}
	}
}
