package target

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// What a boot needs of QEMU is told apart by what it lists: --rootfs host
// needs its 9p device (or vhost-user-fs for virtiofs), --machine microvm
// that machine type.
func TestQEMUChecks(t *testing.T) {
	share := func(via string) func(*QEMU) error { return func(q *QEMU) error { return q.CheckShare(via) } }
	machine := func(m string) func(*QEMU) error { return func(q *QEMU) error { return q.CheckMachine(m) } }
	for _, c := range []struct {
		name, list string
		check      func(*QEMU) error
		err        string
	}{
		{"with 9p", `name "virtio-9p-pci", bus PCI, alias "virtio-9p"`, share("9p"), ""},
		{"without 9p", `name "virtio-net-pci", bus PCI`, share("9p"), "no 9p"},
		{"with virtiofs", `name "vhost-user-fs-pci", bus PCI`, share("virtiofs"), ""},
		{"without virtiofs", `name "virtio-9p-pci", bus PCI, alias "virtio-9p"`, share("virtiofs"), "no virtiofs (vhost-user-fs-pci)"},
		{"q35 asks nothing", "", machine(""), ""},
		{"with microvm", "q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\nmicrovm              microvm (i386)\n", machine("microvm"), ""},
		{"without microvm", "q35                  Standard PC (Q35 + ICH9, 2009)\n", machine("microvm"), "no machine type microvm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\nprintf '%s\\n' '"+c.list+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := c.check(&QEMU{Binary: bin})
			if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("%v, want %q", err, c.err)
			}
		})
	}
}

// q35 gets PCI devices and keeps its command line; microvm gets the same
// devices on virtio-mmio, no ACPI, and a reset for the end of the VM.
func TestArgsMachine(t *testing.T) {
	b := Boot{Kernel: "/k", Cmdline: "console=ttyS0", Dir: "/d", Share: "/", Disk: "/img", DiskFormat: "raw", Net: true, Ports: map[int]int{22: 2222}}
	common := func(machine, cmdline, suffix string) []string {
		return []string{"-machine", machine, "-m", "512", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot", "-no-user-config",
			"-kernel", "/k", "-append", cmdline, "-serial", "stdio", "-device", "virtio-serial-" + suffix + ",id=vser0",
			"-chardev", "file,id=fbres,path=/d/result.jsonl", "-device", "virtserialport,bus=vser0.0,chardev=fbres,name=firstbad.result", "-cpu", "max",
			"-fsdev", "local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap", "-device", "virtio-9p-" + suffix + ",fsdev=fsroot,mount_tag=firstbad-root",
			"-drive", "file=/img,format=raw,if=none,id=disk0,readonly=on", "-device", "virtio-blk-" + suffix + ",drive=disk0",
			"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-" + suffix + ",netdev=net0"}
	}
	for _, tt := range []struct {
		machine string
		want    []string
	}{
		{"", common("q35,accel=tcg", "console=ttyS0", "pci")},
		{"q35", common("q35,accel=tcg", "console=ttyS0", "pci")},
		{"microvm", common("microvm,acpi=off,accel=tcg", "console=ttyS0 acpi=off reboot=t", "device")},
	} {
		b.Machine = tt.machine
		if diff := cmp.Diff(tt.want, (&QEMU{}).Args(b, "tcg")); diff != "" {
			t.Errorf("machine %q (-want +got):\n%s", tt.machine, diff)
		}
	}
	// virtiofs: guest memory shared with virtiofsd, on microvm without NUMA.
	vfs := Boot{Kernel: "/k", Dir: "/d", Share: "/", Virtiofsd: "/root", Machine: "microvm"}
	got := strings.Join((&QEMU{}).Args(vfs, "tcg"), " ")
	for _, want := range []string{"-object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem", "-device vhost-user-fs-device,"} {
		if !strings.Contains(got, want) {
			t.Errorf("virtiofs on microvm: %q not in %s", want, got)
		}
	}
}
