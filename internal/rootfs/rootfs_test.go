package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	wd, _ := os.Getwd()
	for _, c := range []struct {
		in      string
		want    Spec
		str     string
		frag    string
		wantErr string
	}{
		{in: "", want: Spec{Kind: "busybox"}, str: "busybox"},
		{in: "busybox", want: Spec{Kind: "busybox"}, str: "busybox"},
		{in: "host", want: Spec{Kind: "host"}, str: "host", frag: "rootfs-host"},
		{in: "image:/srv/nixos.qcow2", want: Spec{Kind: "image", Image: "/srv/nixos.qcow2"}, str: "image:/srv/nixos.qcow2", frag: "rootfs-image"},
		{in: "image:disk.img", want: Spec{Kind: "image", Image: filepath.Join(wd, "disk.img")}, str: "image:" + filepath.Join(wd, "disk.img"), frag: "rootfs-image"},
		{in: "debian:bookworm", want: Spec{Kind: "debian", Release: "bookworm"}, str: "debian:bookworm", frag: "rootfs-host"},
		{in: "debian:trixie+stress-ng,python3,g++,python3", want: Spec{Kind: "debian", Release: "trixie", Packages: []string{"g++", "python3", "stress-ng"}},
			str: "debian:trixie+g++,python3,stress-ng", frag: "rootfs-host"},
		{in: "debian:bookworm+", want: Spec{Kind: "debian", Release: "bookworm"}, str: "debian:bookworm", frag: "rootfs-host"},
		{in: "debian:", wantErr: "give busybox, host, image:FILE or debian:RELEASE"},
		{in: "image:", wantErr: "give busybox, host, image:FILE or debian:RELEASE"},
		{in: "debian:Bookworm", wantErr: `"Bookworm" is not a Debian release name`},
		{in: "debian:bookworm+python3,,iperf3", wantErr: `"" is not a Debian package name`},
		{in: "debian:bookworm+python3;rm", wantErr: `"python3;rm" is not a Debian package name`},
		{in: "nixos", wantErr: `--rootfs "nixos": give busybox, host`},
	} {
		got, err := Parse(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !outcome.IsInput(err) {
				t.Errorf("Parse(%q) = %v, %v; want an input error with %q", c.in, got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", c.in, diff)
		}
		if got.String() != c.str || got.Fragment() != c.frag {
			t.Errorf("Parse(%q): String %q Fragment %q, want %q %q", c.in, got.String(), got.Fragment(), c.str, c.frag)
		}
	}
}

// The kernel options follow how a shared root reaches the guest; other
// modes share nothing.
func TestFragmentVia(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Kind: "host"}, "rootfs-host"},
		{Spec{Kind: "host", Via: Via9p}, "rootfs-host"},
		{Spec{Kind: "host", Via: ViaVirtiofs}, "rootfs-virtiofs"},
		{Spec{Kind: "debian", Release: "trixie", Via: ViaVirtiofs}, "rootfs-virtiofs"},
		{Spec{Kind: "image", Image: "/x", Via: ViaVirtiofs}, "rootfs-image"},
		{Spec{Kind: "busybox", Via: ViaVirtiofs}, ""},
	} {
		if got := c.spec.Fragment(); got != c.want {
			t.Errorf("%+v: Fragment %q, want %q", c.spec, got, c.want)
		}
	}
}

func TestImageFormat(t *testing.T) {
	pad := func(s string) []byte { return append([]byte(s), make([]byte, 512)...)[:512] }
	for _, c := range []struct {
		name    string
		head    []byte
		want    string
		wantErr string
	}{
		{"qcow2", pad("QFI\xfb\x00\x00\x00\x03"), "qcow2", ""},
		{"raw with an MBR", append(make([]byte, 510), 0x55, 0xaa), "raw", ""},
		{"raw ext4 without partitions", make([]byte, 512), "raw", ""},
		{"vmdk", pad("KDMV"), "", "a vmdk image: convert it first (qemu-img convert"},
		{"vdi", pad("<<< Oracle VM VirtualBox Disk Image >>>"), "", "a vdi image"},
		{"empty", nil, "", "too small"},
	} {
		got, err := imageFormat(c.head)
		if got != c.want || (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %q, %v; want %q, %q", c.name, got, err, c.want, c.wantErr)
		}
	}
}

// An image is checked, hashed and never opened for writing; a missing or
// foreign one is the user's to fix.
func TestPrepareImage(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	os.WriteFile(raw, make([]byte, 1<<20), 0o444)
	cache := cachedir.Dir(filepath.Join(dir, "cache"))
	zeros := "sha256 30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58" // of 1 MiB of zeros
	r, err := Prepare(context.Background(), Spec{Kind: "image", Image: raw}, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Disk != raw || r.Format != "raw" || !strings.Contains(r.Describe, zeros) {
		t.Errorf("Prepare: %+v", r)
	}
	// The sum is remembered while the file stays as it is, not after.
	sums, _ := filepath.Glob(filepath.Join(cache.ImageSums(), "*"))
	if len(sums) != 1 {
		t.Fatalf("remembered sums: %v", sums)
	}
	os.WriteFile(sums[0], []byte(strings.Repeat("ab", 32)), 0o644)
	if r, _ := Prepare(context.Background(), Spec{Kind: "image", Image: raw}, cache, nil); !strings.Contains(r.Describe, strings.Repeat("ab", 32)) {
		t.Errorf("the remembered sum was not used: %s", r.Describe)
	}
	os.Chmod(raw, 0o644)
	os.WriteFile(raw, make([]byte, 1<<20), 0o644) // same bytes, a new time
	if r, _ := Prepare(context.Background(), Spec{Kind: "image", Image: raw}, cache, nil); !strings.Contains(r.Describe, zeros) {
		t.Errorf("a changed file kept its old sum: %s", r.Describe)
	}
	if r.Settings() != "disk" || (*Root)(nil).Settings() != "" {
		t.Errorf("Settings: %q", r.Settings())
	}
	vmdk := filepath.Join(dir, "disk.vmdk")
	os.WriteFile(vmdk, append([]byte("KDMV"), make([]byte, 4096)...), 0o644)
	for _, f := range []string{filepath.Join(dir, "missing.img"), dir, vmdk} {
		if _, err := Prepare(context.Background(), Spec{Kind: "image", Image: f}, cache, nil); !outcome.IsInput(err) {
			t.Errorf("Prepare(%s): %v, want an input error", f, err)
		}
	}
}
