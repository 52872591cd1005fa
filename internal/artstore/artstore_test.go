package artstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/firstbad/firstbad/internal/artstore/davtest"
)

// An entry goes up file by file, manifest last, and comes back checked: a
// damaged file is corrupt, a missing one partial, no manifest no entry.
func TestStore(t *testing.T) {
	url, root := davtest.Start(t)
	s, err := New(url + "/kernels/")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := t.TempDir()
	files := map[string]string{"bzImage": strings.Repeat("kernel", 100000), "config": "CONFIG_X=y\n", "meta.json": "{}"}
	for name, text := range files {
		os.WriteFile(filepath.Join(src, name), []byte(text), 0o644)
	}
	if has, err := s.Has(ctx, "k1"); has || err != nil {
		t.Fatalf("an empty store has k1: %v %v", has, err)
	}
	if err := s.Put(ctx, "k1", src); err != nil {
		t.Fatal(err)
	}
	if has, err := s.Has(ctx, "k1"); !has || err != nil {
		t.Fatalf("after Put: has %v (%v)", has, err)
	}
	got := t.TempDir()
	if err := s.Fetch(ctx, "k1", got); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		data, _ := os.ReadFile(filepath.Join(got, name))
		if string(data) != text {
			t.Errorf("%s came back as %d bytes, want %d", name, len(data), len(text))
		}
	}

	entry := filepath.Join(root, "kernels", "k1")
	uploads, _ := filepath.Glob(filepath.Join(entry, "*", "config"))
	if len(uploads) != 1 {
		t.Fatalf("the entry's files: %v, want one upload dir", uploads)
	}
	upload := filepath.Dir(uploads[0])
	for _, c := range []struct {
		name   string
		damage func()
		want   string
	}{
		{"corrupt", func() { os.WriteFile(filepath.Join(upload, "config"), []byte("CONFIG_X=n\n"), 0o644) }, "corrupt"},
		{"partial", func() { os.Remove(filepath.Join(upload, "config")) }, "partial"},
		{"no manifest", func() { os.Remove(filepath.Join(entry, "manifest.json")) }, ErrNotFound.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.damage()
			err := s.Fetch(ctx, "k1", t.TempDir())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("fetch of a %s entry: %v, want an error saying %q", c.name, err, c.want)
			}
		})
	}
	if err := s.Fetch(ctx, "k1", t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("without its manifest the entry is %v, want not found", err)
	}
}

func TestNew(t *testing.T) {
	for _, c := range []struct{ url, err string }{
		{"http://store:8080/kernels", ""},
		{"https://store", ""},
		{"ftp://store", "http:// or https://"},
		{"store/kernels", "http:// or https://"},
		{"http://user:secret@store", "~/.netrc"},
	} {
		_, err := New(c.url)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("New(%q): %v, want %q", c.url, err, c.err)
		}
	}
}

// Two machines store one key at once, again and again, with different
// files (a build that is not byte-reproducible), while a third reads:
// every read is one whole upload, never a mix and never corrupt.
func TestStoreConcurrentWriters(t *testing.T) {
	url, _ := davtest.Start(t)
	s, err := New(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dirs := map[string]string{}
	for _, who := range []string{"a", "b"} {
		dirs[who] = t.TempDir()
		os.WriteFile(filepath.Join(dirs[who], "bzImage"), []byte(strings.Repeat(who, 200000)), 0o644)
		os.WriteFile(filepath.Join(dirs[who], "config"), []byte("built by "+who), 0o644)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, who := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := s.Put(ctx, "k", dirs[who]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	reads := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		got := t.TempDir()
		err := s.Fetch(ctx, "k", got)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("a read while two machines store: %v", err)
		}
		k, _ := os.ReadFile(filepath.Join(got, "bzImage"))
		c, _ := os.ReadFile(filepath.Join(got, "config"))
		if len(k) == 0 || string(c) != "built by "+string(k[:1]) {
			t.Fatalf("a read mixed two uploads: kernel of %q, config %q", k[:1], c)
		}
		reads++
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d whole reads during 40 concurrent stores", reads)
}
