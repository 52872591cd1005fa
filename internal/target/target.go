// Package target is where kernels run. A Target boots a kernel image with an
// initramfs and a command line and hands back a Machine whose console can be
// read line by line. The local QEMU target is the first; QEMU on a remote VM
// host, a libvirt domain and a real machine fit the same two interfaces.
package target

import (
	"context"
	"time"
)

// Boot is what to run.
type Boot struct {
	Kernel string
	Initrd string
	// Machine is QEMU's machine type: "" or q35 (PCI devices, ACPI), or
	// microvm (virtio-mmio devices, no PCI, no ACPI: a smaller kernel).
	Machine string
	// InitrdBase, if set, is a file whose content is a prefix of Initrd
	// and the same for every boot: a remote target ships it once.
	InitrdBase string
	Cmdline    string
	Dir        string // evidence dir: console.log, result channel
	MemMiB     int
	CPUs       int
	Net        bool // a NIC on user-mode networking
	// Forwards are guest TCP ports to reach from the host (with Net): the
	// target binds each to a free port on the host's loopback only.
	Forwards []int
	// Ports maps forwarded guest ports to host ports; the target fills it.
	Ports map[int]int
	// Interactive attaches the console to the caller's terminal (shell).
	Interactive bool
	// Share, when set, is a directory of this machine shared read-only
	// with the guest as 9p mount tag guest.RootTag; Disk a disk image
	// attached read-only as its first virtio disk, in DiskFormat (raw or
	// qcow2). What the guest test runs on (--rootfs; local QEMU only).
	Share            string
	Disk, DiskFormat string
	// Virtiofsd, when set, shares Share over virtiofs instead of 9p: a
	// root (a Debian root made for it) whose /usr/libexec/virtiofsd runs
	// under bwrap for the boot, the host's / bound at /host in it.
	Virtiofsd string
	// A real machine installs the kernel with its modules (a tar of
	// lib/modules/Release) and boots it with its own command line plus
	// the boot's nonce and Extra; VMs use Cmdline and ignore these.
	Modules string
	Release string
	Config  string // the kernel's .config (initramfs tools read it)
	Nonce   string
	Extra   string
	// AgentSSH is the guest port of the agent's own SSH server (host
	// tests), 0 if none: on a machine, whose port 22 is its sshd, the
	// agent listens elsewhere and the forward of this port goes there.
	AgentSSH int
}

// Exit is how a machine ended.
type Exit struct {
	Err      error // the machine (QEMU) failed: an infrastructure error
	Code     int   // QEMU's exit status
	Killed   bool  // we stopped it
	Duration time.Duration
	// A real machine's ways to end, none a verdict by itself:
	// Hung: it stopped answering (and was power-cycled or came back);
	// BootFailure: the candidate never came up (why, for the report);
	// WrongKernel: it came up in another kernel (the boot loader fell
	// back), which says nothing about the candidate.
	Hung        bool
	BootFailure string
	WrongKernel string
}

// Machine is a booted kernel.
type Machine interface {
	// Lines yields console lines; it is closed when the console ends.
	Lines() <-chan string
	// ConsoleLog is the path of the full console output.
	ConsoleLog() string
	// ResultLog is the path where the result channel lands (may be empty
	// if the target has none).
	ResultLog() string
	// HostPort is the host port that reaches a forwarded guest port (0:
	// not forwarded).
	HostPort(guest int) int
	// Stop ends the machine now; it is safe to call more than once.
	Stop()
	// Wait blocks until the machine is gone.
	Wait() Exit
}

// Target boots kernels.
type Target interface {
	Name() string
	Boot(ctx context.Context, b Boot) (Machine, error)
}
