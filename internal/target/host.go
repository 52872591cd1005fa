package target

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/firstbad/firstbad/internal/proc"
	"github.com/firstbad/firstbad/internal/remote"
)

// Hosted is a target that runs on a VM host (another machine, or libvirt
// here): it is checked before the first step, its identity is part of the
// evidence, and it holds resources until Close.
type Hosted interface {
	Target
	Check(ctx context.Context) (*HostInfo, error)
	Close()
}

// Options are the settings a hosted target takes from the run.
type Options struct {
	SSH      remote.Config
	Accel    string
	CacheDir string // local: KVM probe answers, the libvirt domain lock
	Log      *slog.Logger
	Probe    Probe
	// TakeOver lets a libvirt target stop a domain that runs something
	// other than a firstbad boot.
	TakeOver bool
	// A real machine's (machine://): see Physical.
	PowerCycle   string
	Console      string
	BootMethod   string // auto, grub or kexec; "" takes the URL's
	BootTimeout  time.Duration
	LeaveRunning bool
	Agent        string
	// GuestKernel, with a machine://, makes the machine the VM host of
	// a guest that boots this kernel (see Physical.Guest).
	GuestKernel string
}

// ParseTarget checks a --target: "" or "qemu" is the local QEMU (nil),
// ssh://... QEMU on a VM host, libvirt://... a libvirt domain; anything
// else is an error saying what is accepted.
func ParseTarget(s string, o Options) (Hosted, error) {
	if o.GuestKernel != "" && !strings.HasPrefix(s, "machine://") {
		return nil, fmt.Errorf("--guest-kernel makes a real machine the VM host of a guest: it is for --target machine://HOST, not %q", s)
	}
	switch {
	case s == "" || s == "qemu":
		return nil, nil
	case strings.HasPrefix(s, "ssh://"):
		r, err := ParseSSHTarget(s)
		if err != nil {
			return nil, err
		}
		r.SSH, r.Accel, r.CacheDir, r.Log, r.Probe = o.SSH, o.Accel, o.CacheDir, o.Log, o.Probe
		return r, nil
	case strings.HasPrefix(s, "machine://"):
		p, err := ParseMachineTarget(s, o.BootMethod)
		if err != nil {
			return nil, err
		}
		p.SSH, p.Log, p.PowerCycle, p.Console, p.BootTimeout = o.SSH, o.Log, o.PowerCycle, o.Console, o.BootTimeout
		p.LeaveRunning, p.Agent = o.LeaveRunning, o.Agent
		if o.GuestKernel != "" {
			p.GuestKernel = o.GuestKernel
			p.Guest.SSH, p.Guest.Accel, p.Guest.CacheDir, p.Guest.Log, p.Guest.Probe = o.SSH, o.Accel, o.CacheDir, o.Log, o.Probe
		} else if p.Guest.Binary != "" {
			return nil, fmt.Errorf("--target %q: ?qemu= names the QEMU of a guest on the machine, which needs --guest-kernel", s)
		}
		return p, nil
	case strings.HasPrefix(s, "libvirt://"):
		l, err := ParseLibvirtTarget(s)
		if err != nil {
			return nil, err
		}
		if l.Host != nil {
			l.Host.SSH = o.SSH
		}
		l.StateDir, l.Log, l.TakeOver = o.CacheDir, o.Log, o.TakeOver
		return l, nil
	}
	return nil, fmt.Errorf("--target %q: want qemu (local), ssh://[user@]host[:port], libvirt://[[user@]host]/DOMAIN or machine://[user@]host[:port]", s)
}

// DefaultHostCache bounds the kernels and initramfs bases kept on a VM host.
const DefaultHostCache = 2 << 30

// hostCache is the start of a boot script on a VM host, with $k the kernel
// and $base the initramfs's common part in the host's cache and $max its
// bound in bytes: it checks that both are there (exit 97 naming a missing
// one: the caller uploads it and starts again), marks them used, and trims
// the cache to $max, least recently used first.
const hostCache = `cd "$(dirname "$k")" || exit 98
for f in "$k" $base; do
	[ -s "$f" ] || { echo "firstbad-missing $f"; exit 97; }
	touch "$f"
done
ls -1t | grep -v '\.part$' | { t=0; while read -r f; do
	t=$((t + $(wc -c < "$f")))
	[ "$t" -le "$max" ] || [ "$f" = "$(basename "$k")" ] || [ "$f" = "$(basename "${base:-/}")" ] || rm -f "$f"
done; }
`

// hostDirs, in a check script with $d the dir on the host and a fail
// function, makes the kernel cache and boot dirs there, drops boot dirs a
// killed run left over a day ago, and prints the free KiB and the dir's
// absolute path (the script's last two lines).
const hostDirs = `mkdir -p "$d/kernels" "$d/boots" 2>/dev/null || fail "cannot create $d: name a writable dir with ?dir=DIR"
find "$d/boots" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null
`

// hostSpace ends a check script: free KiB and the dir's absolute path.
const hostSpace = `df -Pk "$d" | awk 'NR==2 {print $4}'
cd "$d" && pwd`

// scriptFail is a check script's way to fail with a message.
const scriptFail = `fail() { echo "firstbad-error $*"; exit 98; }
`

// cacheBound is bytes, or the default for 0.
func cacheBound(bytes int64) string {
	if bytes <= 0 {
		bytes = DefaultHostCache
	}
	return strconv.FormatInt(bytes, 10)
}

// sshHost is a connection to a VM host, made again when it dies.
type sshHost struct {
	Dest   remote.Dest
	SSH    remote.Config
	sudo   bool // scripts run under password-less sudo (a machine's non-root login)
	connMu sync.Mutex
	client *remote.Client
}

// conn returns the live connection, making a new one if there is none or
// the last one died.
func (h *sshHost) conn(ctx context.Context) (*remote.Client, error) {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		if h.client.Alive(15 * time.Second) {
			return h.client, nil
		}
		h.client.Close()
		h.client = nil
	}
	c, err := remote.Dial(ctx, h.SSH, h.Dest)
	if err != nil {
		return nil, err
	}
	h.client = c
	return c, nil
}

// closeConn drops the connection.
func (h *sshHost) closeConn() {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		h.client.Close()
		h.client = nil
	}
}

// hashes remembers files' content hashes per path, size and mtime: the
// kernel and the initramfs's common part are the same file boot after
// boot, and hashing ~25 MB each time is waste.
type hashes struct {
	mu   sync.Mutex
	sums map[string]string
}

func (hs *hashes) sum(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", p, fi.Size(), fi.ModTime().UnixNano())
	hs.mu.Lock()
	sum, ok := hs.sums[key]
	hs.mu.Unlock()
	if ok {
		return sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum = hex.EncodeToString(h.Sum(nil))[:32]
	hs.mu.Lock()
	if hs.sums == nil {
		hs.sums = map[string]string{}
	}
	hs.sums[key] = sum
	hs.mu.Unlock()
	return sum, nil
}

// staging is where a boot's files go on a VM host: the kernel and the
// initramfs's common part cross once into the host's cache (least recently
// used first out); this boot's own part of the initramfs (the last tail
// bytes of in) crosses each time and is joined to the base there.
type staging struct {
	kernel string            // the kernel in the host's cache
	base   string            // the initramfs base there ("" if none)
	dir    string            // this boot's dir on the host
	initrd string            // this boot's initramfs on the host ("" if none)
	in     *os.File          // the local initramfs (nil if none): close it
	tail   int64             // its bytes that are this boot's own
	local  map[string]string // path on the host -> local file, for uploads
}

func (hs *hashes) stage(b Boot, hostDir string) (*staging, error) {
	sum, err := hs.sum(b.Kernel)
	if err != nil {
		return nil, err
	}
	st := &staging{kernel: path.Join(hostDir, "kernels", "kernel-"+sum),
		dir:   path.Join(hostDir, "boots", fmt.Sprintf("%d-%08x", time.Now().UnixNano(), rand.Uint32())),
		local: map[string]string{}}
	st.local[st.kernel] = b.Kernel
	if b.Initrd == "" {
		return st, nil
	}
	st.initrd = path.Join(st.dir, "initrd")
	fi, err := os.Stat(b.Initrd)
	if err != nil {
		return nil, err
	}
	st.tail = fi.Size()
	if b.InitrdBase != "" {
		bs, err := hs.sum(b.InitrdBase)
		if err != nil {
			return nil, err
		}
		bfi, err := os.Stat(b.InitrdBase)
		if err != nil {
			return nil, err
		}
		st.base = path.Join(hostDir, "kernels", "initrd-"+bs)
		st.local[st.base] = b.InitrdBase
		st.tail -= bfi.Size()
	}
	if st.in, err = os.Open(b.Initrd); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *staging) close() {
	if st.in != nil {
		st.in.Close()
	}
}

// upload puts a local file at path on the machine sh runs on, atomically,
// readable by others there (libvirt's QEMU user).
func upload(ctx context.Context, sh shell, local, path string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = sh.run(ctx, `umask 022; cat > "$1.part" && mv -f "$1.part" "$1"`, []string{path}, f)
	return err
}

// shell runs shell scripts where the VMs are: on this machine, or on a VM
// host over SSH. Scripts get their arguments as $1...
type shell interface {
	// run runs script to its end and returns its stdout; a non-zero exit
	// is an error carrying its stderr.
	run(ctx context.Context, script string, args []string, stdin io.Reader) ([]byte, error)
	// start starts script with a pipe on its stdin that the caller
	// closes: scripts treat that EOF as the controller being gone. ctx
	// bounds the start (a connection to make), not the script.
	start(ctx context.Context, script string, args []string, stderr io.Writer) (*job, error)
	// where names the machine, for messages.
	where() string
}

// job is a started script.
type job struct {
	stdin  io.WriteCloser
	stdout io.Reader
	// wait returns the script's exit status, or an error if the script
	// could not be followed to its end (the connection was lost).
	wait func() (int, error)
	kill func() // ends it at once (the script's cleanup is skipped)
}

// localShell runs scripts on this machine.
type localShell struct{}

func (localShell) where() string { return "this machine" }

func (localShell) run(ctx context.Context, script string, args []string, stdin io.Reader) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", script, "firstbad"}, args...)...)
	var errb bytes.Buffer
	cmd.Stdin, cmd.Stderr = stdin, &errb
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out, nil
}

func (localShell) start(_ context.Context, script string, args []string, stderr io.Writer) (*job, error) {
	cmd := exec.Command("sh", append([]string{"-c", script, "firstbad"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Recorded like every child: if this controller dies, the next start
	// sends the group SIGTERM, which the scripts trap to clean up.
	unregister := proc.Register(cmd.Process.Pid)
	return &job{stdin: stdin, stdout: stdout,
		wait: func() (int, error) {
			err := cmd.Wait()
			unregister()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				return -1, err
			}
			return cmd.ProcessState.ExitCode(), nil
		},
		kill: func() { proc.KillGroup(cmd.Process.Pid) }}, nil
}

func (h *sshHost) where() string { return h.Dest.Host }

func (h *sshHost) run(ctx context.Context, script string, args []string, stdin io.Reader) ([]byte, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.Run(ctx, h.command(script, args), stdin)
}

// command is the command line for script, under sudo when needed.
func (h *sshHost) command(script string, args []string) string {
	if h.sudo {
		return "sudo -n " + shCommand(script, args)
	}
	return shCommand(script, args)
}

func (h *sshHost) start(ctx context.Context, script string, args []string, stderr io.Writer) (*job, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.NewSession()
	if err != nil {
		return nil, connLost(h.Dest.Host, err)
	}
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	s.Stderr = stderr
	if err := s.Start(h.command(script, args)); err != nil {
		s.Close()
		return nil, connLost(h.Dest.Host, err)
	}
	return &job{stdin: stdin, stdout: stdout,
		wait: func() (int, error) {
			err := s.Wait()
			var ee *ssh.ExitError
			switch {
			case err == nil:
				return 0, nil
			case errors.As(err, &ee):
				return ee.ExitStatus(), nil
			}
			return -1, connLost(h.Dest.Host, err)
		},
		kill: func() { s.Close() }}, nil
}

// shCommand is the command line that runs script with args in sh.
func shCommand(script string, args []string) string {
	return "sh -c " + remote.Quote(script) + " firstbad " + remote.Command(args...)
}
