package pipeline

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"

	"golang.org/x/crypto/ssh"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/proc"
)

// HostTest is a test that runs on the host against the booted guest, over
// SSH through a loopback port forward (the "scp until it hangs" shape).
type HostTest struct {
	File string `json:"file"`
	// Forwards are extra guest TCP ports the test reaches at
	// $FIRSTBAD_GUEST_PORT_<port>.
	Forwards []int `json:"forwards,omitempty"`
	// UnreachableBad counts a guest SSH never reaches as bad (else skip).
	UnreachableBad bool `json:"unreachable_bad,omitempty"`
}

// CheckHostTest fails for a host test that is missing or not executable.
func CheckHostTest(file string) error {
	fi, err := os.Stat(file)
	switch {
	case err != nil:
		return fmt.Errorf("--host-test: %v", err)
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("--host-test %s is not an executable file (chmod +x it)", file)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		return fmt.Errorf("--host-test needs the OpenSSH client: apt-get install openssh-client")
	}
	return nil
}

// guestSSH is the host's side of one boot: a key pair made for it (the
// private half in a 0600 file under a temp dir removed at close), the
// ssh_config the host test uses, and firstbad's own connection.
type guestSSH struct {
	dir    string
	signer ssh.Signer
	pub    string // authorized_keys line for the guest
	config string // ssh_config path
	client *ssh.Client
}

func newGuestSSH() (*guestSSH, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "firstbad-ssh-")
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "firstbad")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &guestSSH{dir: dir, signer: signer, pub: string(ssh.MarshalAuthorizedKey(signer.PublicKey())),
		config: filepath.Join(dir, "ssh_config")}, nil
}

// connect waits until the guest's SSH server answers through port, then
// writes the ssh_config for it.
func (g *guestSSH) connect(ctx context.Context, port int, deadline time.Time) error {
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.signer)},
		// The guest's host key is made fresh at each boot; the forward is
		// on our loopback.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var last error
	for time.Now().Before(deadline) {
		c, err := dialSSH(addr, cfg, deadline)
		if err == nil {
			g.client = c
			conf := fmt.Sprintf("Host guest\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n"+
				"  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n  ConnectTimeout 30\n",
				port, filepath.Join(g.dir, "id_ed25519"))
			return os.WriteFile(g.config, []byte(conf), 0o600)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("guest SSH not reachable on 127.0.0.1:%d: %v", port, last)
}

// dialSSH is ssh.Dial with the handshake bounded too: QEMU's user-mode
// network accepts a forwarded connection at once and may sit on it for a
// minute when nothing in the guest answers.
func dialSSH(addr string, cfg *ssh.ClientConfig, deadline time.Time) (*ssh.Client, error) {
	d := min(time.Until(deadline), 10*time.Second)
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(d))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// start tells the agent to begin run n (it waits for this file), or, past
// the last run, to power off. A guest whose network is gone does not
// answer: after wait the connection is dropped and the error returned.
func (g *guestSSH) start(n int, wait time.Duration) error {
	done := make(chan error, 1)
	go func() {
		s, err := g.client.NewSession()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		done <- s.Run("touch " + guest.GoFile(n))
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		g.client.Close()
		return fmt.Errorf("the guest did not answer over SSH within %s", wait)
	}
}

func (g *guestSSH) close() {
	if g.client != nil {
		g.client.Close()
	}
	os.RemoveAll(g.dir)
}

// env is the host test's environment for run n.
func (g *guestSSH) env(h *HostTest, ports func(int) int, commit string, step, n int) []string {
	env := append(os.Environ(), "FIRSTBAD_SSH=ssh -F "+g.config+" guest", "FIRSTBAD_SSH_CONFIG="+g.config,
		"FIRSTBAD_COMMIT="+commit, "FIRSTBAD_STEP="+strconv.Itoa(step), "FIRSTBAD_RUN="+strconv.Itoa(n))
	for _, p := range append([]int{guest.SSHPort}, h.Forwards...) {
		env = append(env, fmt.Sprintf("FIRSTBAD_GUEST_PORT_%d=%d", p, ports(p)))
	}
	return env
}

// runHost runs the host test once, in its own process group, with a
// deadline whose overrun is a hang (bad). Output goes to log.
func runHost(ctx context.Context, file string, env []string, log string, timeout time.Duration) Run {
	out, err := os.Create(log)
	if err != nil {
		return Run{Verdict: outcome.Skip, ExitCode: -1, Reason: "host test: " + err.Error()}
	}
	defer out.Close()
	cmd := exec.Command(file)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, out, out, filepath.Dir(log)
	res, err := proc.Run(ctx, cmd, timeout)
	run := Run{ExitCode: res.ExitCode, Duration: res.Duration, Output: log}
	switch {
	case err != nil:
		run.Verdict, run.ExitCode, run.Reason = outcome.Skip, -1, "host test: "+err.Error()
	case res.TimedOut:
		run.Verdict, run.ExitCode, run.Reason = outcome.Bad, -1, fmt.Sprintf("hang: the host test did not finish within %s", timeout)
	default:
		run.Verdict, run.Reason = exitClass(res.ExitCode)
	}
	return run
}

// combineHalves joins a run's guest and host halves: bad if either is bad,
// skip if either skips and none is bad, good if both are good.
func combineHalves(g, h Run) Run {
	r := Run{Verdict: outcome.Good, ExitCode: h.ExitCode, Duration: max(g.Duration, h.Duration), Crash: g.Crash, Output: h.Output,
		Reason: "guest: " + g.Reason + "; host: " + h.Reason}
	switch {
	case g.Verdict == outcome.Bad || h.Verdict == outcome.Bad:
		r.Verdict = outcome.Bad
		if g.Verdict == outcome.Bad && h.Verdict != outcome.Bad {
			r.ExitCode = g.ExitCode
		}
	case g.Verdict == outcome.Skip || h.Verdict == outcome.Skip:
		r.Verdict = outcome.Skip
	}
	return r
}
