package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstbad/firstbad/internal/testkernel"
)

const libvirtURI = "qemu:///system"

func virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-q", "-c", libvirtURI}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// startLibvirt makes sure libvirt's daemons run, starting them the way
// this machine needs (no systemd; libvirtd's capability probe hangs on a
// paravirtual /dev/kvm, so it runs where that device is hidden) and
// stopping after the test what it started.
func startLibvirt(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the libvirt target test needs root (it uses qemu:///system)")
	}
	for _, bin := range []string{"virsh", "libvirtd", "virtlogd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("the libvirt target test needs %s: run ./setup.sh (libvirt-daemon-system, libvirt-clients)", bin)
		}
	}
	if _, err := virsh("version"); err == nil {
		return
	}
	var started []string
	if exec.Command("pgrep", "-x", "virtlogd").Run() != nil {
		if out, err := exec.Command("virtlogd", "-d").CombinedOutput(); err != nil {
			t.Fatalf("starting virtlogd: %v\n%s", err, out)
		}
		started = append(started, "/run/virtlogd.pid")
	}
	start := exec.Command("libvirtd", "-d")
	if _, err := os.Stat("/dev/kvm"); err == nil {
		start = exec.Command("unshare", "-m", "sh", "-c", "mount --bind /dev/null /dev/kvm && exec libvirtd -d")
	}
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("starting libvirtd: %v\n%s", err, out)
	}
	started = append(started, "/run/libvirtd.pid")
	t.Cleanup(func() {
		for _, pidfile := range started {
			if b, err := os.ReadFile(pidfile); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := virsh("version")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd did not answer within 30 s: %s", out)
		}
	}
}

// testDomain defines a small domain the way a user would (a disk-less
// q35 machine with a serial console and a NIC) and undefines it after.
func testDomain(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("firstbad-test-%d", os.Getpid())
	xml := filepath.Join(t.TempDir(), "domain.xml")
	os.WriteFile(xml, []byte(`<domain type='qemu'>
  <name>`+name+`</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <interface type='user'><model type='virtio'/></interface>
  </devices>
</domain>
`), 0o644)
	virsh("destroy", name)
	virsh("undefine", name)
	if out, err := virsh("define", xml); err != nil {
		t.Fatalf("defining the test domain: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		virsh("destroy", name)
		virsh("undefine", name)
	})
	return name
}

func TestLibvirtTarget(t *testing.T) {
	k := testkernel.Get(t)
	startLibvirt(t)
	dom := testDomain(t)
	// The host dir must be reachable by libvirt's QEMU user (t.TempDir()'s
	// are 0700).
	dir, err := os.MkdirTemp("/var/tmp", "firstbad-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	tgt := "libvirt:///" + dom + "?dir=" + dir
	e := newEnv(t)
	e.cache = k.CacheDir
	boot := func(extra ...string) (bootResult, result) {
		res := e.run(append([]string{"--json", "-v", "boot", "--kernel", k.Image, "--target", tgt}, extra...)...)
		var r bootResult
		json.Unmarshal([]byte(res.stdout), &r)
		return r, res
	}
	original, _ := virsh("dumpxml", "--inactive", dom)
	// After every run the domain is off and its own definition is back.
	restored := func(t *testing.T, what string) {
		t.Helper()
		if st, _ := virsh("domstate", dom); st != "shut off" {
			t.Errorf("after %s the domain is %q, want shut off", what, st)
		}
		if now, _ := virsh("dumpxml", "--inactive", dom); now != original {
			t.Errorf("after %s the domain's definition is not its own again:\n%s", what, now)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "boots", "*")); len(left) > 0 {
			t.Errorf("after %s boot dirs are left on the host: %v", what, left)
		}
	}

	t.Run("good, bad, hang, panic", func(t *testing.T) {
		for _, c := range []struct{ name, test, timeout, verdict, reason string }{
			{"good", "uname -r; exit 0", "1m", "good", "exit 0"},
			{"bad", "exit 3", "1m", "bad", "exit 3"},
			{"hang", "sleep 600", "3s", "bad", "hang"},
			{"panic", "echo c > /proc/sysrq-trigger; sleep 10", "1m", "bad", "crash: Kernel panic - not syncing: sysrq triggered crash"},
		} {
			r, res := boot("--guest-test", script(t, c.test), "--timeout", c.timeout)
			if r.Verdict != c.verdict || !strings.Contains(r.Reason, c.reason) {
				t.Errorf("%s in the libvirt domain: exit %d verdict %q reason %q, want %s %q\n%s", c.name, res.code, r.Verdict, r.Reason, c.verdict, c.reason, res.stderr)
				continue
			}
			console, _ := os.ReadFile(r.ConsoleLog)
			if !strings.Contains(string(console), "libvirt domain "+dom) || !strings.Contains(string(console), "Linux version") {
				t.Errorf("%s: the console log does not name the domain or lacks the guest's console:\n%s", c.name, tailText(string(console), 5))
			}
			restored(t, c.name)
		}
		// The kernel crossed once: one kernel and one initramfs base in
		// the host's cache.
		if cached, _ := filepath.Glob(filepath.Join(dir, "kernels", "*")); len(cached) != 2 {
			t.Errorf("the host's cache holds %v, want one kernel and one initramfs base", cached)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		good := script(t, "exit 0")
		for _, c := range []struct {
			name   string
			args   []string
			code   int
			stderr string
		}{
			{"unknown domain", []string{"--target", "libvirt:///no-such-domain-here"}, 129, "no domain no-such-domain-here"},
			{"not a target", []string{"--target", "libvirt://"}, 128, "want libvirt:///DOMAIN"},
			{"host-side test", []string{"--target", tgt, "--host-test", good}, 128, "--host-test needs a port forwarded"},
		} {
			res := e.run(append([]string{"boot", "--kernel", k.Image, "--guest-test", good}, c.args...)...)
			if res.code != c.code || !strings.Contains(res.stderr, c.stderr) {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant exit %d and %q", c.name, res.code, res.stderr, c.code, c.stderr)
			}
		}
		restored(t, "bad input")
	})

	t.Run("domain running something else", func(t *testing.T) {
		// Started with its own definition (no kernel, no disk: the
		// firmware looks for a boot device for ever).
		if out, err := virsh("start", dom); err != nil {
			t.Fatalf("starting the domain: %v\n%s", err, out)
		}
		_, res := boot("--guest-test", script(t, "exit 0"))
		if res.code != 129 || !strings.Contains(res.stderr, "--take-over-domain") {
			t.Errorf("a busy domain: exit %d, want 129 and a message naming --take-over-domain\n%s", res.code, res.stderr)
		}
		if st, _ := virsh("domstate", dom); st != "running" {
			t.Errorf("firstbad stopped a domain it was told not to take over: %q", st)
		}
		if r, res := boot("--guest-test", script(t, "exit 0"), "--take-over-domain"); r.Verdict != "good" {
			t.Errorf("with --take-over-domain: exit %d verdict %q\n%s", res.code, r.Verdict, res.stderr)
		}
		restored(t, "a take-over")
	})

	t.Run("on a VM host over SSH", func(t *testing.T) {
		// The same domain, driven through a real sshd as a remote host
		// would be: virsh runs there, the kernel crosses the connection.
		h := startVMHost(t)
		remoteDir := filepath.Join(dir, "over-ssh")
		os.Mkdir(remoteDir, 0o755)
		for _, c := range []struct{ test, verdict string }{{"exit 0", "good"}, {"exit 1", "bad"}} {
			r, res := boot("--target", "libvirt://vmhost/"+dom+"?dir="+remoteDir, "--ssh-config", h.config, "--guest-test", script(t, c.test))
			console, _ := os.ReadFile(r.ConsoleLog)
			if r.Verdict != c.verdict || !strings.Contains(string(console), "firstbad: libvirt://vmhost/"+dom) {
				t.Errorf("%q over SSH: exit %d verdict %q, want %s\n%s\n%s", c.test, res.code, r.Verdict, c.verdict, res.stderr, tailText(string(console), 5))
			}
		}
		if cached, _ := filepath.Glob(filepath.Join(remoteDir, "kernels", "*")); len(cached) != 2 {
			t.Errorf("the host's cache holds %v, want one kernel and one initramfs base", cached)
		}
		restored(t, "boots over SSH")
	})

	t.Run("controller killed", func(t *testing.T) {
		cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "boot", "--kernel", k.Image,
			"--target", tgt, "--guest-test", script(t, "sleep 600"), "--timeout", "10m")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			if st, _ := virsh("domstate", dom); st == "running" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the domain never ran")
			}
		}
		time.Sleep(2 * time.Second)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// The host-side watchdog sees the controller gone and destroys
		// the domain; its definition waits for the next start.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if st, _ := virsh("domstate", dom); st == "shut off" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the domain still runs 15 s after its controller was killed")
			}
		}
		r, res := boot("--guest-test", script(t, "exit 0"))
		if r.Verdict != "good" || !strings.Contains(res.stderr, "restored the domain's own definition") {
			t.Errorf("the next start: exit %d verdict %q, want good after restoring the definition\n%s", res.code, r.Verdict, res.stderr)
		}
		restored(t, "the run after a killed controller")
	})

	t.Run("bisect", func(t *testing.T) {
		_, hosts := bisectOn(t, e, k, fmt.Sprintf("target = %q\n", tgt), tgt)
		if len(hosts) != 1 || !strings.Contains(hosts[0], "libvirt domain "+dom) {
			t.Errorf("the report's target hosts: %q", hosts)
		}
		restored(t, "a bisect")
	})
}
