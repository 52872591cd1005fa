package kbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// What a build read comes from its .cmd files: the compiler's dependency
// lists and the command lines of generated files (their inputs named
// there, as the syscall table is), only paths into the tree, relative.
func TestBuildInputs(t *testing.T) {
	// Paths absolute, or relative to the build dir (ccache's base dir),
	// with the build dir inside the checkout (firstbad's own) or beside it.
	root := t.TempDir()
	src := filepath.Join(root, "wt/0")
	cmds := map[string]string{
		"init/.version.o.cmd": `savedcmd_init/version.o := gcc -Wp,-MMD,init/.version.o.d -nostdinc -I/work/linux/arch/x86/include -I./arch/x86/include/generated -include /work/linux/include/linux/compiler-version.h -c -o init/version.o /work/linux/init/version.c

source_init/version.o := /work/linux/init/version.c

deps_init/version.o := \
  /work/linux/include/linux/compiler-version.h \
    $(wildcard include/config/CC_VERSION_TEXT) \
  REL/include/linux/export.h \
  REL/kernel/sched/autogroup.c \
  include/generated/utsrelease.h \

init/version.o: $(deps_init/version.o)
`,
		"arch/x86/include/generated/uapi/asm/.unistd_64.h.cmd": `cmd_arch/x86/include/generated/uapi/asm/unistd_64.h := sh /work/linux/scripts/syscallhdr.sh --abis common,64 --emit-nr   /work/linux/arch/x86/entry/syscalls/syscall_64.tbl arch/x86/include/generated/uapi/asm/unistd_64.h
`,
		"kernel/sched/.autogroup.o.cmd": `deps_kernel/sched/autogroup.o := \
  /work/linux/kernel/sched/autogroup.c \
  REL/include/linux/export.h \
  /work/linux/include/linux/export.h \
`,
		"not-a-cmd-file.txt": "/work/linux/Documentation/index.rst\n",
	}
	for _, layout := range []struct{ dir, rel string }{
		{filepath.Join(src, ".firstbad-build-key"), ".."},
		{filepath.Join(root, "builds/0-key"), "../../wt/0"},
	} {
		dir := layout.dir
		for name, text := range cmds {
			text = strings.ReplaceAll(text, "/work/linux", src)
			text = strings.ReplaceAll(text, "REL", layout.rel)
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := buildInputs(dir, src)
		if err != nil {
			t.Fatal(err)
		}
		// Each path with the number of .cmd files naming it (once per file).
		want := map[string]int{"arch/x86/entry/syscalls/syscall_64.tbl": 1, "include/linux/compiler-version.h": 1,
			"include/linux/export.h": 2, "init/version.c": 1, "kernel/sched/autogroup.c": 2, "scripts/syscallhdr.sh": 1}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("inputs, build dir %s (-want +got):\n%s", layout.rel, diff)
		}
	}

	// The inputs file keeps the counts; one from before them (paths alone)
	// reads as 1 each.
	for _, c := range []struct {
		text string
		want map[string]int
	}{
		{formatInputs(map[string]int{"b.h": 3, "a.c": 1}), map[string]int{"a.c": 1, "b.h": 3}},
		{"a.c\nb.h\n", map[string]int{"a.c": 1, "b.h": 1}},
	} {
		kernel := filepath.Join(t.TempDir(), "bzImage")
		os.WriteFile(filepath.Join(filepath.Dir(kernel), InputsFile), []byte(c.text), 0o644)
		got, ok := ReadInputs(kernel)
		if diff := cmp.Diff(c.want, got); !ok || diff != "" {
			t.Errorf("ReadInputs of %q (ok %v) (-want +got):\n%s", c.text, ok, diff)
		}
	}

	// A change is read when it touches an input or the build system the
	// build used: not another arch's dir, a tool it did not build, the docs.
	x86 := "init/version.c\ninclude/linux/export.h\narch/x86/kernel/head_64.S\ntools/objtool/builtin-check.c\ntools/lib/subcmd/exec-cmd.c\n"
	for _, c := range []struct {
		name, inputs  string
		changed, read []string
	}{
		{"no input", x86, []string{"Documentation/a.rst", "drivers/gpu/x.c"}, nil},
		{"an input", x86, []string{"Documentation/a.rst", "include/linux/export.h"}, []string{"include/linux/export.h"}},
		{"the build system", x86,
			[]string{"drivers/gpu/Makefile", "drivers/gpu/Kconfig", "scripts/x.sh", "tools/objtool/Build", "tools/lib/subcmd/Makefile", "tools/build/Makefile.build", "tools/Makefile", "arch/x86/Makefile", "arch/Kconfig", "Documentation/Kconfig", "localversion-rt"},
			[]string{"drivers/gpu/Makefile", "drivers/gpu/Kconfig", "scripts/x.sh", "tools/objtool/Build", "tools/lib/subcmd/Makefile", "tools/build/Makefile.build", "tools/Makefile", "arch/x86/Makefile", "arch/Kconfig", "Documentation/Kconfig", "localversion-rt"}},
		{"parts the build did not use", x86,
			[]string{"arch/arm64/boot/dts/rockchip/Makefile", "arch/powerpc/platforms/8xx/Kconfig", "arch/ia64/Makefile", "tools/perf/Makefile.perf", "tools/lib/perf/Makefile",
				"tools/testing/selftests/bpf/Makefile", "tools/perf/Documentation/Makefile", "Documentation/Makefile"}, nil},
		{"no tool built", "init/version.c\narch/x86/kernel/head_64.S\n",
			[]string{"tools/objtool/Build", "tools/build/Makefile.build", "tools/Makefile", "arch/x86/tools/relocs.c", "arch/x86/Kconfig"}, []string{"arch/x86/tools/relocs.c", "arch/x86/Kconfig"}},
	} {
		kernel := filepath.Join(t.TempDir(), "bzImage")
		if err := os.WriteFile(filepath.Join(filepath.Dir(kernel), InputsFile), []byte(c.inputs), 0o644); err != nil {
			t.Fatal(err)
		}
		read, ok := ReadBy(kernel, c.changed)
		if !ok {
			t.Fatal("the inputs file was not found")
		}
		if diff := cmp.Diff(c.read, read); diff != "" {
			t.Errorf("%s: %v (-want +got):\n%s", c.name, c.changed, diff)
		}
	}
	if _, ok := ReadBy(filepath.Join(t.TempDir(), "bzImage"), []string{"init/version.c"}); ok {
		t.Error("an artifact without an inputs file said what its build read")
	}
}
