package target

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --rootfs host needs QEMU's 9p device: a QEMU built without virtfs is
// told apart by its device list.
func TestCheckVirtFS(t *testing.T) {
	for _, c := range []struct {
		name, devices, err string
	}{
		{"with 9p", `name "virtio-9p-pci", bus PCI, alias "virtio-9p"`, ""},
		{"without 9p", `name "virtio-net-pci", bus PCI`, "no 9p"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\necho '"+c.devices+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := (&QEMU{Binary: bin}).CheckVirtFS()
			if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("CheckVirtFS: %v, want %q", err, c.err)
			}
		})
	}
}
