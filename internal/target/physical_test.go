package target

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/outcome"
)

func TestParseMachineTarget(t *testing.T) {
	cases := []struct {
		in, flag, guest, host, user, method, qemu, err string
		port                                           int
	}{
		{in: "machine://vmhost", host: "vmhost", method: "auto"},
		{in: "machine://vmhost?qemu=/opt/q", guest: "/k/bzImage", host: "vmhost", method: "auto", qemu: "/opt/q"},
		{in: "machine://vmhost", guest: "/k/bzImage", host: "vmhost", method: "auto", qemu: "qemu-system-x86_64"},
		{in: "machine://vmhost?qemu=/opt/q", err: "needs --guest-kernel"},
		{in: "ssh://vmhost", guest: "/k/bzImage", err: "it is for --target machine://HOST"},
		{in: "qemu", guest: "/k/bzImage", err: "it is for --target machine://HOST"},
		{in: "machine://root@vmhost:2222?boot=kexec", host: "vmhost", user: "root", port: 2222, method: "kexec"},
		{in: "machine://vmhost?boot=grub", host: "vmhost", method: "grub"},
		{in: "machine://vmhost?boot=pxe", err: "boot method pxe: want auto, grub, systemd-boot or kexec"},
		{in: "machine://vmhost", flag: "kexec", host: "vmhost", method: "kexec"},
		{in: "machine://vmhost?boot=kexec", flag: "kexec", host: "vmhost", method: "kexec"},
		{in: "machine://vmhost?boot=grub", flag: "kexec", err: "says boot=grub, --boot-method kexec: give one"},
		{in: "machine://vmhost", flag: "systemd-boot", host: "vmhost", method: "systemd-boot"},
		{in: "machine://vmhost?boot=systemd-boot", host: "vmhost", method: "systemd-boot"},
		{in: "machine://vmhost?power=x", err: `unknown parameter "power"`},
		{in: "machine://", err: "want machine://"},
		{in: "machine://vmhost/path", err: "want machine://"},
	}
	for _, c := range cases {
		p, err := ParseTarget(c.in, Options{BootMethod: c.flag, GuestKernel: c.guest})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		m := p.(*Physical)
		got := []any{m.Dest.Host, m.Dest.User, m.Dest.Port, m.Method, m.GuestKernel, ""}
		if m.GuestKernel != "" {
			// The guest's QEMU runs there over a connection of its own.
			got[5] = m.Guest.binary()
			if m.Guest.Dest != m.Dest {
				t.Errorf("%s: the guest's host %v, the machine %v", c.in, m.Guest.Dest, m.Dest)
			}
		}
		if diff := cmp.Diff([]any{c.host, c.user, c.port, c.method, c.guest, c.qemu}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.in, diff)
		}
	}
}

func TestRebootCommand(t *testing.T) {
	cases := []struct {
		systemd bool
		how     string
		want    string
	}{
		{true, "reboot", "systemctl reboot"},
		{false, "reboot", "'sleep 1; reboot'"},
		{true, "kexec", "systemctl kexec"},
		{false, "kexec", "kexec -e"},
		{true, "reboot-default", "kexec -u 2>/dev/null; grub-editenv - unset next_entry 2>/dev/null; unshot; systemctl reboot"},
		{true, "reboot-default", "unshot() { v=/sys/firmware/efi/efivars/LoaderEntryOneShot-"},
	}
	for _, c := range cases {
		got := (&machineState{systemd: c.systemd}).rebootCmd(c.how)
		if !strings.Contains(got, c.want) || !strings.HasSuffix(got, "&") {
			t.Errorf("systemd %v %s: %q, want it to contain %q and run in the background", c.systemd, c.how, got, c.want)
		}
	}
}

// The boot method: the one asked for if the machine has it; auto takes the
// boot loader that booted the machine (systemd-boot says so in an EFI
// variable, which a GRUB machine with bootctl installed lacks), else GRUB,
// else kexec.
func TestChooseMethod(t *testing.T) {
	cases := []struct {
		method              string
		grub, sdboot, kexec bool
		want, err           string
	}{
		{"auto", true, false, true, "grub", ""},
		{"auto", true, true, true, "systemd-boot", ""},
		{"auto", false, true, false, "systemd-boot", ""},
		{"auto", false, false, true, "kexec", ""},
		{"auto", false, false, false, "", "no boot loader firstbad can drive (systemd-boot that booted it, or GRUB"},
		{"grub", true, true, true, "grub", ""},
		{"grub", false, true, true, "", "no GRUB firstbad can drive"},
		{"systemd-boot", true, false, true, "", "not booted by systemd-boot"},
		{"systemd-boot", false, true, false, "systemd-boot", ""},
		{"kexec", true, true, true, "kexec", ""},
		{"kexec", true, true, false, "", "kexec is not installed there"},
	}
	for _, c := range cases {
		p := &Physical{Method: c.method, state: &machineState{}}
		err := p.chooseMethod(c.grub, c.sdboot, c.kexec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want one saying %q", c, err, c.err)
			}
			continue
		}
		if err != nil || p.state.method != c.want {
			t.Errorf("%+v: method %q, error %v; want %q", c, p.state.method, err, c.want)
		}
	}
}

func TestMachineCommandsChecked(t *testing.T) {
	p := &Physical{PowerCycle: "no-such-ipmitool -H bmc chassis power cycle"}
	if _, err := p.Check(context.Background()); !outcome.Is(err, outcome.Input) || !strings.Contains(err.Error(), "no-such-ipmitool is not found") {
		t.Errorf("a power command that is not there: %v, want an input error naming it", err)
	}
	// A power command that fails when it is needed: an infrastructure
	// error that quotes it and its words (the run stops, resumable),
	// never a verdict.
	p = &Physical{PowerCycle: "echo BMC unreachable; exit 3"}
	var log strings.Builder
	if err := p.powerCycle(context.Background(), &log); !outcome.IsInfra(err) || !strings.Contains(err.Error(), "BMC unreachable") ||
		!strings.Contains(err.Error(), `--power-cycle "echo BMC unreachable; exit 3" failed`) {
		t.Errorf("a power command that fails: %v, want an infrastructure error quoting it and its output", err)
	}
	p = &Physical{Console: "echo no such BMC; exit 1"}
	if err := p.startConsole(); !outcome.Is(err, outcome.Input) || !strings.Contains(err.Error(), "ended at once: no such BMC") {
		t.Errorf("a console command that exits at once: %v, want an input error with its last words", err)
	}
	p = &Physical{Console: "echo serial line; sleep 60"}
	if err := p.startConsole(); err != nil {
		t.Fatalf("a console that keeps running: %v", err)
	}
	pid := p.console.cmd.Process.Pid
	p.console.stop()
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("the console command (pid %d) outlived stop", pid)
	}
}
