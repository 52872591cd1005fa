package target

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/firstbad/firstbad/internal/remote"
)

// ErrConnLost marks a boot cut short by a lost connection to a remote
// host: an infrastructure failure, worth one more try on a new connection.
var ErrConnLost = errors.New("connection to the VM host lost")

// RemoteQEMU boots kernels in QEMU on another host, over SSH: the kernel is
// built here and shipped there (content-addressed, so each image crosses
// once), QEMU runs there with the local target's arguments, and its console
// and result channel come back over the connection. A watchdog on the host
// ends QEMU when the connection does, so a controller that dies (even by
// SIGKILL) leaves nothing running there.
type RemoteQEMU struct {
	sshHost
	hashes
	Dir      string // cache and boot dirs on the host (default .cache/firstbad-remote in the login's home)
	Binary   string // QEMU on the host (default qemu-system-x86_64)
	Accel    string // kvm, tcg or auto
	CacheDir string // local: the KVM probe's answer per host
	Log      *slog.Logger
	Probe    Probe
	// CacheBytes bounds the host's cache (default DefaultHostCache).
	CacheBytes int64

	mu   sync.Mutex
	info *HostInfo
}

// HostLinePrefix starts the console log line that names the VM host a boot
// ran on: the report collects them.
const HostLinePrefix = "firstbad: VM host: "

// HostInfo identifies the VM host: part of the evidence of every verdict.
type HostInfo struct {
	Name   string `json:"name"`
	Kernel string `json:"kernel"` // uname -r
	QEMU   string `json:"qemu"`   // QEMU's --version, first line
	KVM    bool   `json:"kvm"`    // /dev/kvm usable by the login
	FreeMB int64  `json:"free_mb"`
	BootID string `json:"-"`
	Dir    string `json:"-"` // the cache dir, absolute
}

func (h *HostInfo) String() string {
	return fmt.Sprintf("%s (Linux %s, %s)", h.Name, h.Kernel, h.QEMU)
}

// ParseSSHTarget parses ssh://[user@]host[:port][?dir=DIR&qemu=BINARY].
func ParseSSHTarget(s string) (*RemoteQEMU, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--target %q: want ssh://[user@]host[:port][?dir=DIR&qemu=BINARY]", s)
	}
	d, err := remote.ParseDest(u.Host)
	if err != nil {
		return nil, fmt.Errorf("--target %q: %v", s, err)
	}
	d.User = u.User.Username()
	r := &RemoteQEMU{sshHost: sshHost{Dest: d}}
	for k, v := range u.Query() {
		switch k {
		case "dir":
			r.Dir = v[0]
		case "qemu":
			r.Binary = v[0]
		default:
			return nil, fmt.Errorf("--target %q: unknown parameter %q (known: dir, qemu)", s, k)
		}
	}
	return r, nil
}

// Name implements Target.
func (r *RemoteQEMU) Name() string { return "ssh://" + r.Dest.String() }

func (r *RemoteQEMU) binary() string {
	if r.Binary != "" {
		return r.Binary
	}
	return "qemu-system-x86_64"
}

// dir is the remote base dir, as a shell word ($HOME-relative by default).
func (r *RemoteQEMU) dir() string {
	if r.Dir != "" {
		return remote.Quote(r.Dir)
	}
	return `"$HOME"/.cache/firstbad-remote`
}

// Close drops the connection.
func (r *RemoteQEMU) Close() { r.closeConn() }

// Check connects and checks the host: QEMU present, the cache dir
// writable with room for kernels. Each failure names the host.
func (r *RemoteQEMU) Check(ctx context.Context) (*HostInfo, error) {
	r.mu.Lock()
	info := r.info
	r.mu.Unlock()
	if info != nil {
		return info, nil
	}
	c, err := r.conn(ctx)
	if err != nil {
		return nil, err
	}
	script := `d=` + r.dir() + `; q=` + remote.Quote(r.binary()) + `
uname -n; uname -r; cat /proc/sys/kernel/random/boot_id
if command -v "$q" >/dev/null 2>&1; then "$q" --version | head -n 1; else echo; fi
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvm; else echo nokvm; fi
mkdir -p "$d/kernels" "$d/boots" || exit 1
find "$d/boots" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null
df -Pk "$d" | awk 'NR==2 {print $4}' && cd "$d" && pwd`
	out, err := c.Run(ctx, "sh -c "+remote.Quote(script), nil)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if err != nil || len(lines) < 7 {
		return nil, fmt.Errorf("checking VM host %s: %v (output %q)", r.Dest.Host, err, out)
	}
	info = &HostInfo{Name: lines[0], Kernel: lines[1], BootID: lines[2], QEMU: lines[3], KVM: lines[4] == "kvm", Dir: lines[6]}
	info.FreeMB, _ = strconv.ParseInt(strings.TrimSpace(lines[5]), 10, 64)
	info.FreeMB /= 1024
	if info.QEMU == "" {
		return nil, fmt.Errorf("VM host %s has no %s: install it there (Debian: apt-get install qemu-system-x86), or name it with ?qemu=PATH in --target", r.Dest.Host, r.binary())
	}
	if info.FreeMB < 256 {
		return nil, fmt.Errorf("VM host %s: only %d MiB free for %s; firstbad needs 256 MiB there for kernels and initramfs", r.Dest.Host, info.FreeMB, info.Dir)
	}
	r.mu.Lock()
	r.info = info
	r.mu.Unlock()
	return info, nil
}

// Boot implements Target.
func (r *RemoteQEMU) Boot(ctx context.Context, b Boot) (Machine, error) {
	info, err := r.Check(ctx)
	if err != nil {
		return nil, err
	}
	accel := r.accel(ctx, info, b)
	return r.Start(ctx, b, accel)
}

// accel is the user's choice, or KVM if the host has it and a probe boot
// shows a sign of life (cached per host boot and QEMU version).
func (r *RemoteQEMU) accel(ctx context.Context, info *HostInfo, b Boot) string {
	switch r.Accel {
	case "kvm", "tcg":
		return r.Accel
	}
	if !info.KVM {
		return "tcg"
	}
	sum := sha256.Sum256([]byte(r.Dest.String() + "\x00" + info.BootID + "\x00" + info.QEMU))
	p := filepath.Join(r.CacheDir, "accel-remote-"+hex.EncodeToString(sum[:8]))
	if data, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(data))
	}
	answer := "tcg"
	if r.Probe != nil && r.Probe(ctx, r.Start, b) {
		answer = "kvm"
	}
	if ctx.Err() == nil {
		if answer == "tcg" && r.Log != nil {
			r.Log.Warn("KVM does not work on the VM host: using TCG", "host", r.Dest.Host)
		}
		_ = os.MkdirAll(r.CacheDir, 0o755)
		_ = os.WriteFile(p, []byte(answer+"\n"), 0o644)
	}
	return answer
}

// startScript prepares a boot on the host and runs QEMU in it, in one SSH
// session (each costs a round trip and a fork there). It checks that the
// kernel and the initramfs's common part are in the host's cache (exit 97
// naming what is missing: the caller uploads it and starts again), keeps
// that cache under its bound, writes the initramfs from the common
// part and this boot's part (the first bytes of stdin), says so on stdout,
// then runs QEMU with
// its console on stdout and its result channel (a file) streamed on
// stderr. The rest of stdin stays open while the controller lives: at its
// EOF (a Stop, the connection lost, the controller killed) QEMU is killed.
// The boot dir goes with it.
const startScript = `k=$1; base=$2; size=$3; max=$4; b=$5; shift 5
# sshd hangs up the session when the connection goes: clean up.
trap 'rm -rf "$b"; exit 129' HUP INT TERM PIPE
` + hostCache + `mkdir -p "$b" && : > "$b/result.jsonl" || exit 98
{ [ -z "$base" ] || cat "$base"; head -c "$size"; } > "$b/initrd" || exit 98
echo firstbad-starting
exec 3<&0
"$@" </dev/null 2>&1 &
q=$!
trap 'kill -9 $q 2>/dev/null' HUP INT TERM PIPE
tail -n +1 -f "$b/result.jsonl" >&2 &
t=$!
{ while read -r _ <&3; do :; done; kill -9 $q 2>/dev/null; } &
w=$!
wait $q; rc=$?
sleep 0.3; kill $t $w 2>/dev/null
rm -rf "$b"
exit $rc`

// Start boots with a given accelerator.
func (r *RemoteQEMU) Start(ctx context.Context, b Boot, accel string) (Machine, error) {
	info, err := r.Check(ctx)
	if err != nil {
		return nil, err
	}
	c, err := r.conn(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	t0 := time.Now()
	st, err := r.stage(b, info.Dir)
	if err != nil {
		return nil, err
	}
	defer st.close()
	rb := b
	rb.Kernel, rb.Initrd, rb.Dir = st.kernel, st.initrd, st.dir
	m := &remoteMachine{vm: newVM(b.Dir, map[int]int{})}
	if b.Net {
		rb.Ports = map[int]int{}
		for _, g := range b.Forwards {
			rp := remotePort(c)
			rb.Ports[g] = rp
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				m.closeListeners()
				return nil, fmt.Errorf("listening for the guest's port %d: %w", g, err)
			}
			m.listeners = append(m.listeners, l)
			m.ports[g] = l.Addr().(*net.TCPAddr).Port
			go forward(l, c, rp)
		}
	}
	args := (&QEMU{Binary: r.binary()}).Args(rb, accel)
	cmdline := "sh -c " + remote.Quote(startScript) + " firstbad " +
		remote.Command(append([]string{rb.Kernel, st.base, strconv.FormatInt(st.tail, 10), cacheBound(r.CacheBytes), rb.Dir, r.binary()}, args...)...)
	logf, resf, err := m.create()
	if err != nil {
		m.closeListeners()
		return nil, err
	}
	fail := func(err error) (Machine, error) {
		logf.Close()
		resf.Close()
		m.closeListeners()
		return nil, err
	}
	fmt.Fprintf(logf, "%s%s\nfirstbad: %s %s\n", HostLinePrefix, info, r.binary(), strings.Join(args, " "))
	var stdout io.Reader
	for attempt := 1; ; attempt++ {
		missing, err := r.start(ctx, c, m, cmdline, resf, st.in, st.tail, &stdout)
		if err != nil {
			return fail(err)
		}
		if missing == "" {
			break
		}
		local, known := st.local[missing]
		if !known || attempt > len(st.local) {
			return fail(fmt.Errorf("VM host %s: %s is still missing from its cache after an upload", r.Dest.Host, missing))
		}
		r.debug("uploading to the host's cache", "file", local)
		if err := upload(ctx, &r.sshHost, local, missing); err != nil {
			return fail(fmt.Errorf("uploading %s to %s: %w", local, r.Dest.Host, err))
		}
	}
	r.debug("QEMU started", "since", time.Since(t0))
	m.stopOn(ctx, m.Stop)
	go func() {
		m.pump(stdout, logf)
		err := m.session.Wait()
		m.closeListeners()
		logf.Close()
		resf.Close()
		var e Exit
		var ee *ssh.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			e.Code = ee.ExitStatus()
		case !m.wasKilled():
			e.Err = fmt.Errorf("%w: %s: %v", ErrConnLost, r.Dest.Host, err)
			e.Code = -1
		}
		m.finish(e)
	}()
	return m, nil
}

func (r *RemoteQEMU) debug(msg string, args ...any) {
	if r.Log != nil {
		r.Log.Debug(msg, append([]any{"host", r.Dest.Host}, args...)...)
	}
}

// start runs the start script in a new session, feeding it this boot's
// part of the initramfs, and waits for its word: starting (the session is
// then m's, stdout the console from there on), or a file missing from the
// host's cache (returned; the session is over).
func (r *RemoteQEMU) start(ctx context.Context, c *remote.Client, m *remoteMachine, cmdline string, stderr io.Writer,
	initrd *os.File, tail int64, stdout *io.Reader) (missing string, err error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrConnLost, r.Dest.Host, err)
	}
	stdin, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	s.Stderr = stderr
	if err := s.Start(cmdline); err != nil {
		s.Close()
		return "", fmt.Errorf("starting QEMU on %s: %w", r.Dest.Host, err)
	}
	if initrd != nil {
		// Not closed after: the script's watchdog waits for EOF.
		fi, err := initrd.Stat()
		if err != nil {
			s.Close()
			return "", err
		}
		go io.Copy(stdin, io.NewSectionReader(initrd, fi.Size()-tail, tail))
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	br := bufio.NewReader(out)
	word, rerr := br.ReadString('\n')
	word = strings.TrimSpace(word)
	switch {
	case word == "firstbad-starting":
		m.session, m.stdin = s, stdin
		*stdout = br
		return "", nil
	case strings.HasPrefix(word, "firstbad-missing "):
		s.Close()
		return strings.TrimPrefix(word, "firstbad-missing "), nil
	}
	werr := s.Wait()
	s.Close()
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return "", fmt.Errorf("preparing the boot on VM host %s failed (%v %v): %s", r.Dest.Host, werr, rerr, word)
}

// remotePort is a port free on the host's loopback just now (asked of the
// host's sshd), or a random high one if it does not forward.
func remotePort(c *remote.Client) int {
	if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return p
	}
	return 20000 + rand.IntN(40000)
}

// forward carries connections to a local port to the host's loopback port
// p, where QEMU forwards them into the guest.
func forward(l net.Listener, c *remote.Client, p int) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			rc, err := c.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				return
			}
			defer rc.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(rc, conn); done <- struct{}{} }()
			go func() { io.Copy(conn, rc); done <- struct{}{} }()
			<-done
		}()
	}
}

type remoteMachine struct {
	vm
	session   *ssh.Session
	stdin     io.WriteCloser
	listeners []net.Listener
}

func (m *remoteMachine) closeListeners() {
	for _, l := range m.listeners {
		l.Close()
	}
}

// Stop closes our end of QEMU's stdin: the host's watchdog kills QEMU. If
// the session does not end soon after, it is closed.
func (m *remoteMachine) Stop() {
	if !m.markKilled() {
		return
	}
	m.stdin.Close()
	go func() {
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			m.session.Close()
		}
	}()
}
