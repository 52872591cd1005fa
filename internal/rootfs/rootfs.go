// Package rootfs is what the guest test runs on (--rootfs): firstbad's
// busybox initramfs (the default, the fastest), the host's root file
// system, the user's own disk image, or a Debian root made for the run.
// Every mode but busybox boots firstbad's initramfs too: its agent stays
// PID 1, puts the root together read-only under a tmpfs overlay and runs
// each test chrooted there, so the verdicts, crashes and hangs are
// classified as ever.
package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/debroot"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/outcome"
)

// Spec is what the user asked for with --rootfs (and --rootfs-share).
type Spec struct {
	Kind     string   // busybox, host, image or debian
	Image    string   // image: the file, absolute
	Release  string   // debian: the release
	Packages []string // debian: packages on top of minbase, sorted
	// Via is how a shared root (host, debian:) reaches the guest: 9p
	// (the default) or virtiofs.
	Via string
}

// How a shared root reaches the guest (--rootfs-share).
const (
	Via9p       = "9p"
	ViaVirtiofs = "virtiofs"
)

// Shared says whether the root is a directory of this machine shared
// with the guest (host, debian:).
func (s Spec) Shared() bool { return s.Kind == "host" || s.Kind == "debian" }

// Usage is the flag's help: the modes and their forms.
const Usage = "what the guest test runs on: busybox (firstbad's initramfs), host (this machine's root file system over 9p, read-only), " +
	"image:FILE (your raw or qcow2 disk image, attached read-only), or debian:RELEASE[+PKG,PKG...] (a Debian root made once with mmdebstrap); " +
	"all but busybox under a tmpfs overlay the test may write to, on local QEMU"

var (
	releaseRE = regexp.MustCompile(`^[a-z]+$`)
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// Parse reads --rootfs.
func Parse(s string) (Spec, error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch {
	case s == "" || s == "busybox":
		return Spec{Kind: "busybox"}, nil
	case s == "host":
		return Spec{Kind: "host"}, nil
	case kind == "image" && arg != "":
		abs, err := filepath.Abs(arg)
		if err != nil {
			return Spec{}, outcome.InputErr("--rootfs %s: %v", s, err)
		}
		return Spec{Kind: "image", Image: abs}, nil
	case kind == "debian" && arg != "":
		rel, pkgs, _ := strings.Cut(arg, "+")
		if !releaseRE.MatchString(rel) {
			return Spec{}, outcome.InputErr("--rootfs %s: %q is not a Debian release name (bookworm, trixie...)", s, rel)
		}
		sp := Spec{Kind: "debian", Release: rel}
		if pkgs != "" {
			sp.Packages = strings.Split(pkgs, ",")
		}
		for _, p := range sp.Packages {
			if !packageRE.MatchString(p) {
				return Spec{}, outcome.InputErr("--rootfs %s: %q is not a Debian package name", s, p)
			}
		}
		slices.Sort(sp.Packages)
		sp.Packages = slices.Compact(sp.Packages)
		return sp, nil
	}
	return Spec{}, outcome.InputErr("--rootfs %q: give busybox, host, image:FILE or debian:RELEASE[+PKG,PKG...]", s)
}

func (s Spec) String() string {
	switch s.Kind {
	case "image":
		return "image:" + s.Image
	case "debian":
		if len(s.Packages) == 0 {
			return "debian:" + s.Release
		}
		return "debian:" + s.Release + "+" + strings.Join(s.Packages, ",")
	}
	return s.Kind
}

// Busybox says whether this is the default: firstbad's initramfs alone.
func (s Spec) Busybox() bool { return s.Kind == "" || s.Kind == "busybox" }

// Fragment names the kbuild fragment of the options the mode needs ("" for
// none): 9p (or FUSE and virtiofs) and overlayfs for a shared directory,
// virtio-blk, ext4 and overlayfs for a disk image.
func (s Spec) Fragment() string {
	switch {
	case s.Shared() && s.Via == ViaVirtiofs:
		return "rootfs-virtiofs"
	case s.Shared():
		return "rootfs-host"
	case s.Kind == "image":
		return "rootfs-image"
	}
	return ""
}

// Root is a guest root ready to boot.
type Root struct {
	Spec Spec
	// Share is a directory shared read-only over 9p (host: "/"; debian:
	// the root made for it), or over virtiofs when Virtiofsd is set: the
	// root virtiofsd runs from.
	Share, Virtiofsd string
	// Disk is a disk image attached read-only; Format is QEMU's name for
	// its format (raw or qcow2).
	Disk, Format string
	// Describe says what the guest ran on, for the evidence: enough to
	// run a step the same way again (the image's or the root's hash).
	Describe string
}

// Prepare makes s ready: the Debian root made (once, in the cache's
// roots), the image checked and hashed. Nil for busybox.
func Prepare(ctx context.Context, s Spec, cache cachedir.Dir, log *slog.Logger) (*Root, error) {
	switch {
	case s.Kind == "image":
		return prepareImage(s, cache.ImageSums())
	case !s.Shared():
		return nil, nil
	}
	virtiofsd, via := "", "over 9p"
	if s.Via == ViaVirtiofs {
		var err error
		if virtiofsd, err = virtiofsdRoot(ctx, cache.Roots(), log); err != nil {
			return nil, err
		}
		via = "over virtiofs (" + virtiofsdVersion(virtiofsd) + ")"
	}
	r := &Root{Spec: s, Share: "/"}
	if s.Kind == "host" {
		r.Describe = describeHost(via)
	} else {
		var err error
		if r, err = prepareDebian(ctx, s, cache.Roots(), log, via); err != nil {
			return nil, err
		}
	}
	r.Virtiofsd = virtiofsd
	return r, nil
}

// virtiofsdRoot is the root virtiofsd runs from: this machine's own when
// it has virtiofsd, else a Debian trixie root made for it once (Debian 12
// does not package virtiofsd); it runs under bwrap either way.
func virtiofsdRoot(ctx context.Context, rootsDir string, log *slog.Logger) (string, error) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		return "", outcome.InputErr("--rootfs-share virtiofs runs virtiofsd under bwrap, which is not installed: apt-get install bubblewrap (or ./setup.sh)")
	}
	if _, err := os.Stat("/usr/libexec/virtiofsd"); err == nil {
		return "/", nil
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", outcome.InputErr("--rootfs-share virtiofs: this machine has no virtiofsd, and no mmdebstrap to make a Debian root with it (apt-get install mmdebstrap, or ./setup.sh)")
	}
	w := debroot.Want{Release: "trixie", Variant: "minbase", Packages: []string{"virtiofsd"}, What: "virtiofsd root"}
	return debroot.Ensure(ctx, rootsDir, w, log)
}

// virtiofsdVersion is virtiofsd's --version in root, for the evidence.
func virtiofsdVersion(root string) string {
	out, err := exec.Command("chroot", root, "/usr/libexec/virtiofsd", "--version").Output()
	if err != nil {
		return "virtiofsd in " + root
	}
	return strings.TrimSpace(string(out)) + " in " + root
}

// prepareImage checks the image and names its format: raw or qcow2 (what
// QEMU reads without probing; other formats convert with qemu-img).
func prepareImage(s Spec, sumsDir string) (*Root, error) {
	f, err := os.Open(s.Image)
	if err != nil {
		return nil, outcome.InputErr("--rootfs image: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, outcome.InputErr("--rootfs image:%s is not a regular file", s.Image)
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	format, err := imageFormat(head[:n])
	if err != nil {
		return nil, outcome.InputErr("--rootfs image:%s: %v", s.Image, err)
	}
	sum, err := imageSum(f, fi, sumsDir)
	if err != nil {
		return nil, outcome.InfraErr("image", err)
	}
	return &Root{Spec: s, Disk: s.Image, Format: format, Describe: fmt.Sprintf(
		"the disk image %s (%s, %d MiB, sha256 %s), attached read-only; its root file system under a tmpfs overlay",
		s.Image, format, fi.Size()>>20, sum)}, nil
}

// imageSum is the sha256 of the image f, remembered under dir by its
// device, inode, size and modification time: hashing reads the whole
// image (a second per GiB here), once per change instead of once per
// step command.
func imageSum(f *os.File, fi os.FileInfo, dir string) (string, error) {
	var id string
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key := sha256.Sum256([]byte(fmt.Sprintf("%s %d %d %d %d", f.Name(), st.Dev, st.Ino, fi.Size(), fi.ModTime().UnixNano())))
		id = filepath.Join(dir, hex.EncodeToString(key[:12]))
		if data, err := os.ReadFile(id); err == nil && len(data) == 64 {
			return string(data), nil
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if id != "" && os.MkdirAll(dir, 0o755) == nil {
		_ = os.WriteFile(id, []byte(sum), 0o644) // a cache: losing it costs a rehash
	}
	return sum, nil
}

// imageFormat is the format of an image starting with head.
func imageFormat(head []byte) (string, error) {
	for _, m := range []struct{ magic, name string }{
		{"KDMV", "vmdk"}, {"conectix", "vpc"}, {"vhdxfile", "vhdx"}, {"<<< ", "vdi"},
	} {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			return "", fmt.Errorf("a %s image: convert it first (qemu-img convert -O qcow2 FILE FILE.qcow2)", m.name)
		}
	}
	switch {
	case len(head) < 512:
		return "", fmt.Errorf("too small to hold a file system")
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return "qcow2", nil
	}
	return "raw", nil
}

// prepareDebian makes (once) the root of a release with the packages:
// mmdebstrap's minbase variant (essential packages and apt) plus them.
func prepareDebian(ctx context.Context, s Spec, rootsDir string, log *slog.Logger, via string) (*Root, error) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, outcome.InputErr("--rootfs %s: mmdebstrap not found (apt-get install mmdebstrap, or ./setup.sh)", s)
	}
	w := debroot.Want{Release: s.Release, Variant: "minbase", Packages: s.Packages, What: "guest root"}
	dir, err := debroot.Ensure(ctx, rootsDir, w, log)
	if err != nil {
		return nil, err
	}
	desc := fmt.Sprintf("Debian %s (minbase", s.Release)
	if len(s.Packages) > 0 {
		desc += " + " + strings.Join(s.Packages, ", ")
	}
	desc += ")"
	if m := debroot.ReadMade(dir); m != nil {
		desc += fmt.Sprintf(" made with mmdebstrap on %s", m.Created.Format("2006-01-02"))
	}
	if status, err := os.ReadFile(filepath.Join(dir, "var/lib/dpkg/status")); err == nil {
		sum := sha256.Sum256(status)
		desc += ", dpkg status sha256 " + hex.EncodeToString(sum[:])
	}
	desc += ": " + dir + ", shared read-only " + via + " with a tmpfs overlay"
	return &Root{Spec: s, Share: dir, Describe: desc}, nil
}

// describeHost says which root file system --rootfs host shares, and
// via what: this machine's name and release.
func describeHost(via string) string {
	name, _ := os.Hostname()
	release := "unknown release"
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				release = strings.Trim(v, `"`)
			}
		}
	}
	return fmt.Sprintf("the root file system of %s (%s), shared read-only %s, with a tmpfs overlay", name, release, via)
}

// Settings is what the agent makes the root from (guest.Settings.Root):
// "" for busybox.
func (r *Root) Settings() string {
	switch {
	case r == nil:
		return ""
	case r.Disk != "":
		return guest.RootDisk
	case r.Virtiofsd != "":
		return guest.RootVirtiofs
	}
	return guest.RootShare
}
