package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// HostRootTag is the 9p mount tag under which the host shares its root
// file system (--rootfs host).
const HostRootTag = "firstbad-root"

// SetupFailedMarker, on the console, says the agent could not set up what
// the test runs on: the machine's problem, never a verdict on the kernel.
const SetupFailedMarker = "FIRSTBAD-SETUP-FAILED"

// hostRootDir is where the agent puts the host's root together.
const hostRootDir = "/hostroot"

// hostRootPath is the path of the guest's root (/ of the test's chroot)
// once mountHostRoot made it, "" before.
var hostRootPath string

// mountHostRoot makes the root the test runs in under --rootfs host: the
// host's root file system over 9p, read-only, under a tmpfs overlay (the
// test may write; nothing reaches the host), with the guest's own /proc,
// /sys, /dev, /tmp and /run, and the test and guest files copied in. The
// agent stays PID 1 in the initramfs; each run is chrooted there.
func mountHostRoot(files []string) (string, error) {
	lower, rw, root := hostRootDir+"/lower", hostRootDir+"/rw", hostRootDir+"/root"
	for _, d := range []string{lower, rw, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := syscall.Mount(HostRootTag, lower, "9p", syscall.MS_RDONLY, "trans=virtio,version=9p2000.L,msize=524288,cache=loose"); err != nil {
		return "", fmt.Errorf("mounting the host's root file system (9p tag %s): %v (the kernel needs CONFIG_9P_FS and CONFIG_NET_9P_VIRTIO)", HostRootTag, err)
	}
	if err := syscall.Mount("tmpfs", rw, "tmpfs", 0, "mode=0755"); err != nil {
		return "", fmt.Errorf("the overlay's tmpfs: %v", err)
	}
	for _, d := range []string{rw + "/upper", rw + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + rw + "/upper,workdir=" + rw + "/work"
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("the overlay on the host's root: %v (the kernel needs CONFIG_OVERLAY_FS)", err)
	}
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"devpts", "/dev/pts", "devpts"}, {"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		if err := os.MkdirAll(root+m.dst, 0o755); err != nil {
			return "", err
		}
		if err := syscall.Mount(m.src, root+m.dst, m.fs, 0, ""); err != nil {
			return "", fmt.Errorf("mounting %s in the host's root: %v", m.dst, err)
		}
	}
	for _, f := range append([]string{testPath}, files...) {
		if err := copyIn(f, root+f); err != nil {
			return "", err
		}
	}
	return root, nil
}

// copyIn copies a file of the initramfs into the guest's root.
func copyIn(src, dst string) error {
	data, err := os.ReadFile(src)
	if os.IsNotExist(err) {
		return nil // no guest test (a host test only)
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, fi.Mode().Perm())
}

// DescribeHostRoot says which root file system --rootfs host shares: this
// machine's name and release, as the report shows it.
func DescribeHostRoot() string {
	name, _ := os.Hostname()
	release := "unknown release"
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				release = strings.Trim(v, `"`)
			}
		}
	}
	return fmt.Sprintf("the root file system of %s (%s), shared read-only over 9p, with a tmpfs overlay", name, release)
}
