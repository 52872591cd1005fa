package target

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --rootfs host needs QEMU's 9p device (or vhost-user-fs for virtiofs): a
// QEMU built without it is told apart by its device list.
func TestCheckShare(t *testing.T) {
	for _, c := range []struct {
		name, via, devices, err string
	}{
		{"with 9p", "9p", `name "virtio-9p-pci", bus PCI, alias "virtio-9p"`, ""},
		{"without 9p", "9p", `name "virtio-net-pci", bus PCI`, "no 9p"},
		{"with virtiofs", "virtiofs", `name "vhost-user-fs-pci", bus PCI`, ""},
		{"without virtiofs", "virtiofs", `name "virtio-9p-pci", bus PCI, alias "virtio-9p"`, "no virtiofs (vhost-user-fs-pci)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\necho '"+c.devices+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := (&QEMU{Binary: bin}).CheckShare(c.via)
			if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("CheckShare(%s): %v, want %q", c.via, err, c.err)
			}
		})
	}
}
