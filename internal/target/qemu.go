package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/proc"
)

// QEMU boots kernels in local QEMU: q35, -nodefaults, no display, no reboot
// (a panicking kernel with panic=-1 ends the VM), serial console on QEMU's
// stdout, the result channel on a virtio-serial port backed by a file.
type QEMU struct {
	Binary   string // default qemu-system-x86_64
	Accel    string // kvm, tcg or auto (probe KVM once, cache the answer)
	CacheDir string // where the accel probe's answer is kept
	Log      *slog.Logger
	// Probe, for Accel auto, boots b with KVM and reports whether the
	// guest showed a sign of life; the pipeline supplies it since it
	// knows the guest's start marker.
	Probe Probe
}

// StartFunc boots b with a given accelerator.
type StartFunc func(ctx context.Context, b Boot, accel string) (Machine, error)

// Probe boots b with KVM through start and says whether the guest lived.
type Probe func(ctx context.Context, start StartFunc, b Boot) bool

// Name implements Target.
func (q *QEMU) Name() string { return "qemu" }

func (q *QEMU) binary() string {
	if q.Binary != "" {
		return q.Binary
	}
	return "qemu-system-x86_64"
}

// CheckShare says whether this QEMU can share a directory with a guest
// (--rootfs host, debian:) the way via says: 9p (builds without virtfs
// lack its device) or virtiofs (vhost-user-fs).
func (q *QEMU) CheckShare(via string) error {
	dev := map[string]string{"9p": "virtio-9p-pci", "virtiofs": "vhost-user-fs-pci"}[via]
	out, err := exec.Command(q.binary(), "-device", "help").Output()
	if err != nil {
		return fmt.Errorf("%s -device help: %v", q.binary(), err)
	}
	if !strings.Contains(string(out), `"`+dev+`"`) {
		return fmt.Errorf("%s has no %s (%s): --rootfs host and debian: over %s need a QEMU that has it (Debian's qemu-system-x86 does)", q.binary(), via, dev, via)
	}
	return nil
}

// CheckMachine says whether this QEMU has the machine type (microvm came
// in QEMU 4.2).
func (q *QEMU) CheckMachine(machine string) error {
	if machine == "" {
		return nil
	}
	out, err := exec.Command(q.binary(), "-machine", "help").Output()
	if err != nil {
		return fmt.Errorf("%s -machine help: %v", q.binary(), err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == machine {
			return nil
		}
	}
	return fmt.Errorf("%s has no machine type %s (--machine): QEMU 4.2 or later has microvm (Debian's qemu-system-x86 does)", q.binary(), machine)
}

// Check says whether QEMU is installed, with what to install if not.
func (q *QEMU) Check() error {
	if _, err := exec.LookPath(q.binary()); err != nil {
		return fmt.Errorf("%s not found: install it with: apt-get install qemu-system-x86", q.binary())
	}
	return nil
}

// Machines are the QEMU machine types a boot can ask for (Boot.Machine).
var Machines = []string{"q35", "microvm"}

// Microvm says whether machine is QEMU's microvm.
func Microvm(machine string) bool { return machine == "microvm" }

// Args are QEMU's arguments for a boot with the given accelerator.
func (q *QEMU) Args(b Boot, accel string) []string {
	mem, cpus := b.MemMiB, b.CPUs
	if mem <= 0 {
		mem = 512
	}
	if cpus <= 0 {
		cpus = 1
	}
	// dev names a virtio device for the machine's transport.
	dev, machine, cmdline := func(name string) string { return name + "-pci" }, "q35,accel="+accel, b.Cmdline
	if Microvm(b.Machine) {
		// No ACPI: QEMU lists the virtio-mmio devices on the command
		// line, and a reset (a triple fault, which -no-reboot turns
		// into QEMU's exit) ends the VM where q35 would power off.
		dev, machine, cmdline = func(name string) string { return name + "-device" }, "microvm,acpi=off,accel="+accel, cmdline+" acpi=off reboot=t"
	}
	args := []string{"-machine", machine, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-display", "none", "-no-reboot", "-no-user-config",
		"-kernel", b.Kernel, "-append", cmdline, "-serial", "stdio",
		"-device", dev("virtio-serial") + ",id=vser0",
		"-chardev", "file,id=fbres,path=" + filepath.Join(b.Dir, "result.jsonl"),
		"-device", "virtserialport,bus=vser0.0,chardev=fbres,name=firstbad.result",
	}
	if accel == "tcg" {
		args = append(args, "-cpu", "max")
	}
	if b.Initrd != "" {
		args = append(args, "-initrd", b.Initrd)
	}
	switch {
	case b.Share != "" && b.Virtiofsd != "":
		// vhost-user: virtiofsd maps the guest's memory, which must be
		// shared; its socket is relative to the boot dir (QEMU's cwd),
		// as a unix socket's path is short.
		memdev := []string{"-numa", "node,memdev=mem"}
		if Microvm(b.Machine) {
			memdev = []string{"-machine", "memory-backend=mem"} // microvm has no NUMA
		}
		args = append(args, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", mem))
		args = append(append(args, memdev...),
			"-chardev", "socket,id=vfs,path="+virtiofsSocket, "-device", dev("vhost-user-fs")+",queue-size=1024,chardev=vfs,tag="+guest.RootTag)
	case b.Share != "":
		// multidevs=remap: the host's / spans several file systems, whose
		// inode numbers would collide in one 9p export.
		args = append(args, "-fsdev", "local,id=fsroot,path="+optValue(b.Share)+",security_model=none,readonly=on,multidevs=remap",
			"-device", dev("virtio-9p")+",fsdev=fsroot,mount_tag="+guest.RootTag)
	}
	if b.Disk != "" {
		// readonly: QEMU opens the file read-only, so nothing the guest
		// does can change the user's image.
		args = append(args, "-drive", "file="+optValue(b.Disk)+",format="+b.DiskFormat+",if=none,id=disk0,readonly=on",
			"-device", dev("virtio-blk")+",drive=disk0")
	}
	if b.Net {
		netdev := "user,id=net0"
		guests := make([]int, 0, len(b.Ports))
		for g := range b.Ports {
			guests = append(guests, g)
		}
		sort.Ints(guests)
		for _, g := range guests {
			// Loopback only: nothing listens on a host address others
			// can reach.
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", b.Ports[g], g)
		}
		args = append(args, "-netdev", netdev, "-device", dev("virtio-net")+",netdev=net0")
	}
	return args
}

// optValue escapes a value inside QEMU's comma-separated options.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// accel decides the accelerator: the user's choice, or the cached answer of
// a KVM probe for this boot of the host and this QEMU version.
func (q *QEMU) accel(ctx context.Context, b Boot) string {
	switch q.Accel {
	case "kvm", "tcg":
		return q.Accel
	}
	_, err := os.Stat("/dev/kvm")
	return probed(ctx, q.CacheDir, "accel-"+cacheKey(q.binary()), err == nil, func() bool {
		return q.Probe != nil && q.Probe(ctx, q.Start, b)
	}, func(why string) {
		if q.Log != nil {
			q.Log.Warn("KVM does not work here (" + why + "): using TCG software emulation")
		}
	})
}

// probed is the accelerator for a host: the answer cached under name in
// dir, else KVM if the host has it and probe sees a guest live under it
// (then cached; warn is told why it is TCG).
func probed(ctx context.Context, dir, name string, hasKVM bool, probe func() bool, warn func(why string)) string {
	path := filepath.Join(dir, name)
	if data, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(data))
	}
	answer, why := "tcg", "no /dev/kvm"
	if hasKVM {
		why = "no sign of life from a KVM guest"
		if probe() {
			answer = "kvm"
		}
	}
	if ctx.Err() != nil {
		return answer
	}
	if answer == "tcg" {
		warn(why)
	}
	_ = os.MkdirAll(dir, 0o755)
	_ = os.WriteFile(path, []byte(answer+"\n"), 0o644)
	return answer
}

// cacheKey identifies this host boot and QEMU version.
func cacheKey(bin string) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ver, _ := exec.Command(bin, "--version").Output()
	first, _, _ := strings.Cut(string(ver), "\n")
	s := strings.TrimSpace(string(boot)) + "-" + first
	var h uint64 = 14695981039346656037
	for _, c := range []byte(s) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return strconv.FormatUint(h, 16)
}

// Boot implements Target.
func (q *QEMU) Boot(ctx context.Context, b Boot) (Machine, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	accel := q.accel(ctx, b)
	if !b.Net || len(b.Forwards) == 0 {
		return q.Start(ctx, b, accel)
	}
	// Free ports can be taken between our choice and QEMU's bind: QEMU
	// then fails at once, and another set of ports is tried.
	for attempt := 1; ; attempt++ {
		b.Ports = map[int]int{}
		for _, g := range b.Forwards {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			b.Ports[g] = p
		}
		m, err := q.Start(ctx, b, accel)
		if err != nil {
			return nil, err
		}
		qm := m.(*qemuMachine)
		select {
		case <-qm.done:
			log, _ := os.ReadFile(qm.console)
			if attempt < 5 && strings.Contains(string(log), "host forwarding rule") {
				continue
			}
		case <-time.After(300 * time.Millisecond):
		}
		return m, nil
	}
}

// freePort is a TCP port free on the host's loopback just now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port for the guest's forward: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start boots with a given accelerator (the KVM probe uses it directly).
func (q *QEMU) Start(ctx context.Context, b Boot, accel string) (Machine, error) {
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	m := &qemuMachine{vm: newVM(b.Dir, b.Ports)}
	logf, err := os.Create(m.console)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(m.result)
	args := q.Args(b, accel)
	cmd := exec.Command(q.binary(), args...)
	if b.Share != "" && b.Virtiofsd != "" {
		cmd = withVirtiofsd(cmd, b)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out io.ReadCloser
	if b.Interactive {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, io.MultiWriter(os.Stdout, logf), os.Stderr
	} else {
		if out, err = cmd.StdoutPipe(); err != nil {
			logf.Close()
			return nil, err
		}
		cmd.Stderr = logf
	}
	fmt.Fprintf(logf, "firstbad: %s %s\n", q.binary(), strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	m.cmd = cmd
	unregister := proc.Register(cmd.Process.Pid)
	m.stopOn(ctx, m.Stop)
	go func() {
		if out != nil {
			m.pump(out, logf)
		}
		err := cmd.Wait()
		proc.KillGroup(cmd.Process.Pid)
		unregister()
		logf.Close()
		e := Exit{Code: cmd.ProcessState.ExitCode()}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			e.Err = err
		}
		m.finish(e)
	}()
	return m, nil
}

// virtiofsSocket is virtiofsd's socket, in the boot dir.
const virtiofsSocket = "virtiofsd.sock"

// virtiofsdScript starts virtiofsd ($1 its root, $2 the shared dir) under
// bwrap, with the host's / at /host and the boot dir (the cwd) for its
// socket, waits for the socket and becomes QEMU (the rest of the
// arguments): virtiofsd is in QEMU's process group, killed with it, and
// dies with it (--die-with-parent: its parent is the shell that became
// QEMU). Submounts are not announced: the guest would see them as
// automount points, which overlayfs refuses as a lower layer (EREMOTE).
// It serves read-only, as the guest only reads, and lets the
// guest cache all it reads (cache=always: the shared root does not change
// under a test; under TCG a second python3 start takes 0.18 s, 0.83 s
// with cache=auto).
const virtiofsdScript = `root=$1; share=$2; shift 2
bwrap --bind "$root" / --bind / /host --dev-bind /dev /dev --proc /proc --die-with-parent --chdir "/host$(pwd -P)" \
	/usr/libexec/virtiofsd --socket-path=` + virtiofsSocket + ` --shared-dir="/host$share" --readonly --sandbox=none --cache=always --no-announce-submounts \
	2>virtiofsd.log &
i=0
while [ ! -S ` + virtiofsSocket + ` ]; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 $! 2>/dev/null; then
		echo "firstbad: virtiofsd did not start: $(tail -n 5 virtiofsd.log)" >&2; exit 1
	fi
	sleep 0.05
done
exec "$@"`

// withVirtiofsd is cmd run by virtiofsdScript in the boot dir.
func withVirtiofsd(cmd *exec.Cmd, b Boot) *exec.Cmd {
	c := exec.Command("sh", append([]string{"-c", virtiofsdScript, "sh", b.Virtiofsd, b.Share}, cmd.Args...)...)
	c.Dir = b.Dir
	return c
}

type qemuMachine struct {
	vm
	cmd *exec.Cmd
}

func (m *qemuMachine) Stop() {
	m.markKilled()
	proc.KillGroup(m.cmd.Process.Pid)
}
