package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/testkernel"
)

// --rootfs host: the guest test runs on this machine's root file system
// (9p or virtiofs, read-only, a tmpfs overlay), so it has the host's programs — git
// here, which firstbad's busybox initramfs lacks — and may write without
// touching the host. A panic and a hang there are classified as in the
// initramfs, and a bisect step (the test command, on the example history)
// boots the test kernel, whose config has the mode's options.
func TestRootfsHost(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	data := filepath.Join(t.TempDir(), "data")
	os.WriteFile(data, []byte("from the host\n"), 0o644)
	probe := "/etc/firstbad-rootfs-probe"
	host := `set -e
git --version
[ -f /etc/debian_version ]
[ "$(cat /opt/firstbad/data)" = "from the host" ]
echo guest > ` + probe + `
[ "$(cat ` + probe + `)" = guest ]
mount | grep -q '^overlay on / '
`
	// A host test's SSH sessions and copies land in the guest's root too.
	hostTest := `set -e
$FIRSTBAD_SSH git --version
f=$(mktemp); trap 'rm -f "$f"' EXIT; echo from-the-host > "$f"
scp -q -F "$FIRSTBAD_SSH_CONFIG" "$f" guest:/tmp/firstbad-copy
[ "$($FIRSTBAD_SSH cat /tmp/firstbad-copy)" = from-the-host ]
$FIRSTBAD_SSH 'cd && pwd && [ -f /etc/debian_version ] && mount | grep -q "^overlay on / "'
`
	for _, c := range []struct {
		name, test string
		args       []string
		code       int
		verdict    string
		reason     string
	}{
		{"host programs", host, []string{"--guest-file", data + ":/opt/firstbad/data"}, 0, "good", "exit 0"},
		{"a host test's sessions", "exit 0", []string{"--host-test", script(t, hostTest)}, 0, "good", "host: exit 0"},
		{"a host test's sessions on microvm", microvmTest, []string{"--host-test", script(t, hostTest), "--machine", "microvm"}, 0, "good", "host: exit 0"},
		{"host programs over virtiofs", host, []string{"--guest-file", data + ":/opt/firstbad/data", "--rootfs-share", "virtiofs"}, 0, "good", "exit 0"},
		{"panic over virtiofs", "echo c > /proc/sysrq-trigger; sleep 10", []string{"--rootfs-share", "virtiofs"}, 1, "bad", "crash: Kernel panic - not syncing: sysrq triggered crash"},
		{"busybox has no git", "git --version", []string{"--rootfs", "busybox"}, 1, "bad", "exit 127"},
		{"panic", "echo c > /proc/sysrq-trigger; sleep 10", nil, 1, "bad", "crash: Kernel panic - not syncing: sysrq triggered crash"},
		{"hang", "sleep 600", []string{"--timeout", "3s"}, 1, "bad", "hang"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bootWants(t, e, append([]string{"--kernel", k.Image, "--rootfs", "host", "--guest-test", script(t, c.test)}, c.args...), c.code, c.verdict, c.reason)
		})
	}
	if _, err := os.Stat(probe); !os.IsNotExist(err) {
		t.Errorf("the guest's write reached the host: %s (%v)", probe, err)
	}
	for _, via := range []string{"9p", "virtiofs"} {
		res := e.run("--json", "test", "--repo", k.Repo, "tip", "--rootfs", "host", "--rootfs-share", via, "--kconfig", k.Fragment,
			"--guest-test", script(t, "git --version && cat /proc/sys/kernel/sched_autogroup_enabled | grep -q 1"))
		var r bootResult
		if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || res.code != 1 || r.Verdict != "bad" || r.Reason != "exit 1" {
			t.Fatalf("test tip --rootfs host over %s: exit %d verdict %q reason %q (%v); want bad, exit 1 (tip turns autogrouping off)\n%s", via, res.code, r.Verdict, r.Reason, err, res.stderr)
		}
		if !strings.Contains(r.GuestRoot, "over "+via) {
			t.Errorf("over %s: the evidence says the guest ran on %q", via, r.GuestRoot)
		}
		console, _ := os.ReadFile(r.ConsoleLog)
		if want := "mount_tag=" + guest.RootTag; (via == "9p") != strings.Contains(string(console), want) {
			t.Errorf("over %s: the QEMU command line has %q: %v", via, want, via == "9p")
		}
		if want := "vhost-user-fs-pci"; (via == "virtiofs") != strings.Contains(string(console), want) {
			t.Errorf("over %s: the QEMU command line has %q: %v", via, want, via == "virtiofs")
		}
	}
}

// --rootfs debian: and image:. A Debian root made for the run (minbase
// plus python3, which the initramfs lacks, and systemd), shared like the
// host's (over 9p and virtiofs); then that root as the user's own disk
// image, partitioned, raw and qcow2, attached read-only: each file byte
// for byte the same afterwards. In both modes a panic and a hang are
// classified as ever, a disk without a root is the machine's problem
// (never a verdict), and the example history's tip is a bisect step on the
// test kernel as it is (the modes' options are in it: no build). With
// --init system the image's own init (systemd) boots and runs the test as
// a service, a host test reaching the booted system (one boot: ~35 s of
// systemd under TCG; crashes read the same serial console as ever).
func TestRootfsDebianAndImage(t *testing.T) {
	k := testkernel.Get(t)
	e := newEnv(t)
	e.cache = k.CacheDir
	debian := "debian:bookworm+python3-minimal,systemd-sysv"
	test := `set -e
python3 -c 'import sys; print("python", sys.version_info[0])'
grep -q '^12' /etc/debian_version
echo guest > /etc/firstbad-probe
[ "$(cat /etc/firstbad-probe)" = guest ]
mount | grep -q '^overlay on / '
`
	r := bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", debian, "--guest-test", script(t, test)}, 0, "good", "exit 0")
	if !strings.Contains(r.GuestRoot, "Debian bookworm (minbase + python3-minimal, systemd-sysv)") || !strings.Contains(r.GuestRoot, "dpkg status sha256 ") {
		t.Errorf("guest_root = %q, want the Debian root and its dpkg status hash", r.GuestRoot)
	}
	root := strings.TrimSuffix(r.GuestRoot[strings.LastIndex(r.GuestRoot, ": ")+2:], ", shared read-only over 9p with a tmpfs overlay")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/python3")); err != nil {
		t.Fatalf("the root named in guest_root (%s): %v", root, err)
	}
	// The same root over virtiofs.
	if r := bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", debian, "--rootfs-share", "virtiofs", "--guest-test", script(t, test)}, 0, "good", "exit 0"); !strings.Contains(r.GuestRoot, "over virtiofs (virtiofsd ") {
		t.Errorf("guest_root = %q, want the root shared over virtiofs", r.GuestRoot)
	}
	raw, qcow := diskImages(t, root)
	sums := map[string]string{raw: fileSum(t, raw), qcow: fileSum(t, qcow)}
	for _, img := range []string{raw, qcow} {
		r := bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", "image:" + img, "--guest-test", script(t, test)}, 0, "good", "exit 0")
		if !strings.Contains(r.GuestRoot, "sha256 "+sums[img]) {
			t.Errorf("guest_root = %q, want the image's sha256 %s", r.GuestRoot, sums[img])
		}
	}
	for _, mode := range []string{debian, "image:" + qcow} {
		bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", mode, "--guest-test", script(t, "echo c > /proc/sysrq-trigger; sleep 10")},
			1, "bad", "crash: Kernel panic - not syncing: sysrq triggered crash")
		bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", mode, "--guest-test", script(t, "sleep 600"), "--timeout", "3s"}, 1, "bad", "hang")
		res := e.run("--json", "test", "--repo", k.Repo, "tip", "--rootfs", mode, "--kconfig", k.Fragment,
			"--guest-test", script(t, "python3 -c 'print(open(\"/proc/sys/kernel/sched_autogroup_enabled\").read())' | grep -q 1"))
		var st bootResult
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || res.code != 1 || st.Verdict != "bad" || st.Reason != "exit 1" {
			t.Fatalf("test tip --rootfs %s: exit %d verdict %q reason %q (%v); want bad, exit 1 (tip turns autogrouping off)\n%s", mode, res.code, st.Verdict, st.Reason, err, res.stderr)
		}
		if st.BuildS != nil && *st.BuildS > 120 {
			t.Errorf("test tip --rootfs %s built for %.0f s: the mode's options should leave the test kernel as it is", mode, *st.BuildS)
		}
	}
	// --init system: systemd is PID 1, the test one of its services, the
	// host test's session in the booted system.
	sysTest := `set -e
[ "$(cat /proc/1/comm)" = systemd ]
python3 -c 'print("python", 6 * 7)'
echo guest > /etc/firstbad-probe`
	sysHost := `set -e
[ "$($FIRSTBAD_SSH cat /proc/1/comm)" = systemd ]
$FIRSTBAD_SSH systemctl is-active firstbad-agent.service`
	bootWants(t, e, []string{"--kernel", k.Image, "--rootfs", "image:" + qcow, "--init", "system", "--guest-test", script(t, sysTest),
		"--host-test", script(t, sysHost)}, 0, "good", "guest: exit 0; host: exit 0")
	for img, sum := range sums {
		if got := fileSum(t, img); got != sum {
			t.Errorf("%s changed: sha256 %s, was %s", img, got, sum)
		}
	}

	blank := filepath.Join(t.TempDir(), "blank.img")
	os.WriteFile(blank, make([]byte, 8<<20), 0o644)
	for _, c := range []struct {
		rootfs string
		code   int
		want   string
	}{
		{"image:" + blank, 129, "no root file system on the disk image: tried /dev/vda (no file system of ext4"},
		{"image:" + filepath.Join(t.TempDir(), "missing.img"), 128, "no such file or directory"},
		{"debian:bookworm+no-such-package-firstbad", 129, "mmdebstrap bookworm"},
	} {
		res := e.run("boot", "--kernel", k.Image, "--rootfs", c.rootfs, "--guest-test", script(t, "exit 0"))
		if res.code != c.code || !strings.Contains(res.stderr, c.want) {
			t.Errorf("--rootfs %s: exit %d, want %d and %q; stderr:\n%s", c.rootfs, res.code, c.code, c.want, res.stderr)
		}
	}
}

// diskImages makes a disk image of the root dir as a user would have
// one: an MBR with one Linux partition at 1 MiB holding ext4, raw, and
// the same as qcow2.
func diskImages(t *testing.T, root string) (raw, qcow string) {
	t.Helper()
	dir := t.TempDir()
	raw, qcow = filepath.Join(dir, "disk.img"), filepath.Join(dir, "disk.qcow2")
	for _, c := range [][]string{
		{"truncate", "-s", "1G", raw},
		{"sh", "-c", "echo 'start=2048, type=83' | sfdisk -q " + raw},
		{"mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", root, raw, "1046528K"},
		{"qemu-img", "convert", "-O", "qcow2", raw, qcow},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	return raw, qcow
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
