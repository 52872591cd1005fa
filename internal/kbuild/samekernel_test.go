package kbuild

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/gittest"
)

// A build takes an earlier kernel only when its tree changed in no file
// that kernel's build read, in nothing of the build system, and the config
// and compiler are the same.
func TestSameKernel(t *testing.T) {
	var g gittest.Builder
	base := g.CommitFiles("base", map[string]string{"init/main.c": "1\n", "drivers/x.c": "1\n", "Documentation/a.rst": "1\n", "Makefile": "1\n"})
	docs := g.CommitFiles("docs", map[string]string{"Documentation/a.rst": "2\n"}, base)
	unbuilt := g.CommitFiles("unbuilt driver", map[string]string{"drivers/x.c": "2\n"}, docs)
	read := g.CommitFiles("a file the build read", map[string]string{"init/main.c": "2\n"}, unbuilt)
	mk := g.CommitFiles("the build system", map[string]string{"Makefile": "2\n"}, unbuilt)
	kconfig := g.CommitFiles("a Kconfig", map[string]string{"drivers/Kconfig": "config Y\n"}, unbuilt)
	repo := g.Write(t)
	tree := func(c int) string {
		out, err := exec.Command("git", "-C", repo.Dir, "rev-parse", repo.SHAs[c]+"^{tree}").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	// The base's kernel, built, with what its build read.
	cacheDir, tmp := t.TempDir(), t.TempDir()
	files := map[string]string{}
	for name, text := range map[string]string{"bzImage": "kernel", "config": "CONFIG_X=y\n", InputsFile: "init/main.c\n"} {
		files[name] = filepath.Join(tmp, name)
		if err := os.WriteFile(files[name], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache := &Cache{Dir: filepath.Join(cacheDir, "artifacts")}
	if _, err := cache.Put("basekey", Artifact{Commit: repo.SHAs[base]}, files); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(cacheDir, "builds", ".built-optionskey.json")
	rememberBuilt(list, built{Key: "basekey", Tree: tree(base), Commit: repo.SHAs[base], Compiler: "gcc 12"})

	for _, c := range []struct {
		name     string
		commit   int
		config   string
		compiler string
		slot     string
		same     bool
	}{
		{"documentation", docs, "CONFIG_X=y\n", "gcc 12", "0", true},
		{"a driver the build did not read, in another slot", unbuilt, "CONFIG_X=y\n", "gcc 12", "1", true},
		{"a file the build read", read, "CONFIG_X=y\n", "gcc 12", "0", false},
		{"the build system", mk, "CONFIG_X=y\n", "gcc 12", "0", false},
		// A Kconfig file only makes the config: it is the same here.
		{"a Kconfig, the same config", kconfig, "CONFIG_X=y\n", "gcc 12", "0", true},
		{"a Kconfig, another config", kconfig, "CONFIG_X=y\nCONFIG_Y=y\n", "gcc 12", "0", false},
		{"another config", docs, "CONFIG_X=n\n", "gcc 12", "0", false},
		{"another compiler", docs, "CONFIG_X=y\n", "gcc 14", "0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			log, err := os.Create(filepath.Join(t.TempDir(), "build.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			j := &buildJob{b: &Builder{CacheDir: cacheDir}, req: Request{Src: repo.Dir, Tree: tree(c.commit), Commit: repo.SHAs[c.commit]},
				dir: filepath.Join(cacheDir, "wt", c.slot, ".firstbad-build-optionskey"), builtList: list, cc: c.compiler, log: log, res: &Result{}}
			got := j.sameKernel(cache, []byte(c.config))
			if got != c.same {
				t.Fatalf("same kernel %v, want %v", got, c.same)
			}
			if got && (j.res.Key != "basekey" || j.res.SameAs != repo.SHAs[base] || !j.res.Cached) {
				t.Errorf("result %+v: want the base's artifact", j.res)
			}
		})
	}

	// The premise, checked where it costs nothing: the documentation
	// commit's own kernel (built apart, in the artifact cache) must be the
	// base's byte for byte. If it differs, reuse is off for the Builder.
	for _, c := range []struct {
		name, image string
		off         bool
	}{
		{"identical", "kernel", false},
		{"different", "another kernel", true},
	} {
		t.Run("premise "+c.name, func(t *testing.T) {
			own := filepath.Join(t.TempDir(), "bzImage")
			if err := os.WriteFile(own, []byte(c.image), 0o644); err != nil {
				t.Fatal(err)
			}
			log, err := os.Create(filepath.Join(t.TempDir(), "build.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			b := &Builder{CacheDir: cacheDir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			j := &buildJob{b: b, req: Request{Src: repo.Dir, Tree: tree(docs), Commit: repo.SHAs[docs]},
				builtList: list, cc: "gcc 12", log: log, res: &Result{Kernel: own}}
			j.checkPremise(cache, []byte("CONFIG_X=y\n"))
			if off := b.sameOff.Load() != nil; off != c.off {
				t.Fatalf("reuse off %v, want %v", off, c.off)
			}
			j.res = &Result{}
			if got := j.sameKernel(cache, []byte("CONFIG_X=y\n")); got == c.off {
				t.Errorf("same kernel %v after the check, want %v", got, !c.off)
			}
		})
	}
}
