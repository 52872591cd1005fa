package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RootTag is the mount tag (9p or virtiofs) under which the host shares
// the directory the test runs on (--rootfs host or debian:).
const RootTag = "firstbad-root"

// What the agent puts the test's root together from (Settings.Root).
const (
	RootShare    = "9p"       // a directory shared over 9p as RootTag
	RootVirtiofs = "virtiofs" // a directory shared over virtiofs as RootTag
	RootDisk     = "disk"     // the first virtio disk (its root file system)
)

// SetupFailedMarker, on the console, says the agent could not set up what
// the test runs on: the machine's problem, never a verdict on the kernel.
const SetupFailedMarker = "FIRSTBAD-SETUP-FAILED"

// rootDir is where the agent puts the test's root together.
const rootDir = "/firstbad-root"

// chrootPath is the path of the test's root (/ of its chroot) once
// mountRoot made it, "" under busybox.
var chrootPath string

// rootPATH is the PATH of what runs in the guest's root.
const rootPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// inRoot makes cmd run in the guest's root when there is one (the test,
// a host test's SSH sessions): chrooted, with a usual PATH, in /root if
// the root has it (else /). Other SysProcAttr settings stay.
func inRoot(cmd *exec.Cmd) {
	if chrootPath == "" {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Chroot = chrootPath
	cmd.Env = append(cmd.Env, "PATH="+rootPATH)
	cmd.Dir = "/"
	if fi, err := os.Stat(chrootPath + "/root"); err == nil && fi.IsDir() {
		cmd.Dir = "/root"
	}
}

// mountRoot makes the root the test runs in: the shared directory or the
// disk's root file system, read-only, under a tmpfs overlay (the test may
// write; nothing reaches the host or the image), with the guest's own
// /proc, /sys, /dev, /tmp and /run, and the test and guest files copied
// in. The agent stays PID 1 in the initramfs; each run is chrooted there.
func mountRoot(kind string, files []string) (string, error) {
	lower, rw, root := rootDir+"/lower", rootDir+"/rw", rootDir+"/root"
	for _, d := range []string{lower, rw, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	mountLower := map[string]func(string) error{RootShare: mountShare, RootVirtiofs: mountVirtiofs, RootDisk: mountDisk}[kind]
	if mountLower == nil {
		return "", fmt.Errorf("unknown root kind %q", kind)
	}
	if err := mountLower(lower); err != nil {
		return "", err
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
		return "", fmt.Errorf("the overlay on the guest's root: %v (the kernel needs CONFIG_OVERLAY_FS)", err)
	}
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"devpts", "/dev/pts", "devpts"}, {"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		if err := os.MkdirAll(root+m.dst, 0o755); err != nil {
			return "", err
		}
		if err := syscall.Mount(m.src, root+m.dst, m.fs, 0, ""); err != nil {
			return "", fmt.Errorf("mounting %s in the guest's root: %v", m.dst, err)
		}
	}
	for _, f := range append([]string{testPath}, files...) {
		if err := copyIn(f, root+f); err != nil {
			return "", err
		}
	}
	return root, nil
}

// mountShare mounts the host's shared directory (9p) read-only at dir.
func mountShare(dir string) error {
	if err := syscall.Mount(RootTag, dir, "9p", syscall.MS_RDONLY, "trans=virtio,version=9p2000.L,msize=524288,cache=loose"); err != nil {
		return fmt.Errorf("mounting the shared root file system (9p tag %s): %v (the kernel needs CONFIG_9P_FS and CONFIG_NET_9P_VIRTIO)", RootTag, err)
	}
	return nil
}

// mountVirtiofs mounts the host's shared directory (virtiofs) read-only
// at dir.
func mountVirtiofs(dir string) error {
	if err := syscall.Mount(RootTag, dir, "virtiofs", syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mounting the shared root file system (virtiofs tag %s): %v (the kernel needs CONFIG_FUSE_FS and CONFIG_VIRTIO_FS)", RootTag, err)
	}
	return nil
}

// mountDisk mounts the root file system of the first virtio disk
// read-only at dir: the first of its partitions (or the disk itself, when
// it has none) that mounts with a file system this kernel has and holds
// a root (/bin/sh). ext4's journal is not replayed (noload): the disk is
// read-only and an image that was not unmounted cleanly still mounts.
func mountDisk(dir string) error {
	devs, err := diskDevices("vda", 10*time.Second)
	if err != nil {
		return err
	}
	types := diskFilesystems()
	var tried []string
	for _, dev := range devs {
		why := tryRoot(dev, dir, types)
		if why == "" {
			return nil
		}
		tried = append(tried, dev+" ("+why+")")
	}
	return fmt.Errorf("no root file system on the disk image: tried %s (a file system other than ext4 needs its option in --kconfig)", strings.Join(tried, "; "))
}

// tryRoot mounts dev at dir with the first of types that fits and keeps it
// if it holds a root; else it says why not.
func tryRoot(dev, dir string, types []string) string {
	for _, fs := range types {
		opts := ""
		if fs == "ext4" || fs == "ext3" {
			opts = "noload"
		}
		if syscall.Mount(dev, dir, fs, syscall.MS_RDONLY, opts) != nil {
			continue
		}
		if _, err := os.Lstat(dir + "/bin/sh"); err == nil {
			return ""
		}
		syscall.Unmount(dir, 0)
		return fs + ", no /bin/sh"
	}
	return "no file system of " + strings.Join(types, ", ")
}

// diskDevices are the device nodes of a disk's partitions, or of the disk
// itself when it has none, once the kernel has found the disk.
func diskDevices(disk string, wait time.Duration) ([]string, error) {
	sys := "/sys/block/" + disk
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(sys); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no disk (/dev/" + disk + ") after " + wait.String() + ": the kernel needs CONFIG_VIRTIO_BLK (and CONFIG_BLOCK)")
		}
	}
	parts, _ := filepath.Glob(sys + "/" + disk + "*")
	var devs []string
	for _, p := range parts {
		devs = append(devs, "/dev/"+filepath.Base(p))
	}
	if len(devs) == 0 {
		devs = []string{"/dev/" + disk}
	}
	return devs, nil
}

// diskFilesystems are the block-device file systems this kernel has, ext4
// first.
func diskFilesystems() []string {
	data, _ := os.ReadFile("/proc/filesystems")
	types := []string{"ext4"}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 1 && f[0] != "ext4" {
			types = append(types, f[0])
		}
	}
	return types
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
