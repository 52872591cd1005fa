package main_test

import (
	"encoding/json"
	"fmt"
	"net"
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

// vmHost is a real OpenSSH sshd on this machine's loopback standing in for
// a remote VM host, with its own host key, a client key it accepts, and an
// ssh_config naming it "vmhost".
type vmHost struct {
	dir      string // keys, configs; the remote cache dir is dir/remote
	port     int
	pid      int
	config   string // ssh_config with the alias vmhost
	hostKey  string // public host key line
	clientID string // the accepted private key
}

func startVMHost(t *testing.T) *vmHost {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs OpenSSH's sshd (run ./setup.sh)")
	}
	dir := t.TempDir()
	keygen := func(name string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen("hostkey")
	keygen("id")
	keygen("other")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &vmHost{dir: dir, port: l.Addr().(*net.TCPAddr).Port, clientID: filepath.Join(dir, "id")}
	l.Close()
	pub, _ := os.ReadFile(filepath.Join(dir, "id.pub"))
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", string(pub))
	hk, _ := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	h.hostKey = strings.Join(strings.Fields(string(hk))[:2], " ")
	write("known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", h.port, h.hostKey))
	cfg := write("sshd_config", fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/hostkey
AuthorizedKeysFile %[2]s/authorized_keys
PidFile %[2]s/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
AllowTcpForwarding yes
`, h.port, dir))
	h.config = h.sshConfig(t, "ssh_config", "known_hosts", "id")
	_ = os.MkdirAll("/run/sshd", 0o755)
	if out, err := exec.Command("/usr/sbin/sshd", "-f", cfg, "-E", filepath.Join(dir, "sshd.log")).CombinedOutput(); err != nil {
		t.Fatalf("sshd: %v\n%s", err, out)
	}
	for i := 0; i < 100 && h.pid == 0; i++ {
		data, _ := os.ReadFile(filepath.Join(dir, "sshd.pid"))
		h.pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		time.Sleep(50 * time.Millisecond)
	}
	if h.pid == 0 {
		t.Fatal("sshd did not start")
	}
	t.Cleanup(func() {
		for _, p := range append(h.connections(), h.pid) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
	return h
}

// sshConfig writes an ssh_config for the alias vmhost with the given
// known_hosts and identity files (in h.dir).
func (h *vmHost) sshConfig(t *testing.T, name, knownHosts, id string) string {
	p := filepath.Join(h.dir, name)
	text := fmt.Sprintf("Host vmhost\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  UserKnownHostsFile %s\n",
		h.port, filepath.Join(h.dir, id), filepath.Join(h.dir, knownHosts))
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// connections are the sshd processes serving connections (descendants of
// the listener).
func (h *vmHost) connections() []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(data), ')')
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for pid := range parent {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == h.pid {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if strings.HasPrefix(string(cmdline), "sshd") {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

func (h *vmHost) target() string { return "ssh://vmhost?dir=" + filepath.Join(h.dir, "remote") }

// TestRemoteTarget boots the test kernel on a VM host reached over SSH (a
// real sshd): verdicts, the host named in the evidence, uploads once, a
// host-side test through the forwarded connection, a dropped connection
// retried, nothing left on the host after the controller is killed, and
// every way the host can be wrong, each with a message that says what to
// fix.
func TestRemoteTarget(t *testing.T) {
	k := testkernel.Get(t)
	h := startVMHost(t)
	e := newEnv(t)
	e.cache = k.CacheDir // the test kernels' artifacts
	boot := func(cfg string, extra ...string) result {
		return e.run(append([]string{"-v", "boot", "--kernel", k.Image, "--ssh-config", cfg}, extra...)...)
	}
	good := script(t, "uname -r; exit 0")

	t.Run("bad host", func(t *testing.T) {
		closed, _ := net.Listen("tcp", "127.0.0.1:0")
		port := closed.Addr().(*net.TCPAddr).Port
		closed.Close()
		other, _ := os.ReadFile(filepath.Join(h.dir, "other.pub"))
		os.WriteFile(filepath.Join(h.dir, "kh_wrong"), []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", h.port, strings.Join(strings.Fields(string(other))[:2], " "))), 0o600)
		os.WriteFile(filepath.Join(h.dir, "kh_empty"), nil, 0o600)
		cases := []struct {
			name, target, config string
			code                 int
			want                 string
		}{
			{"unreachable", fmt.Sprintf("ssh://127.0.0.1:%d", port), h.config, 129, "cannot reach 127.0.0.1"},
			{"host key mismatch", h.target(), h.sshConfig(t, "c1", "kh_wrong", "id"), 129, "HOST KEY MISMATCH for vmhost"},
			{"unknown host key", h.target(), h.sshConfig(t, "c2", "kh_empty", "id"), 129, "is not in " + filepath.Join(h.dir, "kh_empty")},
			{"key not authorized", h.target(), h.sshConfig(t, "c3", "known_hosts", "other"), 129, "refused user root's keys"},
			{"no QEMU there", h.target() + "&qemu=/nonexistent/qemu", h.config, 129, "has no /nonexistent/qemu"},
			{"not a target", "ssh:///nohost", h.config, 128, "--target"},
			{"unknown parameter", h.target() + "&colour=blue", h.config, 128, `unknown parameter "colour"`},
		}
		for _, c := range cases {
			res := boot(c.config, "--target", c.target, "--guest-test", good)
			if res.code != c.code || !strings.Contains(res.stderr, c.want) {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant exit %d and %q", c.name, res.code, res.stderr, c.code, c.want)
			}
		}
		// The host key mismatch names the fingerprint it was offered.
		fp, _ := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(h.dir, "hostkey.pub")).Output()
		res := boot(h.sshConfig(t, "c4", "kh_wrong", "id"), "--target", h.target(), "--guest-test", good)
		if f := strings.Fields(string(fp)); len(f) < 2 || !strings.Contains(res.stderr, f[1]) {
			t.Errorf("mismatch message lacks the offered fingerprint %q:\n%s", fp, res.stderr)
		}
	})

	t.Run("through a jump host", func(t *testing.T) {
		// The VM host reached through itself as the ProxyJump hop; a
		// config whose jump host jumps through itself is refused.
		cfg := filepath.Join(h.dir, "jump_config")
		base, _ := os.ReadFile(h.config)
		os.WriteFile(cfg, []byte(string(base)+"Host vmjump\n  HostName 127.0.0.1\n  Port "+strconv.Itoa(h.port)+"\n  ProxyJump vmhost\n"+
			"  IdentityFile "+h.clientID+"\n  UserKnownHostsFile "+filepath.Join(h.dir, "known_hosts")+"\n"+
			"Host vmloop\n  HostName 127.0.0.1\n  ProxyJump vmloop\n"), 0o600)
		res := e.run("doctor", "--target", "ssh://vmjump", "--ssh-config", cfg)
		if !strings.Contains(res.stdout, "ok       VM host: ") {
			t.Errorf("doctor through a jump host:\n%s%s", res.stdout, res.stderr)
		}
		res = e.run("doctor", "--target", "ssh://vmloop", "--ssh-config", cfg)
		if !strings.Contains(res.stdout, "ProxyJump hops loop") {
			t.Errorf("doctor with a ProxyJump loop:\n%s%s", res.stdout, res.stderr)
		}
	})

	t.Run("boot and test", func(t *testing.T) {
		for i, want := range []bool{true, false} { // uploads the first time only
			var r bootResult
			res := boot(h.config, "--json", "--target", h.target(), "--guest-test", good)
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || res.code != 0 || r.Verdict != "good" {
				t.Fatalf("boot %d: exit %d verdict %q\n%s", i+1, res.code, r.Verdict, res.stderr)
			}
			if uploaded := strings.Contains(res.stderr, "uploading to the host's cache"); uploaded != want {
				t.Errorf("boot %d: uploaded %v, want %v\n%s", i+1, uploaded, want, res.stderr)
			}
			console, _ := os.ReadFile(r.ConsoleLog)
			if !strings.Contains(string(console), "firstbad: VM host: ") || !strings.Contains(string(console), "Linux version") {
				t.Errorf("the console log does not name the VM host or lacks the guest's console:\n%s", tailText(string(console), 5))
			}
		}
		// The local target's classifications hold over there.
		for _, c := range []struct{ name, test, timeout, reason string }{
			{"bad", "exit 3", "1m", "exit 3"},
			{"hang", "sleep 600", "3s", "hang"},
			{"panic", "echo c > /proc/sysrq-trigger; sleep 10", "1m", "crash: Kernel panic - not syncing: sysrq triggered crash"},
		} {
			var r bootResult
			res := boot(h.config, "--json", "--target", h.target(), "--guest-test", script(t, c.test), "--timeout", c.timeout)
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || res.code != 1 || r.Verdict != "bad" || !strings.Contains(r.Reason, c.reason) {
				t.Errorf("%s on the VM host: exit %d verdict %q reason %q, want bad %q\n%s", c.name, res.code, r.Verdict, r.Reason, c.reason, res.stderr)
			}
		}
	})

	t.Run("host-side test through the host", func(t *testing.T) {
		host := script(t, `[ "$($FIRSTBAD_SSH cat /proc/sys/kernel/sched_autogroup_enabled)" = 0 ] || [ "$($FIRSTBAD_SSH cat /proc/sys/kernel/sched_autogroup_enabled)" = 1 ]`)
		if res := boot(h.config, "--target", h.target(), "--host-test", host); res.code != 0 {
			t.Errorf("host test over the VM host: exit %d\n%s", res.code, res.stderr)
		}
	})

	t.Run("bisect", func(t *testing.T) {
		// The target comes from the run's config file; the report names
		// the VM host the verdicts came from.
		r, hosts := bisectOn(t, e, k, fmt.Sprintf("target = %q\nssh-config = %q\n", h.target(), h.config), h.target())
		uname, _ := exec.Command("uname", "-r").Output()
		if len(hosts) != 1 || !strings.Contains(hosts[0], strings.TrimSpace(string(uname))) || !strings.Contains(hosts[0], "QEMU") {
			t.Errorf("the report's target hosts: %q", hosts)
		}
		md := e.run("report", r.RunID)
		if !strings.Contains(md.stdout, "verdicts from VM host") || !strings.Contains(md.stdout, "firstbad retest "+r.RunID) {
			t.Errorf("the Markdown report does not name the VM host or how to rerun a step (with the run's target):\n%s", md.stdout)
		}
	})

	t.Run("connection dropped", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "dropped")
		slow := script(t, "sleep 8; exit 0")
		cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "-v", "boot", "--kernel", k.Image,
			"--ssh-config", h.config, "--target", h.target(), "--guest-test", slow)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if len(qemuPids(h.dir)) > 0 {
					time.Sleep(5 * time.Second) // in the guest test now
					for _, p := range h.connections() {
						syscall.Kill(p, syscall.SIGKILL)
					}
					os.WriteFile(marker, nil, 0o644)
					return
				}
			}
		}()
		err := cmd.Wait()
		if _, serr := os.Stat(marker); serr != nil {
			t.Fatal("the connection was never dropped")
		}
		if err != nil || !strings.Contains(stderr.String(), "lost the connection to the VM host") {
			t.Errorf("after a dropped connection: %v (want good after one retry)\n%s", err, stderr.String())
		}
	})

	// Killed while the boot is prepared on the host (the initramfs
	// crossing) or while QEMU runs there: nothing is left on the host.
	preparing := func() bool {
		return len(procs(func(cmdline string) bool {
			return strings.HasPrefix(cmdline, "sh\x00-c\x00k=") && strings.Contains(cmdline, h.dir)
		})) > 0
	}
	for _, phase := range []struct {
		name string
		now  func() bool
		wait time.Duration
	}{
		{"controller killed while preparing", func() bool {
			left, _ := os.ReadDir(filepath.Join(h.dir, "remote", "boots"))
			return len(left) > 0 && len(qemuPids(h.dir)) == 0
		}, 0},
		{"controller killed while QEMU runs", func() bool { return len(qemuPids(h.dir)) > 0 }, 2 * time.Second},
	} {
		t.Run(phase.name, func(t *testing.T) {
			slow := script(t, "sleep 60")
			// A big file for the guest makes this boot's part of the
			// initramfs take a while to cross.
			big := filepath.Join(t.TempDir(), "big")
			if out, err := exec.Command("head", "-c", "96M", "/dev/urandom").Output(); err != nil || os.WriteFile(big, out, 0o644) != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "--state-dir", e.state, "--cache-dir", e.cache, "boot", "--kernel", k.Image,
				"--ssh-config", h.config, "--target", h.target(), "--guest-test", slow, "--guest-file", big+":/big", "--memory", "768")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(2 * time.Minute); !phase.now() && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(phase.wait)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			boots := filepath.Join(h.dir, "remote", "boots")
			clean := func() bool {
				left, _ := os.ReadDir(boots)
				return len(qemuPids(h.dir)) == 0 && !preparing() && len(left) == 0
			}
			for deadline := time.Now().Add(15 * time.Second); !clean() && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
			}
			if left, _ := os.ReadDir(boots); !clean() {
				t.Errorf("left on the VM host: QEMU %v, start script running %v, boot dirs %v", qemuPids(h.dir), preparing(), left)
			}
		})
	}
}

// bisectOn bisects tip~1..tip (tip is bad) with the target given by a TOML
// config and returns the report and the VM hosts it names. The two build
// the same kernel; the test tells them apart by $FIRSTBAD_COMMIT, so each
// must boot (--retest-same-kernel).
func bisectOn(t *testing.T, e *env, k *testkernel.Kernel, config, target string) (report, []string) {
	t.Helper()
	tip := strings.TrimSpace(gitOut(t, k.Repo, "rev-parse", "tip"))
	test := script(t, fmt.Sprintf(`[ "$FIRSTBAD_COMMIT" = %s ] && exit 1; exit 0`, tip))
	cfg := filepath.Join(t.TempDir(), "firstbad.toml")
	os.WriteFile(cfg, []byte(config), 0o644)
	r, res := e.runJSON("run", "--config", cfg, "--repo", k.Repo, "--good", "tip~1", "--bad", "tip", "--guest-test", test,
		"--kconfig", k.Fragment, "--accept-suspect", "--retest-same-kernel") // tip's image is tip~1's: flagged
	if res.code != 0 || r.Culprit == nil || *r.Culprit != tip {
		t.Fatalf("bisect on %s: exit %d culprit %v\n%s", target, res.code, r.Culprit, res.stderr)
	}
	var tr struct {
		Target struct {
			URL   string   `json:"url"`
			Hosts []string `json:"hosts"`
		} `json:"target"`
	}
	json.Unmarshal([]byte(res.stdout), &tr)
	if tr.Target.URL != target {
		t.Errorf("the report's target is %q, want %q", tr.Target.URL, target)
	}
	return r, tr.Target.Hosts
}
