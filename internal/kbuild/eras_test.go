package kbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/toolchain"
)

// Upstream's xrealloc before and after 52a9dab6d892 (blobs 794a375 and
// b2aec04 of tools/lib/subcmd/subcmd-util.h), the body only.
const (
	xreallocOld = `	void *ret = realloc(ptr, size);
	if (!ret && !size)
		ret = realloc(ptr, 1);
	if (!ret) {
		ret = realloc(ptr, size);
		if (!ret && !size)
			ret = realloc(ptr, 1);
		if (!ret)
			die("Out of memory, realloc failed");
	}
	return ret;
`
	xreallocNew = `	void *ret = realloc(ptr, size);
	if (!ret)
		die("Out of memory, realloc failed");
	return ret;
`
)

// subcmdTree is a git tree holding a subcmd-util.h with xrealloc's body
// (the lines around it as in 5.10, so that the shipped patch's context
// matches).
func subcmdTree(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	h := filepath.Join(dir, "tools", "lib", "subcmd", "subcmd-util.h")
	os.MkdirAll(filepath.Dir(h), 0o755)
	var lines []string
	for i := 1; i < 50; i++ { // the patch's hunk starts at line 50
		lines = append(lines, "/* line */")
	}
	text := strings.Join(lines, "\n") + "\nstatic inline void *xrealloc(void *ptr, size_t size)\n{\n" + body + "}\n\n"
	os.WriteFile(h, []byte(text), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// TestBuildFixApplies: the libsubcmd fix goes onto a tree without it and
// leaves a tree that has it alone; its signature is what the host's gcc 12
// (or newer) really prints for the old code.
func TestBuildFixApplies(t *testing.T) {
	fix := toolchain.Fixes[0]
	old := subcmdTree(t, xreallocOld)
	if err := applyFix(context.Background(), old, fix); err != nil {
		t.Fatalf("on a tree that lacks it: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(old, "tools/lib/subcmd/subcmd-util.h"))
	if !strings.Contains(string(got), xreallocNew) {
		t.Errorf("after the fix:\n%s", got)
	}
	has := subcmdTree(t, xreallocNew)
	if err := applyFix(context.Background(), has, fix); err == nil || !strings.Contains(err.Error(), "has it already") {
		t.Errorf("on a tree that has it: %v, want 'has it already'", err)
	}

	// The signature against a real compiler's words: gcc 12+ with the
	// flags libsubcmd builds with.
	src := filepath.Join(t.TempDir(), "help.c")
	os.WriteFile(src, []byte("#include <stdlib.h>\nvoid die(const char *);\n"+
		"#include \"subcmd-util.h\"\nvoid *grow(void *p, size_t n) { return xrealloc(p, n); }\n"), 0o644)
	cmd := exec.Command("gcc", "-O2", "-Wall", "-Werror", "-I", filepath.Join(subcmdTree(t, xreallocOld), "tools/lib/subcmd"), "-c", "-o", os.DevNull, src)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if v, _ := exec.Command("gcc", "-dumpversion").Output(); atoi(string(v)) < 12 {
		t.Skipf("host gcc %s predates -Wuse-after-free", v)
	}
	if err == nil {
		t.Fatal("gcc built the old xrealloc with -Werror")
	}
	if m := toolchain.MatchFixes(string(out)); len(m) != 1 || m[0].Commit != fix.Commit {
		t.Errorf("gcc's error does not match the fix's signature:\n%s", out)
	}
}

func atoi(s string) int {
	major, _, _ := strings.Cut(strings.TrimSpace(s), ".")
	n, _ := strconv.Atoi(major)
	return n
}

// TestArtifactKeyToolchain: a kernel's key names its toolchain and the
// fixes applied to its tree; the same inputs give the same key.
func TestArtifactKeyToolchain(t *testing.T) {
	cache := &Cache{Dir: t.TempDir()}
	key := func(tc *toolchain.Root, fixes ...toolchain.Fix) string {
		j := &buildJob{o: Options{Arch: "x86_64"}, req: Request{Tree: "0123abcd"}, tc: tc, fixes: fixes, res: &Result{}}
		if j.cached(cache, []byte("CONFIG_X=y\n")) {
			t.Fatal("hit in an empty cache")
		}
		return j.res.Key
	}
	bullseye := &toolchain.Root{Dir: "/roots/b", ID: "debian:bullseye: gcc (Debian 10.2.1-6) 10.2.1 20210110; GNU ld (GNU Binutils for Debian) 2.35.2"}
	trixie := &toolchain.Root{Dir: "/roots/t", ID: "debian:trixie: gcc (Debian 14.2.0-19) 14.2.0; GNU ld (GNU Binutils for Debian) 2.44"}
	keys := map[string]string{
		"host":         key(toolchain.Host()),
		"bullseye":     key(bullseye),
		"trixie":       key(trixie),
		"bullseye+fix": key(bullseye, toolchain.Fixes[0]),
	}
	seen := map[string]string{}
	for name, k := range keys {
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share key %s", name, other, k)
		}
		seen[k] = name
	}
	if again := key(bullseye); again != keys["bullseye"] {
		t.Errorf("the same inputs gave %s, then %s", keys["bullseye"], again)
	}
}

// TestFallBack: under auto, a toolchain-era failure moves one release
// back, to the oldest at most; never under an explicit toolchain or for
// other failures.
func TestFallBack(t *testing.T) {
	tooNew := outcome.InfraErr("build", fmt.Errorf("%w: x", errTooNew))
	for _, c := range []struct {
		toolchain string
		spec      toolchain.Spec
		err       error
		want      string
	}{
		{"auto", toolchain.Spec{Kind: "debian", Release: "trixie"}, tooNew, "bookworm"},
		{"auto", toolchain.Spec{Kind: "debian", Release: "bookworm"}, tooNew, "bullseye"},
		{"auto", toolchain.Spec{Kind: "debian", Release: "bullseye"}, tooNew, ""},
		{"debian:trixie", toolchain.Spec{Kind: "debian", Release: "trixie"}, tooNew, ""},
		{"auto", toolchain.Spec{Kind: "debian", Release: "trixie"}, errors.New("disk"), ""},
		{"auto", toolchain.Spec{Kind: "debian", Release: "trixie"}, nil, ""},
	} {
		got, ok := (&Builder{}).fallBack(Options{Toolchain: c.toolchain}, c.spec, c.err)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("fallBack(%s, %s, %v) = %q, %v; want %q", c.toolchain, c.spec, c.err, got, ok, c.want)
		}
	}
}

// TestCompileStatsSilentKbuild: make 4.4 silences the kbuild of older
// trees (no "  CC" lines); ccache's record still counts the compiles.
func TestCompileStatsSilentKbuild(t *testing.T) {
	dir := t.TempDir()
	log, stats := filepath.Join(dir, "build.log"), filepath.Join(dir, "stats.log")
	os.WriteFile(log, []byte("$ make bzImage\nsome warning\n"), 0o644)
	os.WriteFile(stats, []byte("# /dev/null\ndirect_cache_hit\n# /k/kernel/fork.c\ndirect_cache_hit\nlocal_storage_hit\n"+
		"# /k/kernel/exit.c\ndirect_cache_miss\nlocal_storage_read_miss\n# /k/kernel/sys.c\ndirect_cache_hit\nlocal_storage_miss\nremote_storage_hit\n# /k/arch/x86/entry/entry_64.S\npreprocessed_cache_hit\n"+
		"# /k/x.c\ndirect_cache_miss\npreprocessor_error\n# /k/kernel/fork.c\ndirect_cache_miss\nremote_storage_error\n"), 0o644)
	got := compileStats(log, 0, stats)
	if want := (compiles{n: 5, hits: 4, remoteHits: 1, remoteErrors: 1}); got != want {
		t.Errorf("compileStats = %+v, want %+v", got, want)
	}
	os.WriteFile(log, []byte("  CC      a.o\n  CC      b.o\n  CC      c.o\n  CC      d.o\n"), 0o644)
	if c := compileStats(log, 0, filepath.Join(dir, "none")); c.n != 4 {
		t.Errorf("from kbuild's lines: %d, want 4", c.n)
	}
}
