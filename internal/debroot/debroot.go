// Package debroot makes Debian root file systems with mmdebstrap from
// Debian's packages: once per release and package list, by one process at
// a time, renamed into place only when whole. Build roots (another
// release's toolchain) and guest roots (--rootfs debian:) are both made
// here.
package debroot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/outcome"
)

// made marks a finished root, with how it was made.
const made = ".firstbad-root"

// Made says how a root came to be.
type Made struct {
	Release  string    `json:"release"`
	Variant  string    `json:"variant,omitempty"`
	Packages []string  `json:"packages"`
	Created  time.Time `json:"created"`
	Seconds  float64   `json:"seconds"`
	Bytes    int64     `json:"bytes"`
}

// Want is a root to make: a release, mmdebstrap's variant (apt, minbase...)
// and the packages on top.
type Want struct {
	Release  string
	Variant  string
	Packages []string
	// What names the root in messages ("build root", "guest root").
	What string
}

// Dir is where the root w lives under dir: named by its release and a
// hash of its variant and package list, so another list is another root.
// (apt's variant, the first one made, stays out of the hash: roots made
// before keep their names.)
func Dir(dir string, w Want) string {
	key := w.Release + "\x00" + strings.Join(w.Packages, ",")
	if w.Variant != "apt" {
		key += "\x00" + w.Variant
	}
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(dir, w.Release+"-"+hex.EncodeToString(sum[:6]))
}

// Ensure returns the root w under dir, made first (with mmdebstrap, a few
// minutes) if it is not there. Another firstbad making the same root is
// waited for.
func Ensure(ctx context.Context, dir string, w Want, log *slog.Logger) (string, error) {
	root := Dir(dir, w)
	l, err := lock.Acquire(ctx, root+".lock", func(h *lock.HeldError) {
		log.Info("waiting for another firstbad making the same "+w.What, "root", root, "pid", h.PID)
	})
	if err != nil {
		return "", err
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(root, made)); err != nil {
		if err := makeRoot(ctx, w, root, log); err != nil {
			return "", err
		}
	}
	_ = os.Chtimes(root, time.Now(), time.Now()) // last used, for gc
	return root, nil
}

// makeRoot runs mmdebstrap into a temporary dir and renames it into
// place: a killed run leaves no half-made root that looks whole.
func makeRoot(ctx context.Context, w Want, dir string, log *slog.Logger) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return outcome.InfraErr(w.What, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return outcome.InfraErr(w.What, err)
	}
	log.Warn("making a "+w.What+" (once; a few minutes)", "release", w.Release, "packages", strings.Join(w.Packages, ","), "root", dir)
	start := time.Now()
	args := []string{"--variant=" + w.Variant, "--components=main", w.Release, tmp, Mirror()}
	if len(w.Packages) > 0 {
		args = append([]string{"--include=" + strings.Join(w.Packages, ",")}, args...)
	}
	out, err := exec.CommandContext(ctx, "mmdebstrap", args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return outcome.InfraErr(w.What, fmt.Errorf("mmdebstrap %s: %v\n%s", w.Release, err, tail(string(out), 15)))
	}
	m := Made{Release: w.Release, Variant: w.Variant, Packages: w.Packages, Created: time.Now().UTC(),
		Seconds: time.Since(start).Seconds(), Bytes: size(tmp)}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, made), data, 0o644); err != nil {
		return outcome.InfraErr(w.What, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return outcome.InfraErr(w.What, err)
	}
	log.Warn(w.What+" ready", "release", w.Release, "seconds", int(m.Seconds), "MiB", m.Bytes>>20)
	return nil
}

// ReadMade is how the root at dir was made (nil if it is not firstbad's).
func ReadMade(dir string) *Made {
	data, err := os.ReadFile(filepath.Join(dir, made))
	if err != nil {
		return nil
	}
	var m Made
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return &m
}

// Mirror is the Debian mirror the host's apt uses (a root is made from the
// same place).
func Mirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:":
				return fields[1]
			case len(fields) >= 3 && fields[0] == "deb" && strings.HasPrefix(fields[1], "http"):
				return fields[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// size is the bytes of the files under dir.
func size(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
