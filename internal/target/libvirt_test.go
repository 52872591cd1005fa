package target

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/google/go-cmp/cmp"
)

func TestBootXML(t *testing.T) {
	const user = `<domain type='kvm'>
  <name>prod</name>
  <metadata><app:owner xmlns:app="https://example.com/app">ops</app:owner></metadata>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/boot/old</kernel>
    <cmdline>root=/dev/vda</cmdline>
    <boot dev='hd'/>
  </os>
  <on_reboot>restart</on_reboot>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/libvirt/images/prod.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>
    <serial type='pty'><log file='/var/log/old.log'/><target port='0'/></serial>
  </devices>
</domain>`
	for _, c := range []struct {
		name, in string
		want     map[string]string // path -> text or attribute (after @)
		count    map[string]int
	}{
		{"a production domain", user, map[string]string{
			"os/kernel":                       "/h/kernels/kernel-1",
			"os/initrd":                       "/h/boots/b/initrd",
			"os/cmdline":                      "console=ttyS0 panic=-1",
			"os/type":                         "hvm",
			"on_reboot":                       "destroy",
			"on_crash":                        "destroy",
			"devices/serial/log@file":         "/h/boots/b/console.log",
			"devices/serial/target@port":      "0",
			"devices/channel/source@path":     "/h/boots/b/result.jsonl",
			"devices/channel/target@name":     "firstbad.result",
			"devices/disk/source@file":        "/var/lib/libvirt/images/prod.qcow2",
			"devices/interface/source@bridge": "br0",
			"metadata/app:owner":              "ops",
		}, map[string]int{"os/kernel": 1, "os/cmdline": 1, "devices/serial": 1, "devices/serial/log": 1, "os/boot": 1}},
		{"no serial port, no metadata", `<domain type='qemu'><name>x</name><os><type>hvm</type></os><devices/></domain>`, map[string]string{
			"devices/serial@type":        "pty",
			"devices/serial/log@file":    "/h/boots/b/console.log",
			"devices/serial/target@port": "0",
			"on_reboot":                  "destroy",
		}, map[string]int{"devices/serial": 1, "metadata/fb:boot": 1}},
	} {
		out, err := bootXML(c.in, "/h/kernels/kernel-1", "/h/boots/b/initrd", "console=ttyS0 panic=-1", "/h/boots/b/console.log", "/h/boots/b/result.jsonl")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		doc := etree.NewDocument()
		if err := doc.ReadFromString(out); err != nil {
			t.Fatalf("%s: the result does not parse: %v\n%s", c.name, err, out)
		}
		dom := doc.SelectElement("domain")
		got := map[string]string{}
		for p := range c.want {
			path, attr, _ := strings.Cut(p, "@")
			if e := dom.FindElement(path); e != nil {
				got[p] = e.Text()
				if attr != "" {
					got[p] = e.SelectAttrValue(attr, "")
				}
			}
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s\n%s", c.name, diff, out)
		}
		for p, n := range c.count {
			if got := len(dom.FindElements(p)); got != n {
				t.Errorf("%s: %d %s, want %d\n%s", c.name, got, p, n, out)
			}
		}
		if !strings.Contains(out, markerNS) {
			t.Errorf("%s: no firstbad marker in\n%s", c.name, out)
		}
	}
	if _, err := bootXML("<network/>", "k", "", "", "c", "r"); err == nil {
		t.Error("a definition without <domain> was accepted")
	}
}

// TestHostCacheTrim runs the boot scripts' cache prelude in a shell: the
// files in use stay, the rest go least recently used first once the bound
// is passed, a missing file is named with exit 97.
func TestHostCacheTrim(t *testing.T) {
	dir := t.TempDir()
	// Oldest first: each file is 100 bytes.
	for i, name := range []string{"old", "older-used", "mid", "new", "initrd-b", "kernel-k"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, bytes.Repeat([]byte{'x'}, 100), 0o644)
		ts := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(p, ts, ts)
	}
	os.WriteFile(filepath.Join(dir, "upload.part"), []byte("partial"), 0o644)
	run := func(k, base, max string) (string, int) {
		cmd := exec.Command("sh", "-c", "k=$1; base=$2; max=$3\n"+hostCache+"echo ok", "sh", k, base, max)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), cmd.ProcessState.ExitCode()
	}
	if out, code := run(filepath.Join(dir, "kernel-k"), filepath.Join(dir, "initrd-b"), "450"); code != 0 || out != "ok" {
		t.Fatalf("trim: exit %d %q", code, out)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i := range left {
		left[i] = filepath.Base(left[i])
	}
	if diff := cmp.Diff([]string{"initrd-b", "kernel-k", "mid", "new", "upload.part"}, left); diff != "" {
		t.Errorf("left in the cache (-want +got):\n%s", diff)
	}
	// In use but over the bound on their own: kept.
	if out, code := run(filepath.Join(dir, "kernel-k"), filepath.Join(dir, "initrd-b"), "10"); code != 0 || out != "ok" {
		t.Fatalf("tiny bound: exit %d %q", code, out)
	}
	for _, f := range []string{"kernel-k", "initrd-b"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s, in use, was removed", f)
		}
	}
	if out, code := run(filepath.Join(dir, "kernel-gone"), "", "350"); code != 97 || out != "firstbad-missing "+filepath.Join(dir, "kernel-gone") {
		t.Errorf("missing kernel: exit %d %q", code, out)
	}
}
