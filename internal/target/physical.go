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
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/remote"
)

// Physical is a real machine that boots the candidate kernels itself
// (machine://[user@]host[:port]): each boot installs the kernel and its
// modules there, selects it for the next boot only (a GRUB one-shot entry,
// a systemd-boot entry chosen with bootctl set-oneshot, or kexec),
// reboots, proves the candidate is what runs (its release and this boot's
// nonce on the command line), then runs the boot's tests
// through the firstbad agent over SSH. The machine's default boot entry is
// never changed: a power cycle always brings back its own kernel. What
// firstbad puts there is listed in a manifest on the machine and removed
// at the end, or at the next start after a controller that was killed.
type Physical struct {
	sshHost
	hashes
	// Method is auto (the boot loader that booted the machine, else
	// kexec), grub, systemd-boot or kexec.
	Method string
	// PowerCycle and Console are commands run here (sh -c): one that
	// power-cycles the machine (IPMI, Redfish, a PDU, virsh reset), one
	// whose output is its serial console.
	PowerCycle string
	Console    string
	// BootTimeout bounds a reboot, down to up (default 10 minutes).
	BootTimeout  time.Duration
	LeaveRunning bool   // at the end, stay in the last candidate
	Agent        string // the firstbad binary to run there (static)
	Log          *slog.Logger
	// GuestKernel, when set, makes the machine the VM host of a fixed
	// guest (the story's second bisect: the host kernel is bisected, the
	// guest stays): once the candidate runs, the boot's initramfs and
	// GuestKernel boot in QEMU there, as an ssh:// target's would (Guest,
	// over its own connection), and the boot's tests run in that guest.
	GuestKernel string
	Guest       RemoteQEMU

	mu      sync.Mutex
	info    *HostInfo
	state   *machineState
	console *consoleTap
}

// machineState is what the first check learned of the machine.
type machineState struct {
	method  string // grub, systemd-boot or kexec
	esp     string // the EFI system partition's mount point (systemd-boot)
	cmdline string // the default kernel's command line, firstbad's words taken out
	initrd  bool   // the machine boots with an initramfs: make one per candidate
	systemd bool
	kexec   bool // kexec-tools installed
	bootID  string
	// lastCmdline is the command line of what runs now.
	lastCmdline string
	release     string // what runs now
	fallback    string // the default kernel's release
}

// machineDir is firstbad's dir on the machine: the upload cache, the
// manifest, the lock, the default command line, the agents' run dirs.
const machineDir = "/var/lib/firstbad"

// DefaultMachineBootTimeout bounds a real machine's reboot.
const DefaultMachineBootTimeout = 10 * time.Minute

// ParseMachineTarget parses machine://[user@]host[:port][?boot=METHOD]
// with method, if set, the --boot-method that the URL may also give.
func ParseMachineTarget(s, method string) (*Physical, error) {
	p := &Physical{}
	d, err := parseHostURL(s, "machine", "[?boot=auto|grub|systemd-boot|kexec&qemu=BINARY]", map[string]*string{"boot": &p.Method, "qemu": &p.Guest.Binary})
	if err != nil {
		return nil, err
	}
	p.sshHost.Dest, p.Guest.Dest = d, d
	switch {
	case method != "" && p.Method != "" && method != p.Method:
		return nil, fmt.Errorf("--target %q says boot=%s, --boot-method %s: give one", s, p.Method, method)
	case p.Method == "" && method == "":
		p.Method = "auto"
	case p.Method == "":
		p.Method = method
	}
	switch p.Method {
	case "auto", "grub", "systemd-boot", "kexec":
	default:
		return nil, fmt.Errorf("--target %q: boot method %s: want auto, grub, systemd-boot or kexec", s, p.Method)
	}
	return p, nil
}

// Name implements Target.
func (p *Physical) Name() string { return "machine://" + p.Dest.String() }

func (p *Physical) bootTimeout() time.Duration {
	if p.BootTimeout > 0 {
		return p.BootTimeout
	}
	return DefaultMachineBootTimeout
}

// BootGrace is how much longer than the test's boot timeout a boot here
// may take: installing, and a power cycle when the candidate hangs.
func (p *Physical) BootGrace() time.Duration { return p.bootTimeout() + 5*time.Minute }

// priv runs script as root there: directly when the login is root, else
// with password-less sudo.
func (p *Physical) priv(ctx context.Context, script string, args []string, stdin io.Reader) ([]byte, error) {
	return p.sshHost.run(ctx, script, args, stdin)
}

// machineCheckScript learns the machine, takes its lock (args: the lock's text,
// the lock's owner test: a dead controller's lock is taken over), and
// keeps the default kernel's command line.
const machineCheckScript = scriptFail + `d=` + machineDir + `; me=$1
mkdir -p "$d/cache" "$d/runs" || fail "cannot create $d"
if [ -s "$d/lock" ] && [ "$(cat "$d/lock")" != "$me" ]; then
	echo "firstbad-locked $(cat "$d/lock")"; exit 0
fi
echo "$me" > "$d/lock"
uname -r; cat /proc/sys/kernel/random/boot_id
case "$(uname -r)" in *-firstbad-*) ;; *)
	uname -r > "$d/default-release"
	sed -e 's/BOOT_IMAGE=[^ ]*//; s/initrd=[^ ]*//g; s/firstbad[.]nonce=[^ ]*//g; s/panic=[^ ]*//g' /proc/cmdline > "$d/cmdline" ;;
esac
cat "$d/cmdline" 2>/dev/null || echo; cat "$d/default-release" 2>/dev/null || uname -r
if command -v grub-reboot >/dev/null && [ -f /boot/grub/grub.cfg ]; then echo grub; else echo nogrub; fi
if command -v kexec >/dev/null; then echo kexec; else echo nokexec; fi
if [ -e "/boot/initrd.img-$(cat "$d/default-release" 2>/dev/null || uname -r)" ]; then echo initrd; else echo noinitrd; fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then echo systemd; else echo nosystemd; fi
df -Pk /boot | awk 'NR==2 {print $4}'; df -Pk /lib/modules | awk 'NR==2 {print $4}'
uname -n
# systemd-boot: what booted this boot says so in LoaderInfo; its ESP.
if [ -e ` + loaderVar + `LoaderInfo-` + loaderGUID + ` ] && command -v bootctl >/dev/null && esp=$(bootctl --print-esp-path 2>/dev/null) && [ -d "$esp/loader" ]; then
	echo "systemd-boot $(df -Pk "$esp" | awk 'NR==2 {print $4}') $esp"
else echo nosystemd-boot; fi`

// The Boot Loader Interface's EFI variables (systemd-boot's), in efivarfs.
const (
	loaderVar  = "/sys/firmware/efi/efivars/"
	loaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
)

// unshot defines a shell function that removes systemd-boot's one-shot
// choice when it names a firstbad entry: a candidate chosen but never
// booted must not come back at some later reboot.
const unshot = `unshot() { v=` + loaderVar + `LoaderEntryOneShot-` + loaderGUID + `
	[ -e "$v" ] && tr -d '\0' < "$v" | grep -q firstbad- || return 0
	chattr -i "$v" 2>/dev/null; rm -f "$v"; }
`

// lockText names this controller in the machine's lock.
func (p *Physical) lockText() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d", host, os.Getpid())
}

// Check connects, checks root, the boot method and space, takes the
// machine's lock and cleans up after an earlier run that was killed.
func (p *Physical) Check(ctx context.Context) (*HostInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.info != nil {
		return p.info, nil
	}
	if f := strings.Fields(p.PowerCycle); len(f) > 0 {
		if _, err := exec.LookPath(f[0]); err != nil {
			return nil, outcome.InputErr("--power-cycle %q: %s is not found here", p.PowerCycle, f[0])
		}
	}
	sudo, err := p.needSudo(ctx)
	if err != nil {
		return nil, err
	}
	p.state, p.sshHost.sudo = &machineState{}, sudo
	out, err := p.priv(ctx, machineCheckScript, []string{p.lockText()}, nil)
	if msg, ok := scriptError(out); ok {
		return nil, fmt.Errorf("machine %s: %s", p.Dest.Host, msg)
	}
	if err != nil {
		return nil, fmt.Errorf("checking machine %s: %v", p.Dest.Host, err)
	}
	if held, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "firstbad-locked "); ok {
		if !p.staleLock(held) {
			return nil, fmt.Errorf("machine %s is in use by another firstbad (%s); wait for it, or remove %s/lock there if that run is gone", p.Dest.Host, held, machineDir)
		}
		if p.Log != nil {
			p.Log.Warn("the machine's lock belongs to a controller that is gone: taking it over", "machine", p.Dest.Host, "lock", held)
		}
		if _, err := p.priv(ctx, `rm -f `+machineDir+`/lock`, nil, nil); err != nil {
			return nil, err
		}
		p.mu.Unlock()
		defer p.mu.Lock()
		return p.Check(ctx)
	}
	info, err := p.learn(strings.Split(strings.TrimRight(string(out), "\n"), "\n"))
	if err != nil {
		p.letGo(ctx)
		return nil, err
	}
	p.info = info
	if strings.Contains(p.state.release, "-firstbad-") {
		// A run that was killed left the machine in a candidate.
		if err := p.restore(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := p.priv(ctx, cleanScript, []string{p.state.release}, nil); err != nil {
		return nil, fmt.Errorf("machine %s: removing what an earlier run installed: %v", p.Dest.Host, err)
	}
	if p.GuestKernel != "" {
		if _, err := p.Guest.Check(ctx); err != nil {
			p.letGo(ctx)
			return nil, err
		}
	}
	if err := p.startConsole(); err != nil {
		p.letGo(ctx)
		return nil, err
	}
	return info, nil
}

// letGoScript releases the machine; a firstbad dir that holds nothing
// worth keeping (no candidate left installed, no uploads for the next
// run) goes too, so that a check that failed leaves the machine as found.
const letGoScript = `d=` + machineDir + `; rm -f "$d/lock"
if [ ! -s "$d/manifest" ] && [ -z "$(ls -A "$d/cache" 2>/dev/null)" ]; then rm -rf "$d"; fi`

func (p *Physical) letGo(ctx context.Context) {
	p.info = nil
	if _, err := p.priv(ctx, letGoScript, nil, nil); err != nil && p.Log != nil {
		p.Log.Warn("could not release the machine", "machine", p.Dest.Host, "err", err)
	}
}

// needSudo says whether the login needs sudo, failing when it is not
// root and sudo asks for a password.
func (p *Physical) needSudo(ctx context.Context) (bool, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return false, err
	}
	out, err := c.Run(ctx, "id -u", nil)
	if err != nil {
		return false, fmt.Errorf("machine %s: %v", p.Dest.Host, err)
	}
	if strings.TrimSpace(string(out)) == "0" {
		return false, nil
	}
	if out, err := c.Run(ctx, "sudo -n true 2>&1", nil); err != nil {
		return false, fmt.Errorf("machine %s: the login is not root and password-less sudo fails (%s): log in as root, or allow this login password-less sudo",
			p.Dest.Host, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// staleLock says whether a lock belongs to a controller on this host that
// is gone (or to this very process, started again).
func (p *Physical) staleLock(held string) bool {
	var host string
	var pid int
	if _, err := fmt.Sscanf(held, "%s pid %d", &host, &pid); err != nil {
		return false
	}
	me, _ := os.Hostname()
	if host != me {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err != nil
}

// learn reads the check script's answer.
func (p *Physical) learn(lines []string) (*HostInfo, error) {
	if len(lines) < 12 {
		return nil, fmt.Errorf("checking machine %s: short answer %q", p.Dest.Host, lines)
	}
	st := p.state
	st.release, st.bootID, st.cmdline, st.fallback = lines[0], lines[1], strings.Join(strings.Fields(lines[2]), " "), lines[3]
	hasGrub, hasKexec := lines[4] == "grub", lines[5] == "kexec"
	st.initrd, st.systemd, st.kexec = lines[6] == "initrd", lines[7] == "systemd", hasKexec
	bootKiB, _ := strconv.ParseInt(lines[8], 10, 64)
	modKiB, _ := strconv.ParseInt(lines[9], 10, 64)
	var espKiB int64
	sd := strings.SplitN(lines[11], " ", 3)
	hasSD := len(sd) == 3 && sd[0] == "systemd-boot"
	if hasSD {
		espKiB, _ = strconv.ParseInt(sd[1], 10, 64)
		st.esp = sd[2]
	}
	if err := p.chooseMethod(hasGrub, hasSD, hasKexec); err != nil {
		return nil, err
	}
	if bootKiB < 64<<10 || modKiB < 256<<10 {
		return nil, fmt.Errorf("machine %s: too little space: %d MiB free in /boot and %d MiB in /lib/modules; firstbad needs 64 and 256", p.Dest.Host, bootKiB>>10, modKiB>>10)
	}
	if st.method == "systemd-boot" && espKiB < 64<<10 {
		return nil, fmt.Errorf("machine %s: too little space: %d MiB free in the EFI system partition %s; firstbad needs 64 for a candidate's kernel and initramfs", p.Dest.Host, espKiB>>10, st.esp)
	}
	return &HostInfo{Name: lines[10], Kernel: st.fallback, BootID: st.bootID, Dir: machineDir, FreeMB: modKiB >> 10}, nil
}

// chooseMethod settles how candidates are booted: the method asked for if
// the machine has it; with auto, the boot loader that booted it this time
// (systemd-boot says so in an EFI variable; else GRUB if set up), else
// kexec.
func (p *Physical) chooseMethod(hasGrub, hasSD, hasKexec bool) error {
	st := p.state
	noKexec := map[bool]string{true: "", false: "; no kexec either (apt-get install kexec-tools)"}[hasKexec]
	switch {
	case p.Method == "grub" && !hasGrub:
		return fmt.Errorf("machine %s: no GRUB firstbad can drive (grub-reboot and /boot/grub/grub.cfg)", p.Dest.Host)
	case p.Method == "systemd-boot" && !hasSD:
		return fmt.Errorf("machine %s: not booted by systemd-boot (no LoaderInfo EFI variable, or no bootctl, or no ESP with loader/ that bootctl --print-esp-path finds)", p.Dest.Host)
	case p.Method == "auto" && !hasGrub && !hasSD && !hasKexec:
		return fmt.Errorf("machine %s: no boot loader firstbad can drive (systemd-boot that booted it, or GRUB with grub-reboot and /boot/grub/grub.cfg)%s", p.Dest.Host, noKexec)
	case p.Method == "kexec" && !hasKexec:
		return fmt.Errorf("machine %s: kexec is not installed there (Debian: apt-get install kexec-tools)", p.Dest.Host)
	case p.Method == "kexec", p.Method == "auto" && !hasGrub && !hasSD:
		st.method = "kexec"
	case p.Method == "systemd-boot", p.Method == "auto" && hasSD:
		st.method = "systemd-boot"
	default:
		st.method = "grub"
	}
	return nil
}

// cleanScript removes every candidate the manifest lists but $1 (the
// release that runs now, if it is one), with their boot entry. On the ESP
// (systemd-boot), whatever firstbad's names are: a candidate that could
// not mount it may have left some behind.
const cleanScript = unshot + `d=` + machineDir + `; keep=$1
touch "$d/manifest"
grep -v "^release $keep\$" "$d/manifest" | while read -r kind rel; do
	[ "$kind" = release ] && [ -n "$rel" ] || continue
	rm -rf "/lib/modules/$rel" "/boot/firstbad/vmlinuz-$rel" "/boot/firstbad/initrd.img-$rel" "/boot/config-$rel"
done
esp=$(bootctl --print-esp-path 2>/dev/null)
if [ -n "$esp" ]; then
	for f in "$esp"/loader/entries/firstbad-*.conf "$esp"/firstbad/*; do
		[ -e "$f" ] || continue
		case "$f" in */firstbad-"$keep".conf|*/firstbad/"$keep") [ -n "$keep" ] && continue ;; esac
		rm -rf "$f"
	done
	[ -n "$(ls -A "$esp/firstbad" 2>/dev/null)" ] || rmdir "$esp/firstbad" 2>/dev/null
fi
grep "^release $keep\$" "$d/manifest" > "$d/manifest.new"; mv "$d/manifest.new" "$d/manifest"
rm -rf "$d/runs"/*
if [ ! -s "$d/manifest" ]; then
	rm -f /boot/grub/firstbad.cfg
	rmdir /boot/firstbad 2>/dev/null
	grub-editenv - unset next_entry 2>/dev/null
	unshot
	if [ -f /boot/grub/custom.cfg ]; then
		sed -i '/^### firstbad begin/,/^### firstbad end/d' /boot/grub/custom.cfg
		[ -s /boot/grub/custom.cfg ] || rm -f /boot/grub/custom.cfg
	fi
fi
true`

// Close brings the machine back to its default kernel (unless
// LeaveRunning), removes what firstbad installed, and lets go of it.
func (p *Physical) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.closeConn()
	p.Guest.Close()
	if p.console != nil {
		p.console.stop()
		p.console = nil
	}
	if p.info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.bootTimeout()+2*time.Minute)
	defer cancel()
	// A step cut short (Ctrl-C) may have left it rebooting.
	if err := p.refresh(ctx); err != nil {
		if p.Log != nil {
			p.Log.Error("the machine does not answer: it needs a look (and a power cycle); the next run on it cleans up", "machine", p.Dest.Host, "err", err)
		}
		return
	}
	keep := ""
	if p.LeaveRunning {
		keep = p.state.release
	} else if err := p.restore(ctx); err != nil && p.Log != nil {
		p.Log.Error("the machine did not come back in its default kernel: it needs a look (and a power cycle)", "machine", p.Dest.Host, "err", err)
		return
	}
	if _, err := p.priv(ctx, cleanScript+"\n"+letGoScript, []string{keep}, nil); err != nil && p.Log != nil {
		p.Log.Error("cleaning up the machine", "machine", p.Dest.Host, "err", err)
	}
	p.info = nil
}

// refresh waits (within the boot timeout) until the machine answers, and
// reads what runs.
func (p *Physical) refresh(ctx context.Context) error { return p.poll(ctx, false) }

// restore reboots into the default kernel when a candidate runs.
func (p *Physical) restore(ctx context.Context) error {
	if !strings.Contains(p.state.release, "-firstbad-") {
		return nil
	}
	if p.Log != nil {
		p.Log.Info("rebooting the machine into its default kernel", "machine", p.Dest.Host, "kernel", p.state.fallback)
	}
	if err := p.reboot(ctx, "reboot-default", io.Discard); err != nil {
		return err
	}
	if p.state.release != p.state.fallback {
		return fmt.Errorf("it came back in %s, not its default %s", p.state.release, p.state.fallback)
	}
	return nil
}

// rebootCmd is the command that reboots (how: reboot or kexec), in the
// background so that the SSH session ends first.
func (st *machineState) rebootCmd(how string) string {
	c := "reboot"
	switch {
	case how == "kexec" && st.systemd:
		c = "systemctl kexec"
	case how == "kexec":
		c = "sync; kexec -e"
	case st.systemd:
		c = "systemctl reboot"
	}
	if how == "reboot-default" {
		// Nothing firstbad loaded may come back on the way.
		c = unshot + "kexec -u 2>/dev/null; grub-editenv - unset next_entry 2>/dev/null; unshot; " + c
	}
	return "nohup sh -c " + remote.Quote("sleep 1; "+c) + " >/dev/null 2>&1 &"
}

// reboot reboots the machine and waits until it answers with a new boot
// id, then reads what runs. Progress goes to log.
func (p *Physical) reboot(ctx context.Context, how string, log io.Writer) error {
	if _, err := p.priv(ctx, p.state.rebootCmd(how), nil, nil); err != nil {
		return fmt.Errorf("asking machine %s to reboot: %v", p.Dest.Host, err)
	}
	p.closeConn()
	fmt.Fprintf(log, "firstbad: machine: %s asked to %s; waiting up to %s for it to come back\n", p.Dest.Host, how, p.bootTimeout())
	return p.waitUp(ctx, log)
}

// waitUp polls until the machine answers with a boot id other than the
// last one seen, within the boot timeout.
func (p *Physical) waitUp(ctx context.Context, log io.Writer) error {
	start := time.Now()
	if err := p.poll(ctx, true); err != nil {
		return err
	}
	fmt.Fprintf(log, "firstbad: machine: up after %.1f s in Linux %s\n", time.Since(start).Seconds(), p.state.release)
	return nil
}

// poll asks the machine what runs (boot id, release, command line) every
// 3 s within the boot timeout until it answers; with newBoot, until it
// answers from another boot than the last one seen (it was asked to
// reboot, and may not be down yet).
func (p *Physical) poll(ctx context.Context, newBoot bool) error {
	deadline := time.Now().Add(p.bootTimeout())
	for first := true; ; first = false {
		if newBoot || !first {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(3 * time.Second):
			}
		}
		if time.Now().After(deadline) {
			return errNoReturn
		}
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		out, err := p.priv(dctx, "cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline", nil, nil)
		cancel()
		if err != nil {
			p.closeConn()
			continue
		}
		lines := strings.SplitN(strings.TrimRight(string(out), "\n"), "\n", 3)
		if len(lines) < 3 || newBoot && lines[0] == p.state.bootID {
			continue
		}
		p.state.bootID, p.state.release, p.state.lastCmdline = lines[0], lines[1], lines[2]
		return nil
	}
}

// errNoReturn is a machine that did not answer within the boot timeout.
var errNoReturn = errors.New("the machine did not come back")

// powerCycle runs the power command and waits for the machine; without
// one, it waits the boot timeout for the machine to come back by itself.
func (p *Physical) powerCycle(ctx context.Context, log io.Writer) error {
	if p.PowerCycle == "" {
		fmt.Fprintf(log, "firstbad: machine: no --power-cycle command: waiting up to %s for %s to come back by itself\n", p.bootTimeout(), p.Dest.Host)
		if err := p.waitUp(ctx, log); err != nil {
			return outcome.InfraErr("machine", fmt.Errorf("machine %s does not answer and firstbad has no --power-cycle command: power-cycle it by hand, then resume the run", p.Dest.Host))
		}
		return nil
	}
	fmt.Fprintf(log, "firstbad: machine: power-cycling %s: %s\n", p.Dest.Host, p.PowerCycle)
	out, err := (localShell{}).run(ctx, p.PowerCycle, nil, nil)
	if err != nil {
		return outcome.InfraErr("machine", fmt.Errorf("--power-cycle %q failed: %v %s", p.PowerCycle, err, out))
	}
	p.closeConn()
	if err := p.waitUp(ctx, log); err != nil {
		return outcome.InfraErr("machine", fmt.Errorf("machine %s did not come back within %s of a power cycle", p.Dest.Host, p.bootTimeout()))
	}
	return nil
}

// BootMethod is how candidates are booted (grub, systemd-boot or kexec),
// once Check has run.
func (p *Physical) BootMethod() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.info == nil {
		return ""
	}
	return p.state.method
}

// Summary says what Check found, for doctor.
func (p *Physical) Summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.info == nil {
		return "not checked"
	}
	st := p.state
	s := fmt.Sprintf("%s; boots candidates by %s; %s; %d MiB free for modules", p.info, st.method,
		map[bool]string{true: "an initramfs per candidate (the machine boots with one)", false: "no initramfs"}[st.initrd], p.info.FreeMB)
	if st.method == "systemd-boot" {
		s += "; EFI system partition " + st.esp
	}
	if st.method != "kexec" {
		s += "; kexec " + map[bool]string{true: "also available (?boot=kexec)", false: "not installed"}[st.kexec]
	}
	if p.GuestKernel != "" {
		s += fmt.Sprintf("; the VM host of a guest booting %s in %s", p.GuestKernel, p.Guest.binary())
	}
	s += "; power cycle: " + or(p.PowerCycle, "none (a hung machine needs a hand)") + "; console: " + or(p.Console, "none (crashes are seen only through SSH)")
	return s
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

var _ Hosted = (*Physical)(nil)

func machinePath(parts ...string) string { return path.Join(append([]string{machineDir}, parts...)...) }

// configScript prints the default kernel's config: its /boot/config-RELEASE,
// else /proc/config.gz when the default kernel is what runs.
const configScript = `rel=$(cat ` + machineDir + `/default-release 2>/dev/null || uname -r)
if [ -r "/boot/config-$rel" ]; then cat "/boot/config-$rel"
elif [ "$(uname -r)" = "$rel" ] && [ -r /proc/config.gz ]; then gzip -dc /proc/config.gz
else echo "firstbad-error neither /boot/config-$rel nor /proc/config.gz (CONFIG_IKCONFIG_PROC) holds the config of $rel"; exit 98; fi`

// FetchConfig copies the config of the machine's default kernel into dir
// (named by its content) and returns its path: --base-config machine.
func (p *Physical) FetchConfig(ctx context.Context, dir string) (string, error) {
	return p.fetch(ctx, dir, "config", configScript, func(out []byte) error {
		if !bytes.Contains(out, []byte("\nCONFIG_")) || !bytes.Contains(out, []byte("CONFIG_64BIT=y")) && !bytes.Contains(out, []byte("CONFIG_X86_32=y")) {
			return outcome.InputErr("--base-config machine: what machine %s gave is not an x86 kernel config (%d bytes)", p.Dest.Host, len(out))
		}
		return nil
	})
}

// FetchLsmod copies the machine's lsmod (its default kernel's modules,
// loaded now) into dir and returns its path: --trim-modules machine.
func (p *Physical) FetchLsmod(ctx context.Context, dir string) (string, error) {
	return p.fetch(ctx, dir, "lsmod", `lsmod`, func(out []byte) error {
		if !bytes.HasPrefix(out, []byte("Module ")) {
			return outcome.InputErr("--trim-modules machine: machine %s's lsmod gave no module list (%d bytes)", p.Dest.Host, len(out))
		}
		return nil
	})
}

// fetch runs script on the machine (checked first: it runs its default
// kernel then) and keeps its output, if valid says so, in dir by content.
func (p *Physical) fetch(ctx context.Context, dir, what, script string, valid func([]byte) error) (string, error) {
	if _, err := p.Check(ctx); err != nil {
		return "", err
	}
	out, err := p.priv(ctx, script, nil, nil)
	if msg, ok := scriptError(out); ok {
		return "", outcome.InputErr("machine %s: %s", p.Dest.Host, msg)
	}
	if err != nil {
		return "", fmt.Errorf("machine %s: reading its %s: %v", p.Dest.Host, what, err)
	}
	if err := valid(out); err != nil {
		return "", err
	}
	sum := sha256.Sum256(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, p.Dest.Host+"-"+hex.EncodeToString(sum[:8])+"."+what)
	if err := os.WriteFile(path+".tmp", out, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(path+".tmp", path)
}
