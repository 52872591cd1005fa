package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/remote"
)

// ErrConnLost marks a boot cut short by a lost connection to a remote
// host: an infrastructure failure, worth one more try on a new connection.
var ErrConnLost = errors.New("connection to the VM host lost")

// connLost is a lost connection to host: retryable, never a verdict.
func connLost(host string, err error) error {
	return outcome.Retryable("connection", fmt.Errorf("%w: %s: %v", ErrConnLost, host, err))
}

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
	if h.QEMU == "" {
		return fmt.Sprintf("%s (default kernel Linux %s)", h.Name, h.Kernel)
	}
	return fmt.Sprintf("%s (Linux %s, %s)", h.Name, h.Kernel, h.QEMU)
}

// ParseSSHTarget parses ssh://[user@]host[:port][?dir=DIR&qemu=BINARY].
func ParseSSHTarget(s string) (*RemoteQEMU, error) {
	r := &RemoteQEMU{}
	d, err := parseHostURL(s, "ssh", "[?dir=DIR&qemu=BINARY]", map[string]*string{"dir": &r.Dir, "qemu": &r.Binary})
	r.sshHost.Dest = d
	return r, err
}

// parseHostURL parses SCHEME://[user@]host[:port][?PARAMS] (usage shows
// the parameters) into where to connect, setting the known parameters.
func parseHostURL(s, scheme, usage string, known map[string]*string) (remote.Dest, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != scheme || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return remote.Dest{}, fmt.Errorf("--target %q: want %s://[user@]host[:port]%s", s, scheme, usage)
	}
	d, err := remote.ParseDest(u.Host)
	if err != nil {
		return d, fmt.Errorf("--target %q: %v", s, err)
	}
	d.User = u.User.Username()
	return d, targetParams(s, u, known)
}

// targetParams sets a --target URL's query parameters into known; any
// other is an error naming the known ones.
func targetParams(s string, u *url.URL, known map[string]*string) error {
	for k, v := range u.Query() {
		p, ok := known[k]
		if !ok {
			return fmt.Errorf("--target %q: unknown parameter %q (known: %s)", s, k, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
		*p = v[0]
	}
	return nil
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

// forget drops the connection and what Check learned: the host rebooted
// (a machine that hosts the guest, now in another kernel).
func (r *RemoteQEMU) forget() {
	r.closeConn()
	r.mu.Lock()
	r.info = nil
	r.mu.Unlock()
}

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
	script := `d=` + r.dir() + `; q=` + remote.Quote(r.binary()) + "\n" + scriptFail + hostDirs + `
uname -n; uname -r; cat /proc/sys/kernel/random/boot_id
if command -v "$q" >/dev/null 2>&1; then "$q" --version | head -n 1; else echo; fi
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvm; else echo nokvm; fi
` + hostSpace
	out, err := c.Run(ctx, "sh -c "+remote.Quote(script), nil)
	if msg, ok := scriptError(out); ok {
		return nil, fmt.Errorf("VM host %s: %s", r.Dest.Host, msg)
	}
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
	sum := sha256.Sum256([]byte(r.Dest.String() + "\x00" + info.BootID + "\x00" + info.QEMU))
	return probed(ctx, r.CacheDir, "accel-remote-"+hex.EncodeToString(sum[:8]), info.KVM, func() bool {
		return r.Probe != nil && r.Probe(ctx, r.Start, b)
	}, func(why string) {
		if r.Log != nil {
			r.Log.Warn("KVM does not work on the VM host ("+why+"): using TCG", "host", r.Dest.Host)
		}
	})
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
	info, st, err := checkAndStage(ctx, r.Check, &r.hashes, b)
	if err != nil {
		return nil, err
	}
	defer st.close()
	rb := b
	rb.Kernel, rb.Initrd, rb.Dir = st.kernel, st.initrd, st.dir
	m := &hostedMachine{vm: newVM(b.Dir, map[int]int{})}
	if err := r.forwards(ctx, m, &rb); err != nil {
		return nil, err
	}
	args := (&QEMU{Binary: r.binary()}).Args(rb, accel)
	hb := hostedBoot{sh: &r.sshHost, script: startScript, st: st, where: "VM host " + r.Dest.Host, stop: 5 * time.Second, log: r.Log,
		args:   append([]string{rb.Kernel, st.base, strconv.FormatInt(st.tail, 10), cacheBound(r.CacheBytes), rb.Dir, r.binary()}, args...),
		header: fmt.Sprintf("%s%s\nfirstbad: %s %s\n", HostLinePrefix, info, r.binary(), strings.Join(args, " "))}
	return hb.boot(ctx, m)
}

// forwards binds a local loopback port for each guest port b forwards and
// carries it over the connection to a port on the host's loopback, where
// QEMU forwards it into the guest.
func (r *RemoteQEMU) forwards(ctx context.Context, m *hostedMachine, b *Boot) error {
	if !b.Net {
		return nil
	}
	c, err := r.conn(ctx)
	if err != nil {
		return err
	}
	b.Ports = map[int]int{}
	for _, g := range b.Forwards {
		rp := remotePort(c)
		b.Ports[g] = rp
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(rp))
		if err := m.listen(m.ports, g, func() (net.Conn, error) { return c.Dial("tcp", addr) }); err != nil {
			return err
		}
	}
	return nil
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
