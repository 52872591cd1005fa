package kbuild

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/artstore/davtest"
)

// An entry stored again with a file it lacks (an older firstbad's, before
// artifacts listed what their build read) is replaced; one as complete is
// kept.
func TestCachePutReplacesIncompleteEntry(t *testing.T) {
	src := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := &Cache{Dir: t.TempDir()}
	old := map[string]string{"bzImage": file("bzImage", "old"), "config": file("config", "c")}
	if _, err := c.Put("k", Artifact{}, old); err != nil {
		t.Fatal(err)
	}
	now := map[string]string{"bzImage": file("bzImage2", "new"), "config": file("config2", "c"), InputsFile: file("inputs", "init/main.c")}
	a, err := c.Put("k", Artifact{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(a.Kernel); string(data) != "new" || !fileExists(filepath.Join(filepath.Dir(a.Kernel), InputsFile)) {
		t.Fatalf("the incomplete entry was kept: kernel %q", data)
	}
	if a, err = c.Put("k", Artifact{}, map[string]string{"bzImage": file("bzImage3", "third"), "config": file("config3", "c")}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(a.Kernel); string(data) != "new" {
		t.Errorf("a complete entry was replaced: kernel %q", data)
	}
	entries, _ := os.ReadDir(c.Dir)
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		t.Errorf("cache dir holds %v, want the entry k alone", names)
	}
}

// With a shared store behind it, a cache shares what it stores and gets
// what it lacks; an entry the store damaged is skipped (built here) and
// replaced by the rebuilt one; an intact one is never overwritten.
func TestCacheWithStore(t *testing.T) {
	url, root := davtest.Start(t)
	store, err := artstore.New(url)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	files := func(kernel string) map[string]string {
		out := map[string]string{}
		for name, text := range map[string]string{"bzImage": kernel, "config": "CONFIG_X=y\n", InputsFile: "init/main.c\n"} {
			out[name] = filepath.Join(src, kernel+"-"+name)
			if err := os.WriteFile(out[name], []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	cache := func() *Cache { return &Cache{Dir: t.TempDir(), Store: store} }
	kernelOf := func(c *Cache) (string, bool) {
		a, ok := c.Get("k")
		if !ok {
			return "", false
		}
		data, _ := os.ReadFile(a.Kernel)
		if !a.FromStore {
			t.Error("the artifact did not say it came from the store")
		}
		return string(data), true
	}
	if _, err := cache().Put("k", Artifact{Commit: "c"}, files("built")); err != nil {
		t.Fatal(err)
	}
	if got, ok := kernelOf(cache()); !ok || got != "built" {
		t.Fatalf("a fresh cache got %q (%v) from the store, want the shared kernel", got, ok)
	}
	// An intact entry stays as it is.
	if _, err := cache().Put("k", Artifact{Commit: "c"}, files("another")); err != nil {
		t.Fatal(err)
	}
	if got, _ := kernelOf(cache()); got != "built" {
		t.Fatalf("the store's intact entry was overwritten: %q", got)
	}
	// Damaged behind the store's back: not taken, and the rebuilt one
	// replaces it.
	kernels, _ := filepath.Glob(filepath.Join(root, "k", "*", "bzImage"))
	for _, k := range kernels {
		os.WriteFile(k, []byte("bitrot"), 0o644)
	}
	c := cache()
	if _, ok := c.Get("k"); ok {
		t.Fatal("a corrupt entry was taken")
	}
	if _, err := c.Put("k", Artifact{Commit: "c"}, files("rebuilt")); err != nil {
		t.Fatal(err)
	}
	if got, ok := kernelOf(cache()); !ok || got != "rebuilt" {
		t.Fatalf("after the rebuild the store gives %q (%v), want the rebuilt kernel", got, ok)
	}
}
