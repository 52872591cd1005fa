package kbuild

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

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
}

// Cache is the content-addressed artifact cache: one directory per key
// holding bzImage, config and meta.json. Entries appear by atomic rename, so
// two firstbad processes can share it; the least recently used go first
// when it outgrows its limit.
type Cache struct {
	Dir   string
	Limit int64
}

func (c *Cache) entry(key string) string { return filepath.Join(c.Dir, key) }

// Get returns the artifact for key, marking it used.
func (c *Cache) Get(key string) (Artifact, bool) {
	dir := c.entry(key)
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return Artifact{}, false
	}
	var a Artifact
	if json.Unmarshal(data, &a) != nil {
		return Artifact{}, false
	}
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
	return got, nil
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
