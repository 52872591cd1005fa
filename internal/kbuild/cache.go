package kbuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/lock"
)

// DefaultCacheSize bounds the artifact cache unless told otherwise.
const DefaultCacheSize = 4 << 30

// Artifact is a built kernel in the cache.
type Artifact struct {
	Kernel  string    `json:"-"`
	Config  string    `json:"-"`
	Modules string    `json:"-"` // modules.tar, if the build kept modules
	Version string    `json:"version"`
	Release string    `json:"release"`
	Commit  string    `json:"commit"`
	Stored  time.Time `json:"stored"`
	// FromStore: this Get brought it from the shared artifact store.
	FromStore bool `json:"-"`
}

// Cache is the content-addressed artifact cache: one directory per key
// holding bzImage, config and meta.json. Entries appear by atomic rename, so
// two firstbad processes can share it; the least recently used go first
// when it outgrows its limit.
type Cache struct {
	Dir   string
	Limit int64
	// Store, if set, is a shared store behind this cache: a miss here is
	// looked up there, and what is stored here is shared there.
	Store *artstore.Store
	Log   *slog.Logger
	// corrupt are keys whose entry in the store failed its check: the
	// local build replaces it there.
	corrupt map[string]bool
}

func (c *Cache) entry(key string) string { return filepath.Join(c.Dir, key) }

// Get returns the artifact for key, marking it used; one the cache lacks
// comes from the shared store, if it has it whole and intact.
func (c *Cache) Get(key string) (Artifact, bool) {
	dir := c.entry(key)
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	fetched := false
	if err != nil && c.fetch(key) {
		fetched = true
		data, err = os.ReadFile(filepath.Join(dir, "meta.json"))
	}
	if err != nil {
		return Artifact{}, false
	}
	var a Artifact
	if json.Unmarshal(data, &a) != nil {
		return Artifact{}, false
	}
	a.FromStore = fetched
	a.Kernel, a.Config = filepath.Join(dir, "bzImage"), filepath.Join(dir, "config")
	if _, err := os.Stat(a.Kernel); err != nil {
		return Artifact{}, false
	}
	if m := filepath.Join(dir, "modules.tar"); fileExists(m) {
		a.Modules = m
	}
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
	return a, true
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Put stores a built kernel under key: files maps the entry's names
// (bzImage, config, and for a machine modules.tar and System.map) to the
// files to copy.
func (c *Cache) Put(key string, a Artifact, files map[string]string) (Artifact, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return a, err
	}
	tmp, err := os.MkdirTemp(c.Dir, ".tmp-"+key+"-")
	if err != nil {
		return a, err
	}
	defer os.RemoveAll(tmp)
	for name, src := range files {
		if err := copyFile(src, filepath.Join(tmp, name)); err != nil {
			return a, err
		}
	}
	a.Stored = time.Now().UTC()
	if err := writeJSON(filepath.Join(tmp, "meta.json"), a); err != nil {
		return a, err
	}
	if err := os.Rename(tmp, c.entry(key)); err != nil {
		// Another process stored the same key first: theirs is as good,
		// unless it lacks a file this one has (an older firstbad's
		// entry): then this one replaces it.
		if old := tmp + ".old"; !c.complete(key, files) && os.Rename(c.entry(key), old) == nil {
			err = os.Rename(tmp, c.entry(key))
			os.RemoveAll(old)
		}
		if _, ok := c.Get(key); !ok {
			return a, err
		}
	}
	c.evict(key)
	got, ok := c.Get(key)
	if !ok {
		return a, fmt.Errorf("artifact %s vanished after storing", key)
	}
	c.Share(key)
	return got, nil
}

// fetch brings the entry for key from the shared store into the cache and
// says whether it did. A store that fails, or an entry that is partial or
// corrupt, is a warning: the kernel is built here instead.
func (c *Cache) fetch(key string) bool {
	if c.Store == nil {
		return false
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return false
	}
	tmp, err := os.MkdirTemp(c.Dir, ".fetch-"+key+"-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	err = c.Store.Fetch(context.Background(), key, tmp)
	switch {
	case errors.Is(err, artstore.ErrNotFound):
		return false
	case err != nil:
		if c.corrupt == nil {
			c.corrupt = map[string]bool{}
		}
		c.corrupt[key] = true
		c.warn("the artifact store's copy is unusable: building instead", "key", key, "err", err)
		return false
	}
	if !fileExists(filepath.Join(tmp, "meta.json")) || !fileExists(filepath.Join(tmp, "bzImage")) {
		c.warn("the artifact store's entry lacks meta.json or bzImage: building instead", "key", key)
		return false
	}
	if err := os.Rename(tmp, c.entry(key)); err != nil && !fileExists(filepath.Join(c.entry(key), "meta.json")) {
		return false
	}
	if c.Log != nil {
		c.Log.Info("kernel from the artifact store", "key", key, "store", c.Store.String(), "seconds", time.Since(start).Round(time.Millisecond).Seconds())
	}
	return true
}

// Share puts the entry for key in the shared store unless the store has
// it intact already (a good entry is never overwritten). Failures are
// warnings: sharing never fails a build.
func (c *Cache) Share(key string) {
	if c.Store == nil {
		return
	}
	ctx := context.Background()
	if has, err := c.Store.Has(ctx, key); err != nil || (has && !c.corrupt[key]) {
		if err != nil {
			c.warn("the artifact store cannot be read: not sharing", "key", key, "err", err)
		}
		return
	}
	if err := c.Store.Put(ctx, key, c.entry(key)); err != nil {
		c.warn("sharing the kernel in the artifact store failed", "key", key, "err", err)
		return
	}
	delete(c.corrupt, key)
}

func (c *Cache) warn(msg string, args ...any) {
	if c.Log != nil {
		c.Log.Warn(msg, args...)
	}
}

// complete says whether the entry for key has every file of files.
func (c *Cache) complete(key string, files map[string]string) bool {
	for name := range files {
		if !fileExists(filepath.Join(c.entry(key), name)) {
			return false
		}
	}
	return true
}

// evict removes least recently used entries (never keep) over the limit.
func (c *Cache) evict(keep string) {
	limit := c.Limit
	if limit <= 0 {
		limit = DefaultCacheSize
	}
	l, err := lock.TryAcquire(filepath.Join(c.Dir, ".evict.lock"))
	if err != nil {
		return // another process is evicting
	}
	defer l.Release()
	entries, _ := os.ReadDir(c.Dir)
	type ent struct {
		name string
		size int64
		used time.Time
	}
	var all []ent
	var total int64
	for _, e := range entries {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		size := dirSize(filepath.Join(c.Dir, e.Name()))
		all = append(all, ent{e.Name(), size, fi.ModTime()})
		total += size
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= limit {
			break
		}
		if e.name == keep {
			continue
		}
		if os.RemoveAll(filepath.Join(c.Dir, e.name)) == nil {
			total -= e.size
		}
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
