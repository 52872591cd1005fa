// Package guest builds the initramfs a candidate kernel boots with, and holds
// the in-guest agent that runs the test and reports back.
package guest

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// BusyboxPaths are where a static busybox is looked for.
var BusyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// FindBusybox returns a static busybox or an error saying what to install.
func FindBusybox() (string, error) {
	for _, p := range BusyboxPaths {
		if err := CheckStatic(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no static busybox found (looked in %s): install it with: apt-get install busybox-static", strings.Join(BusyboxPaths, ", "))
}

// CheckStatic fails unless path is a statically linked ELF executable, the
// only kind that runs in an initramfs with no libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: it cannot run as the guest's /init (build firstbad with CGO_ENABLED=0, as setup.sh does)", path)
		}
	}
	return nil
}

// File is one extra file for the guest: a host path and where it goes.
type File struct {
	Src  string
	Dest string
}

// ParseFile reads a --guest-file SRC[:DEST] argument (DEST defaults to
// /root/<base name of SRC>).
func ParseFile(arg string) (File, error) {
	src, dest, ok := strings.Cut(arg, ":")
	if !ok || dest == "" {
		dest = "/root/" + filepath.Base(src)
	}
	if !path.IsAbs(dest) {
		return File{}, fmt.Errorf("--guest-file %q: the destination must be an absolute path", arg)
	}
	if fi, err := os.Stat(src); err != nil || fi.IsDir() {
		return File{}, fmt.Errorf("--guest-file %q: %s is not a readable file", arg, src)
	}
	return File{Src: src, Dest: path.Clean(dest)}, nil
}

// Settings are what the agent reads at /firstbad/settings.json.
type Settings struct {
	Nonce    string            `json:"nonce"`
	Commit   string            `json:"commit"`
	Step     int               `json:"step"`
	Runs     int               `json:"runs"`
	FirstRun int               `json:"first_run"` // number of the first run (for --reboot-each)
	TimeoutS float64           `json:"timeout_s"`
	Shell    bool              `json:"shell"`
	Env      map[string]string `json:"env,omitempty"`
	// SSHKey, when set, is the one public key (authorized_keys format)
	// the agent's SSH server accepts; the host holds its private half.
	SSHKey string `json:"ssh_key,omitempty"`
	// WaitGo makes the agent wait, before run N, until the host creates
	// GoFile(N) (over SSH): a host-side test and the guest test start
	// together. NoGuestTest makes each run's guest half a plain success.
	WaitGo      bool `json:"wait_go,omitempty"`
	NoGuestTest bool `json:"no_guest_test,omitempty"`
	// Root, if set, is what the test's root is made of (RootShare,
	// RootVirtiofs, RootDisk; --rootfs); Files are the guest files'
	// paths, copied in there.
	Root string `json:"root,omitempty"`
	// Init, InitSystem, hands the boot over to the root's own init.
	Init  string   `json:"init,omitempty"`
	Files []string `json:"files,omitempty"`
}

// GoFile is the file whose creation starts run n when Settings.WaitGo.
func GoFile(n int) string { return goPrefix + strconv.Itoa(n) }

const goPrefix = "/run/firstbad-go-"

const (
	settingsPath = "/firstbad/settings.json"
	testPath     = "/firstbad/test"
)

type writer struct {
	w   cpio.RecordWriter
	ino uint64
}

func (w *writer) add(r cpio.Record) error {
	w.ino++
	r.Ino = w.ino
	r = cpio.MakeReproducible(r)
	r.NLink = 1
	return w.w.WriteRecord(r)
}

// Base writes the part of the initramfs shared by every boot: directories,
// device nodes the kernel needs before devtmpfs, busybox with its applet
// links, and the agent (the firstbad binary) as /init. It is reproducible:
// the same inputs give the same bytes.
func Base(out io.Writer, agent, busybox string) error {
	if err := CheckStatic(agent); err != nil {
		return err
	}
	if err := CheckStatic(busybox); err != nil {
		return err
	}
	w := &writer{w: cpio.Newc.Writer(out)}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "etc", "root", "firstbad", "mnt"} {
		if err := w.add(cpio.Directory(d, 0o755)); err != nil {
			return err
		}
	}
	for _, r := range []cpio.Record{cpio.CharDev("dev/console", 0o600, 5, 1), cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.CharDev("dev/ttyS0", 0o600, 4, 64)} {
		if err := w.add(r); err != nil {
			return err
		}
	}
	for _, f := range []struct{ src, dest string }{{busybox, "bin/busybox"}, {agent, "init"}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		if err := w.add(cpio.StaticFile(f.dest, string(data), 0o755)); err != nil {
			return err
		}
	}
	applets, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %v", busybox, err)
	}
	seen := map[string]bool{"bin/busybox": true}
	for _, a := range strings.Fields(string(applets)) {
		a = strings.TrimPrefix(a, "/")
		if seen[a] || a == "init" || a == "linuxrc" || !slices.Contains([]string{"bin", "sbin", "usr/bin", "usr/sbin"}, path.Dir(a)) {
			continue
		}
		seen[a] = true
		if err := w.add(cpio.Symlink(a, "/bin/busybox")); err != nil {
			return err
		}
	}
	if err := w.add(cpio.StaticFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)); err != nil {
		return err
	}
	return cpio.WriteTrailer(w.w)
}

// Overlay writes the per-boot archive appended to the base one (the kernel
// unpacks concatenated archives in order): settings, the test, extra files.
func Overlay(out io.Writer, s Settings, test string, files []File) error {
	w := &writer{w: cpio.Newc.Writer(out), ino: 1 << 20}
	for _, f := range files {
		s.Files = append(s.Files, f.Dest)
	}
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := w.add(cpio.StaticFile(strings.TrimPrefix(settingsPath, "/"), string(js), 0o644)); err != nil {
		return err
	}
	if test != "" {
		data, err := os.ReadFile(test)
		if err != nil {
			return fmt.Errorf("guest test: %v", err)
		}
		if err := w.add(cpio.StaticFile(strings.TrimPrefix(testPath, "/"), string(data), 0o755)); err != nil {
			return err
		}
	}
	// The kernel's unpacker does not create parent directories: write
	// them first, shallowest first.
	var dirs []string
	seen := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(strings.TrimPrefix(f.Dest, "/")); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	for _, d := range dirs {
		if err := w.add(cpio.Directory(d, 0o755)); err != nil {
			return err
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return fmt.Errorf("--guest-file: %v", err)
		}
		mode := uint64(0o644)
		if fi, err := os.Stat(f.Src); err == nil && fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := w.add(cpio.StaticFile(strings.TrimPrefix(f.Dest, "/"), string(data), mode)); err != nil {
			return err
		}
	}
	return cpio.WriteTrailer(w.w)
}

// Cached returns the path of the base archive for this agent and busybox,
// building it once under dir.
func Cached(dir, agent, busybox string) (string, error) {
	h := sha256.New()
	for _, p := range []string{agent, busybox} {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	name := filepath.Join(dir, "initramfs-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(name); err == nil {
		return name, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := Base(&buf, agent, busybox); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return name, os.Rename(tmp.Name(), name)
}
