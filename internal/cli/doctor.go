package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/debroot"
	"github.com/firstbad/firstbad/internal/distcc"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/remote"
	"github.com/firstbad/firstbad/internal/rootfs"
	"github.com/firstbad/firstbad/internal/target"
	"github.com/firstbad/firstbad/internal/toolchain"
)

// check is one line of doctor's answer.
type check struct {
	name string
	err  error
	note string
}

func doctorCmd(g *globals) *cobra.Command {
	var targetURL, sshConfig, tc, power, console, method, cluster, ccacheRemote, guestKernel string
	c := &cobra.Command{
		Use:   "doctor [--target ssh://HOST]",
		Short: "check that this machine has everything a kernel bisect needs",
		Long:  "doctor checks git, kernel build dependencies, ccache, QEMU, busybox-static, KVM and free disk,\nand prints what is missing with the command that installs it. Exit 0 only when everything is there.",
		Args:  cobra.NoArgs,
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			r, err := target.ParseTarget(targetURL, target.Options{SSH: remote.Config{File: sshConfig}, PowerCycle: power, Console: console, BootMethod: method, GuestKernel: guestKernel})
			if err != nil {
				return outcome.InputErr("%v", err)
			}
			checks := localChecks()
			if r != nil {
				checks = append(checks, hostCheck(cmd.Context(), r))
			}
			checks = append(checks, guestChecks()...)
			if tc != "" && tc != "host" {
				c, err := toolchainCheck(tc, g.cacheDir)
				if err != nil {
					return err
				}
				checks = append(checks, c)
			}
			if cluster != "" {
				c, err := clusterChecks(cmd.Context(), cluster)
				if err != nil {
					return err
				}
				checks = append(checks, c...)
			}
			if ccacheRemote != "" {
				note, err := kbuild.CheckRemote(cmd.Context(), ccacheRemote)
				checks = append(checks, check{"team ccache", err, note})
			}
			checks = append(checks, kvmCheck(g.cacheDir), diskCheck(g.cacheDir))
			if printChecks(g, checks) > 0 {
				fmt.Fprintln(g.stdout, "\nrun ./setup.sh (apt-get installs everything above) and try again")
				return status(outcome.ExitInfra)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&targetURL, "target", "qemu", "also check a VM host: ssh://[user@]host[:port] (reachable, authenticated, QEMU, disk, KVM) or a libvirt domain: libvirt:///DOMAIN, libvirt://[user@]host/DOMAIN, or a real machine: machine://[user@]host[:port] (root or sudo, boot method, space, power and console commands)")
	c.Flags().StringVar(&sshConfig, "ssh-config", "", "ssh_config for --target ssh:// and libvirt://HOST (default ~/.ssh/config)")
	c.Flags().StringVar(&power, "power-cycle", "", "with --target machine://: the power-cycle command to check (found, not run)")
	c.Flags().StringVar(&method, "boot-method", "", "with --target machine://: the boot method to check (auto, grub, systemd-boot or kexec)")
	c.Flags().StringVar(&guestKernel, "guest-kernel", "", "with --target machine://: check that the machine can be the VM host of a guest (QEMU there, room for kernels)")
	c.Flags().StringVar(&console, "console", "", "with --target machine://: the console command to check (it must keep running)")
	c.Flags().StringVar(&cluster, "cluster", "", "also list a compile cluster's nodes and slots: distcc or distcc:HOSTS (as build, test and run take it)")
	c.Flags().StringVar(&ccacheRemote, "ccache-remote", "", "also check a team ccache: redis://HOST[:PORT] or http://HOST/PATH (ccache's version, the server answering, where credentials come from)")
	c.Flags().StringVar(&tc, "toolchain", "", "also show a build root: debian:RELEASE or a root's directory (its versions and size)")
	return c
}

// toolchainCheck shows a build root: where it is, what it holds, its size;
// or that the first build will make it.
func toolchainCheck(spec, cacheDir string) (check, error) {
	s, err := toolchain.Parse(spec)
	if err != nil {
		return check{}, err
	}
	name := "build root " + s.String()
	if err := toolchain.Installed(); err != nil {
		return check{name, err, ""}, nil
	}
	if s.Kind == "auto" {
		return check{name, nil, "chosen per commit by the kernel's version: " + toolchain.EraTable()}, nil
	}
	dir := s.Dir
	if s.Kind == "debian" {
		dir = toolchain.RootDir(cachedir.Dir(cacheDir).Roots(), s.Release)
	}
	m := debroot.ReadMade(dir)
	if m == nil && s.Kind == "debian" {
		return check{name, nil, "not made yet: the first build makes it with mmdebstrap (a few minutes, a few hundred MiB)"}, nil
	}
	r := &toolchain.Root{Spec: s, Dir: dir}
	note := r.Describe()
	if m != nil {
		note += fmt.Sprintf("; %d MiB, made %s in %.0f s", m.Bytes>>20, m.Created.Format("2006-01-02"), m.Seconds)
	}
	return check{name, nil, note}, nil
}

// clusterChecks list a --cluster's nodes: each with its slots and whether
// it answers now, then what make -j the next build would use.
func clusterChecks(ctx context.Context, spec string) ([]check, error) {
	c, err := distcc.Parse(spec)
	if err != nil {
		return nil, outcome.InputErr("%v", err)
	}
	if err := distcc.Installed(); err != nil {
		return []check{{"distcc", err, ""}}, nil
	}
	nodes, err := c.Probe(ctx)
	if err != nil {
		return nil, err
	}
	var checks []check
	for _, n := range nodes {
		ch := check{name: "cluster node " + n.Host}
		switch {
		case n.Local:
			ch.note = fmt.Sprintf("this machine, %d slots", n.Slots)
		case n.SSH:
			ch.note = fmt.Sprintf("over SSH, %d slots (distcc starts its distccd; not probed)", n.Slots)
		case n.Up:
			ch.name += fmt.Sprintf(":%d", n.Port)
			ch.note = fmt.Sprintf("distccd answers, %d slots", n.Slots)
		default:
			ch.name += fmt.Sprintf(":%d", n.Port)
			ch.err = fmt.Errorf("distccd does not answer (%s): its share of a build would compile here", n.Err)
		}
		checks = append(checks, ch)
	}
	up, slots := distcc.Up(nodes)
	note := fmt.Sprintf("%s: %d remote nodes answer with %d slots; a build runs make -j%d", c, up, slots, distcc.Jobs(nodes, runtime.NumCPU()))
	return append(checks, check{"cluster", nil, note}), nil
}

// localChecks are the tools a kernel bisect runs here.
func localChecks() []check {
	var checks []check
	if _, err := exec.LookPath("git"); err != nil {
		checks = append(checks, check{"git", fmt.Errorf("git not found: apt-get install git"), ""})
	} else {
		checks = append(checks, check{"git", nil, ""})
	}
	checks = append(checks, check{"kernel build dependencies", kbuild.CheckDeps(kbuild.Options{}), "make, gcc, flex, bison, bc, perl, libelf, libssl"})
	if _, err := exec.LookPath("ccache"); err != nil {
		checks = append(checks, check{"ccache", fmt.Errorf("ccache not found (builds work, but slower): apt-get install ccache"), ""})
	} else {
		checks = append(checks, check{"ccache", nil, ""})
	}
	checks = append(checks, check{"QEMU", (&target.QEMU{}).Check(), "qemu-system-x86_64"})
	// Optional: a note, never a failure.
	ninep := "yes: --rootfs host and debian: can share a root directory"
	if err := (&target.QEMU{}).CheckShare(rootfs.Via9p); err != nil {
		ninep = "no: " + err.Error()
	}
	virtiofs := "yes: --rootfs-share virtiofs can share it over virtiofs (virtiofsd under bwrap)"
	if err := (&target.QEMU{}).CheckShare(rootfs.ViaVirtiofs); err != nil {
		virtiofs = "no: " + err.Error()
	} else if _, err := exec.LookPath("bwrap"); err != nil {
		virtiofs = "no: bwrap not found (apt-get install bubblewrap)"
	}
	microvm := "yes: --machine microvm boots a smaller kernel (no PCI, no ACPI)"
	if err := (&target.QEMU{}).CheckMachine("microvm"); err != nil {
		microvm = "no: " + err.Error()
	}
	debian := "yes: --rootfs debian:RELEASE can make a guest root"
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		debian = "no: mmdebstrap not found (apt-get install mmdebstrap)"
	}
	return append(checks, check{"QEMU 9p (--rootfs host, debian:)", nil, ninep}, check{"QEMU virtiofs (--rootfs-share virtiofs)", nil, virtiofs},
		check{"QEMU microvm (--machine microvm)", nil, microvm}, check{"mmdebstrap (--rootfs debian:)", nil, debian})
}

// hostCheck checks a VM host or libvirt domain, and lets it go.
func hostCheck(ctx context.Context, r target.Hosted) check {
	defer r.Close()
	info, err := r.Check(ctx)
	if err != nil {
		return check{"VM host", err, ""}
	}
	kvm := "no /dev/kvm there: TCG"
	if info.KVM {
		kvm = "/dev/kvm usable there (probed at the first boot)"
	}
	if _, ok := r.(*target.Libvirt); ok {
		kvm = "the domain's own type decides the accelerator"
	}
	if p, ok := r.(*target.Physical); ok {
		return check{"machine", nil, p.Summary()}
	}
	return check{"VM host", nil, fmt.Sprintf("%s; %d MiB free; %s", info, info.FreeMB, kvm)}
}

// guestChecks are what the initramfs is made of.
func guestChecks() []check {
	_, err := guest.FindBusybox()
	self, _ := os.Executable()
	return []check{{"busybox-static", err, ""}, {"static firstbad binary (the guest agent)", guest.CheckStatic(self), self}}
}

func kvmCheck(cacheDir string) check {
	kvm := "device absent: TCG (software emulation) will be used"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		kvm = "device present; whether guests really run under it is probed at the first boot"
		if data, err := filepath.Glob(filepath.Join(cachedir.Dir(cacheDir).Probes(), "accel-*")); err == nil && len(data) > 0 {
			if b, err := os.ReadFile(data[len(data)-1]); err == nil {
				kvm = "probed: " + strings.TrimSpace(string(b))
			}
		}
	}
	return check{"KVM", nil, kvm}
}

func diskCheck(cacheDir string) check {
	_ = os.MkdirAll(cacheDir, 0o755)
	var st syscall.Statfs_t
	if err := syscall.Statfs(cacheDir, &st); err != nil {
		return check{"free disk in the cache dir", err, ""}
	}
	free := st.Bavail * uint64(st.Bsize)
	var err error
	if free < 5<<30 {
		err = fmt.Errorf("only %d MiB free in %s: a kernel bisect needs several GiB (build dirs, artifacts)", free>>20, cacheDir)
	}
	return check{"free disk in the cache dir", err, fmt.Sprintf("%.1f GiB in %s", float64(free)/(1<<30), cacheDir)}
}

// printChecks prints one line per check and returns how many failed.
func printChecks(g *globals, checks []check) int {
	failed := 0
	for _, c := range checks {
		status, msg := "ok  ", c.note
		if c.err != nil {
			status, msg = "MISSING", c.err.Error()
			failed++
		}
		fmt.Fprintf(g.stdout, "%-8s %s", status, c.name)
		if msg != "" {
			fmt.Fprintf(g.stdout, ": %s", msg)
		}
		fmt.Fprintln(g.stdout)
	}
	return failed
}

func gcCmd(g *globals) *cobra.Command {
	var olderThan time.Duration
	var dry bool
	c := &cobra.Command{
		Use:   "gc",
		Short: "remove finished runs, build dirs, cached kernels and clones not used for a while",
		Long: `gc frees space: journals and evidence of finished runs, build dirs and cached
kernels not used within --older-than, and firstbad's clones of repositories that
no longer exist. Unfinished runs are kept; a build dir or checkout in use is never
removed. It reports the space freed.`,
		Args: cobra.NoArgs,
		RunE: g.wrap(func(cmd *cobra.Command, args []string) error {
			s, err := g.session(true)
			if err != nil {
				return err
			}
			f, err := s.GC(olderThan, dry)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(f)
			}
			verb := "freed"
			if dry {
				verb = "would free"
			}
			mib := func(n int64) float64 { return float64(n) / (1 << 20) }
			fmt.Fprintf(g.stdout, "%s %.1f MiB in %d items: runs %.1f MiB, build dirs %.1f MiB, kernels %.1f MiB, clones %.1f MiB, build roots %.1f MiB\n",
				verb, mib(f.Runs+f.Builds+f.Artifacts+f.Clones+f.Roots), f.Items, mib(f.Runs), mib(f.Builds), mib(f.Artifacts), mib(f.Clones), mib(f.Roots))
			return nil
		}),
	}
	c.Flags().DurationVar(&olderThan, "older-than", 30*24*time.Hour, "remove what was last used longer ago than this")
	c.Flags().BoolVar(&dry, "dry-run", false, "only say what would be removed")
	return c
}
