package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/proc"
)

// physMachine is one boot of a real machine: the install, the reboot, the
// proof and the agent's runs happen in a goroutine it owns (Stop cancels
// it), so the whole of it, reboot included, is the boot's evidence.
type physMachine struct {
	vm
	portForwards
	sink      *lineSink
	cancel    context.CancelFunc
	jobMu     sync.Mutex
	job       *job
	agentAddr string  // where the agent's SSH server listens, on the machine
	guest     Machine // the guest the machine hosts (Physical.Guest), once up
}

// Wait implements Machine: the boot over, its forwards ended too.
func (m *physMachine) Wait() Exit {
	e := m.vm.Wait()
	m.conns.Wait()
	return e
}

// forwards binds a loopback port here for each port b forwards: the
// agent's SSH server, or that port on the machine's own loopback, reached
// over the machine's SSH connection (the one of the boot in progress);
// with a guest on the machine, the guest's own forward of that port.
func (p *Physical) forwards(m *physMachine, b Boot) error {
	if !b.Net {
		return nil
	}
	for _, g := range b.Forwards {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(g))
		err := m.listen(m.ports, g, func() (net.Conn, error) {
			m.jobMu.Lock()
			to, guest := addr, m.guest
			if g == b.AgentSSH {
				to = m.agentAddr
			}
			m.jobMu.Unlock()
			if p.GuestKernel != "" {
				if guest == nil {
					return nil, fmt.Errorf("machine %s: the guest is not up yet", p.Dest.Host)
				}
				return net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(guest.HostPort(g))))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := p.conn(ctx)
			if err != nil {
				return nil, err
			}
			return c.Dial("tcp", to)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Stop ends the boot: the agent's stdin is closed (it kills the test and
// exits). A reboot in progress is waited for (within the boot timeout), so
// that the next boot, or the cleanup, finds the machine up; only the
// caller's context ending (Ctrl-C) cuts it short.
func (m *physMachine) Stop() {
	if !m.markKilled() {
		return
	}
	m.jobMu.Lock()
	if m.job != nil {
		m.job.stdin.Close()
	}
	if m.guest != nil {
		m.guest.Stop()
	}
	m.jobMu.Unlock()
}

// lineSink is a boot's console: the log file and the classifier's queue,
// written by the agent's output and the console command at once.
type lineSink struct {
	mu sync.Mutex
	f  *os.File
	q  *consoleQueue
}

func (s *lineSink) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		s.line(l)
	}
	return len(b), nil
}

func (s *lineSink) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		fmt.Fprintln(s.f, l)
	}
	s.q.push(l)
}

func (s *lineSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.Close()
	s.f = nil
}

// Boot implements Target.
func (p *Physical) Boot(ctx context.Context, b Boot) (Machine, error) {
	info, err := p.Check(ctx)
	if err != nil {
		return nil, err
	}
	if b.Modules == "" || b.Release == "" || b.Config == "" {
		return nil, outcome.InputErr("machine %s: the kernel was built without its modules and release (a machine:// target builds with them)", p.Dest.Host)
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	m := &physMachine{vm: newVM(b.Dir, map[int]int{})}
	if p.GuestKernel != "" {
		// The guest's result channel is the boot's.
		if err := os.MkdirAll(guestDir(b), 0o755); err != nil {
			return nil, err
		}
		m.result = filepath.Join(guestDir(b), "result.jsonl")
	}
	if err := p.forwards(m, b); err != nil {
		return nil, err
	}
	logf, resf, err := m.create()
	if err != nil {
		m.closeListeners()
		return nil, err
	}
	resf.Close()
	m.sink = &lineSink{f: logf, q: m.q}
	bctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.stopOn(ctx, func() { m.Stop(); cancel() })
	go func() {
		defer cancel()
		p.console.attach(m.sink)
		m.sink.line(HostLinePrefix + info.String())
		e := p.bootAndTest(bctx, m, b)
		p.console.detach(m.sink)
		m.sink.close()
		m.closeListeners()
		m.finish(e)
	}()
	return m, nil
}

// bootAndTest is one boot: install, reboot into the candidate, prove it
// runs, run the agent. Its Exit says how it ended.
func (p *Physical) bootAndTest(ctx context.Context, m *physMachine, b Boot) Exit {
	log := m.sink
	start := time.Now()
	if err := p.install(ctx, b, log); err != nil {
		return Exit{Err: outcome.InfraErr("install", err)}
	}
	fmt.Fprintf(log, "firstbad: machine: installed %s for one boot by %s in %.1f s\n", b.Release, p.state.method, time.Since(start).Seconds())
	how := "reboot"
	if p.state.method == "kexec" {
		how = "kexec"
	}
	err := p.reboot(ctx, how, log)
	switch {
	case errors.Is(err, errNoReturn):
		if err := p.powerCycle(ctx, log); err != nil {
			return Exit{Err: err}
		}
		return Exit{BootFailure: fmt.Sprintf("the candidate %s did not come up within %s (power-cycled: back in %s)", b.Release, p.bootTimeout(), p.state.release)}
	case err != nil:
		return Exit{Err: outcome.InfraErr("reboot", err)}
	}
	if p.state.release != b.Release || !strings.Contains(" "+p.state.lastCmdline+" ", " firstbad.nonce="+b.Nonce+" ") {
		return Exit{WrongKernel: fmt.Sprintf("the machine came up in %s, not the candidate %s (command line %q): its boot loader fell back; see the console", p.state.release, b.Release, p.state.lastCmdline)}
	}
	fmt.Fprintf(log, "firstbad: machine: the candidate runs (release %s, this boot's nonce on its command line)\n", b.Release)
	if m.wasKilled() {
		return Exit{}
	}
	if p.GuestKernel != "" {
		return p.runGuest(ctx, m, b)
	}
	return p.runAgent(ctx, m, b)
}

// installScript installs a candidate ($1 release, $2 kernel and $3 modules
// in the upload cache, $4 1 to make an initramfs, $5 grub, systemd-boot or
// kexec, $6 its command line, $7 its config, which goes where make install
// puts it and the initramfs tools look, $8 the ESP for systemd-boot) and
// selects it for the next boot only. Each file is listed in the manifest
// before it exists (those on the ESP are found by their firstbad names),
// so that a controller killed half-way leaves nothing the next start will
// not remove.
const installScript = scriptFail + `rel=$1; k=$2; mods=$3; initrd=$4; how=$5; cmd=$6; config=$7; esp=$8; d=` + machineDir + `
set -e
grep -qx "release $rel" "$d/manifest" 2>/dev/null || echo "release $rel" >> "$d/manifest"
mkdir -p /boot/firstbad
[ -s "/boot/firstbad/vmlinuz-$rel" ] || { cp "$k" "/boot/firstbad/vmlinuz-$rel.part"; mv "/boot/firstbad/vmlinuz-$rel.part" "/boot/firstbad/vmlinuz-$rel"; }
cp "$config" "/boot/config-$rel"
[ -d "/lib/modules/$rel/kernel" ] || [ -f "/lib/modules/$rel/modules.builtin" ] || tar -C / -xf "$mods"
if command -v depmod >/dev/null; then depmod -a "$rel"; fi
i=""
if [ "$initrd" = 1 ]; then
	i=/boot/firstbad/initrd.img-$rel
	if [ ! -s "$i" ]; then
		if command -v mkinitramfs >/dev/null; then mkinitramfs -o "$i.part" "$rel" >&2
		elif command -v dracut >/dev/null; then dracut -f --kver "$rel" "$i.part" >&2
		else fail "the machine boots with an initramfs, but has neither mkinitramfs (initramfs-tools) nor dracut to make one"; fi
		mv "$i.part" "$i"
	fi
fi
if [ "$how" = kexec ]; then
	kexec -l "/boot/firstbad/vmlinuz-$rel" ${i:+--initrd="$i"} --command-line="$cmd"
	exit 0
fi
if [ "$how" = systemd-boot ]; then
	# systemd-boot reads only its ESP: the kernel (an EFI program through
	# its stub) and initramfs go there, with a Boot Loader Spec entry.
	mountpoint -q "$esp" && [ -d "$esp/loader" ] || fail "the EFI system partition $esp is not mounted in $(uname -r) (a candidate kernel without vfat?)"
	e=$esp/firstbad/$rel
	mkdir -p "$e" "$esp/loader/entries"
	cp "/boot/firstbad/vmlinuz-$rel" "$e/vmlinuz"
	[ -z "$i" ] || cp "$i" "$e/initrd.img"
	{ echo "title firstbad $rel"; echo "version $rel"; echo "linux /firstbad/$rel/vmlinuz"
	  [ -z "$i" ] || echo "initrd /firstbad/$rel/initrd.img"
	  echo "options $cmd"; } > "$esp/loader/entries/firstbad-$rel.conf.part"
	mv "$esp/loader/entries/firstbad-$rel.conf.part" "$esp/loader/entries/firstbad-$rel.conf"
	sync
	bootctl set-oneshot "firstbad-$rel.conf"
	exit 0
fi
uuid=$(grub-probe --target=fs_uuid /boot/firstbad); rp=$(grub-mkrelpath /boot/firstbad)
{ echo "menuentry 'firstbad $rel' --id firstbad {"
  echo "	search --no-floppy --fs-uuid --set=root $uuid"
  echo "	linux $rp/vmlinuz-$rel $cmd"
  [ -z "$i" ] || echo "	initrd $rp/initrd.img-$rel"
  echo "}"; } > /boot/grub/firstbad.cfg.part
mv /boot/grub/firstbad.cfg.part /boot/grub/firstbad.cfg
if ! grep -q '^### firstbad begin' /boot/grub/custom.cfg 2>/dev/null; then
	cat >> /boot/grub/custom.cfg <<'END'
### firstbad begin (removed by firstbad at the end of its run)
if [ -f ${config_directory}/firstbad.cfg ]; then source ${config_directory}/firstbad.cfg
elif [ -z "${config_directory}" -a -f $prefix/firstbad.cfg ]; then source $prefix/firstbad.cfg; fi
### firstbad end
END
fi
grub-reboot firstbad`

// install puts the candidate on the machine, with at most one other
// (the one that runs now) left installed.
func (p *Physical) install(ctx context.Context, b Boot, log io.Writer) error {
	if err := p.espReachable(ctx, log); err != nil {
		return err
	}
	if _, err := p.priv(ctx, cleanScript, []string{p.state.release}, nil); err != nil {
		return fmt.Errorf("machine %s: removing the last candidate: %v", p.Dest.Host, err)
	}
	kernel, err := p.uploadCached(ctx, b.Kernel, "kernel")
	if err != nil {
		return err
	}
	mods, err := p.uploadCached(ctx, b.Modules, "modules")
	if err != nil {
		return err
	}
	config, err := p.uploadCached(ctx, b.Config, "config")
	if err != nil {
		return err
	}
	cmdline := strings.TrimSpace(p.state.cmdline + " panic=10 firstbad.nonce=" + b.Nonce + " " + b.Extra)
	initrd := map[bool]string{true: "1", false: "0"}[p.state.initrd]
	out, err := p.priv(ctx, installScript, []string{b.Release, kernel, mods, initrd, p.state.method, cmdline, config, p.state.esp}, nil)
	if msg, ok := scriptError(out); ok {
		return fmt.Errorf("machine %s: %s", p.Dest.Host, msg)
	}
	if err != nil {
		return fmt.Errorf("machine %s: installing %s: %v", p.Dest.Host, b.Release, err)
	}
	return nil
}

// espReachable makes sure the next candidate can be put on the ESP: a
// candidate that runs may lack what mounts it (vfat, a module its
// config left out); then the machine goes back to its own kernel first.
func (p *Physical) espReachable(ctx context.Context, log io.Writer) error {
	if p.state.method != "systemd-boot" || !strings.Contains(p.state.release, "-firstbad-") {
		return nil
	}
	out, err := p.priv(ctx, `mountpoint -q "$1" && echo mounted`, []string{p.state.esp}, nil)
	if err == nil && strings.TrimSpace(string(out)) == "mounted" {
		return nil
	}
	fmt.Fprintf(log, "firstbad: machine: the EFI system partition %s is not mounted in %s: back to the default kernel to install the next candidate\n", p.state.esp, p.state.release)
	return p.restore(ctx)
}

// uploadCached puts a local file into the machine's upload cache, by
// content, unless it is there already, and returns its path there. The
// cache keeps the eight most recently used files.
func (p *Physical) uploadCached(ctx context.Context, local, kind string) (string, error) {
	sum, err := p.hashes.sum(local)
	if err != nil {
		return "", err
	}
	remotePath := machinePath("cache", kind+"-"+sum)
	out, err := p.priv(ctx, `if [ -s "$1" ]; then touch "$1"; echo have; fi
cd "$(dirname "$1")" && ls -1t | tail -n +9 | xargs -r rm -f`, []string{remotePath}, nil)
	if err != nil {
		return "", fmt.Errorf("machine %s: %v", p.Dest.Host, err)
	}
	if strings.TrimSpace(string(out)) == "have" {
		return remotePath, nil
	}
	if err := upload(ctx, &p.sshHost, local, remotePath); err != nil {
		return "", fmt.Errorf("copying %s to machine %s: %w", local, p.Dest.Host, err)
	}
	return remotePath, nil
}

// agentScript starts the agent in a fresh run dir ($1 its name, $2 the
// agent in the upload cache, $3 the size of the boot's archive, which
// comes first on stdin, $4 its SSH server's address for a host test).
const agentScript = `r=` + machineDir + `/runs/$1; chmod 755 "$2"
mkdir -p "$r" || exit 98
echo firstbad-starting
exec "$2" ` + "__machine-agent" + ` "$r" "$3" "$4"`

// runAgent runs the boot's tests through the agent, its output the
// console; a machine that stops answering meanwhile is power-cycled (or
// waited for) and the boot ends as a hang.
func (p *Physical) runAgent(ctx context.Context, m *physMachine, b Boot) Exit {
	agent, err := p.uploadCached(ctx, p.Agent, "agent")
	if err != nil {
		return Exit{Err: outcome.InfraErr("install", err)}
	}
	in, tail, err := bootArchive(b)
	if err != nil {
		return Exit{Err: outcome.InfraErr("boot", err)}
	}
	defer in.Close()
	args := []string{b.Nonce, agent, strconv.FormatInt(tail, 10)}
	if b.AgentSSH != 0 {
		c, err := p.conn(ctx)
		if err != nil {
			return Exit{Err: connLost(p.Dest.Host, err)}
		}
		m.jobMu.Lock()
		m.agentAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(remotePort(c)))
		args = append(args, m.agentAddr)
		m.jobMu.Unlock()
	}
	j, word, rest, err := startJob(ctx, &p.sshHost, agentScript, args, m.sink, in, tail)
	if err != nil {
		return Exit{Err: connLost(p.Dest.Host, err)}
	}
	if word != "firstbad-starting" {
		j.kill()
		return Exit{Err: outcome.InfraErr("boot", fmt.Errorf("machine %s: starting the agent: %s", p.Dest.Host, word))}
	}
	m.jobMu.Lock()
	m.job = j
	killed := m.wasKilled()
	m.jobMu.Unlock()
	if killed {
		j.stdin.Close()
	}
	eachLine(rest, m.sink.line)
	code, werr := j.wait()
	if werr == nil && (code == 0 || m.wasKilled()) {
		return Exit{Code: code}
	}
	return p.lost(m, code, werr)
}

// guestDir is the evidence dir of the guest a machine hosts.
func guestDir(b Boot) string { return filepath.Join(b.Dir, "guest") }

// runGuest boots the guest kernel in QEMU on the machine, which runs the
// candidate now, with the boot's initramfs and command line: the boot's
// tests run in that guest, its console is the boot's (after the
// machine's), its result channel the boot's. A machine that stops
// answering meanwhile is handled as in runAgent.
func (p *Physical) runGuest(ctx context.Context, m *physMachine, b Boot) Exit {
	p.Guest.forget() // the machine rebooted: a new connection, its new kernel in the evidence
	gb := b
	gb.Kernel, gb.Dir = p.GuestKernel, guestDir(b)
	g, err := p.Guest.Boot(ctx, gb)
	if errors.Is(err, ErrConnLost) {
		return p.lost(m, -1, err)
	}
	if err != nil {
		return Exit{Err: outcome.InfraErr("boot", fmt.Errorf("machine %s: starting the guest: %w", p.Dest.Host, err))}
	}
	// The guest's header (the host's kernel, the candidate now, and
	// QEMU's arguments) goes into the boot's console too.
	if data, err := os.ReadFile(g.ConsoleLog()); err == nil {
		head := strings.SplitN(string(data), "\n", 3)
		for _, l := range head[:min(2, len(head)-1)] {
			m.sink.line("firstbad: machine: guest: " + strings.TrimPrefix(l, "firstbad: "))
		}
	}
	m.jobMu.Lock()
	m.guest = g
	killed := m.wasKilled()
	m.jobMu.Unlock()
	if killed {
		g.Stop()
	}
	for l := range g.Lines() {
		m.sink.line(l)
	}
	e := g.Wait()
	if e.Err == nil || m.wasKilled() {
		return Exit{Code: e.Code}
	}
	return p.lost(m, e.Code, e.Err)
}

// lost is the agent's session (or the guest's) ended abnormally: the machine is asked
// whether it still runs this boot. If it answers with the same boot, the
// connection failed (an infrastructure error worth a retry); otherwise it
// hung or rebooted by itself, and it is brought back first.
func (p *Physical) lost(m *physMachine, code int, werr error) Exit {
	ctx, cancel := context.WithTimeout(context.Background(), p.BootGrace())
	defer cancel()
	old := p.state.bootID
	p.closeConn()
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	out, err := p.priv(actx, "cat /proc/sys/kernel/random/boot_id", nil, nil)
	acancel()
	if err == nil && strings.TrimSpace(string(out)) == old {
		if werr != nil {
			return Exit{Err: connLost(p.Dest.Host, werr)}
		}
		return Exit{Code: code}
	}
	if err == nil {
		fmt.Fprintf(m.sink, "firstbad: machine: it rebooted by itself during the test\n")
		err = p.waitUp(ctx, m.sink)
	} else {
		fmt.Fprintf(m.sink, "firstbad: machine: it stopped answering (%v)\n", err)
		err = p.powerCycle(ctx, m.sink)
	}
	if err != nil {
		return Exit{Err: outcome.InfraErr("machine", err)}
	}
	return Exit{Hung: true}
}

// bootArchive opens the boot's initramfs and says how many of its last
// bytes are this boot's own archive (settings, test, files).
func bootArchive(b Boot) (*os.File, int64, error) {
	fi, err := os.Stat(b.Initrd)
	if err != nil {
		return nil, 0, err
	}
	tail := fi.Size()
	if b.InitrdBase != "" {
		bfi, err := os.Stat(b.InitrdBase)
		if err != nil {
			return nil, 0, err
		}
		tail -= bfi.Size()
	}
	f, err := os.Open(b.Initrd)
	return f, tail, err
}

// consoleTap runs the --console command for the whole run and copies its
// lines to the console of the boot in progress.
type consoleTap struct {
	mu    sync.Mutex
	sink  *lineSink
	cmd   *exec.Cmd
	done  chan struct{}
	unreg func()
}

// startConsole starts the console command; one that ends within two
// seconds is an input error.
func (p *Physical) startConsole() error {
	if p.Console == "" || p.console != nil {
		return nil
	}
	t := &consoleTap{done: make(chan struct{})}
	t.cmd = exec.Command("sh", "-c", p.Console)
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := t.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	t.cmd.Stderr = t.cmd.Stdout
	var tailMu sync.Mutex
	var last []string
	if err := t.cmd.Start(); err != nil {
		return outcome.InputErr("--console %q: %v", p.Console, err)
	}
	t.unreg = proc.Register(t.cmd.Process.Pid)
	go func() {
		defer close(t.done)
		eachLine(out, func(l string) {
			tailMu.Lock()
			last = append(last[max(0, len(last)-4):], l)
			tailMu.Unlock()
			t.mu.Lock()
			if t.sink != nil {
				t.sink.line(l)
			}
			t.mu.Unlock()
		})
		_ = t.cmd.Wait()
		t.unreg()
	}()
	select {
	case <-t.done:
		tailMu.Lock()
		defer tailMu.Unlock()
		return outcome.InputErr("--console %q ended at once: %s", p.Console, strings.Join(last, " | "))
	case <-time.After(2 * time.Second):
	}
	p.console = t
	return nil
}

func (t *consoleTap) attach(s *lineSink) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.sink = s
	t.mu.Unlock()
}

func (t *consoleTap) detach(s *lineSink) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.sink == s {
		t.sink = nil
	}
	t.mu.Unlock()
}

func (t *consoleTap) stop() {
	proc.KillGroup(t.cmd.Process.Pid)
	<-t.done
}
