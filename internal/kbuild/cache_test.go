package kbuild

import (
	"os"
	"path/filepath"
	"testing"
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
