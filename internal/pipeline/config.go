package pipeline

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/remote"
	"github.com/firstbad/firstbad/internal/rootfs"
	"github.com/firstbad/firstbad/internal/target"
)

// KernelConfig is everything a kernel step needs, serializable so that a
// run's journal can rebuild its pipeline on resume.
type KernelConfig struct {
	Build     kbuild.Options `json:"build"`
	CacheSize int64          `json:"cache_size"`
	// ArtifactStore is the URL of a shared artifact store ("" for none).
	ArtifactStore  string        `json:"artifact_store,omitempty"`
	GuestTest      string        `json:"guest_test"`
	Files          []guest.File  `json:"guest_files,omitempty"`
	Timeout        time.Duration `json:"timeout"`
	BootTimeout    time.Duration `json:"boot_timeout"`
	RebootEach     bool          `json:"reboot_each,omitempty"`
	BootFailureBad bool          `json:"boot_failure_bad,omitempty"`
	CrashMatch     string        `json:"crash_match,omitempty"`
	// AnyCrash counts every crash as bad; otherwise a crash titled unlike
	// the run's signature (its first crash judged bad) is a skip.
	AnyCrash bool      `json:"any_crash,omitempty"`
	Accel    string    `json:"accel"`
	MemMiB   int       `json:"memory_mib"`
	CPUs     int       `json:"cpus"`
	Append   string    `json:"append,omitempty"`
	Host     *HostTest `json:"host_test,omitempty"`
	// Target is where kernels boot: "" (local QEMU), ssh://[user@]host[:port]
	// or libvirt://[host]/DOMAIN.
	Target    string `json:"target,omitempty"`
	SSHConfig string `json:"ssh_config,omitempty"`
	// TakeOver lets a libvirt target stop a domain running something else.
	TakeOver bool `json:"take_over_domain,omitempty"`
	// A real machine's power-cycle and console commands, and whether to
	// leave it in the last candidate at the end (machine:// targets).
	PowerCycle   string `json:"power_cycle,omitempty"`
	BootMethod   string `json:"boot_method,omitempty"`
	Console      string `json:"console,omitempty"`
	LeaveRunning bool   `json:"leave_running,omitempty"`
	// Init is "system" to boot the root's own init (--init).
	Init string `json:"init,omitempty"`
	// Machine is QEMU's machine type: "" (q35) or microvm.
	Machine string `json:"machine,omitempty"`
	// RootfsShare is how a shared root reaches the guest: 9p or
	// virtiofs (rootfs.Via*).
	RootfsShare string `json:"rootfs_share,omitempty"`
	// GuestKernel makes the machine the VM host of a guest booting it.
	GuestKernel string `json:"guest_kernel,omitempty"`
	// Rootfs is what the guest test runs on (--rootfs, rootfs.Parse):
	// "" or "busybox" (firstbad's initramfs), host, image:FILE or
	// debian:RELEASE[+PKG,...].
	Rootfs string `json:"rootfs,omitempty"`
}

// NewTarget makes the target c names; problems the user can fix are
// input errors (outcome.Input).
func NewTarget(ctx context.Context, c KernelConfig, cacheDir string, log *slog.Logger) (target.Target, error) {
	probes := cachedir.Dir(cacheDir).Probes()
	self, _ := os.Executable()
	r, err := target.ParseTarget(c.Target, target.Options{SSH: remote.Config{File: c.SSHConfig}, Accel: c.Accel,
		CacheDir: probes, Log: log, Probe: ProbeKVM, TakeOver: c.TakeOver, PowerCycle: c.PowerCycle, Console: c.Console, BootMethod: c.BootMethod,
		BootTimeout: c.BootTimeout, LeaveRunning: c.LeaveRunning, Agent: self, GuestKernel: c.GuestKernel})
	if err != nil {
		return nil, outcome.InputErr("%v", err)
	}
	if r == nil {
		q := &target.QEMU{Accel: c.Accel, CacheDir: probes, Log: log, Probe: ProbeKVM}
		if err := q.Check(); err != nil {
			return nil, outcome.InputErr("%v", err)
		}
		return q, nil
	}
	if _, ok := r.(*target.Libvirt); ok && c.Host != nil {
		return nil, outcome.InputErr("--host-test needs a port forwarded into the guest, which a libvirt domain's own NICs do not give: use --target qemu or ssh://HOST for host-side tests")
	}
	// Before the first step: reachable, authenticated, QEMU and room there
	// (a machine may first have to come back from a killed run's kernel).
	within := time.Minute
	if p, ok := r.(*target.Physical); ok {
		within = p.BootGrace()
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if _, err := r.Check(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// CheckRootfs parses --rootfs: every mode but busybox runs on local QEMU.
func CheckRootfs(s, tgt string) (rootfs.Spec, error) {
	spec, err := rootfs.Parse(s)
	if err != nil {
		return spec, err
	}
	if !spec.Busybox() && tgt != "" && tgt != "qemu" {
		return spec, outcome.InputErr("--rootfs %s runs on a local QEMU guest: it does not go with --target %s", s, tgt)
	}
	if spec.Kind == "image" {
		if _, err := os.Stat(spec.Image); err != nil {
			return spec, outcome.InputErr("--rootfs %s: %v", s, err)
		}
	}
	return spec, nil
}

// NewGuestTest checks the host (busybox, QEMU, a static firstbad) and builds
// the boot-and-test stage. Problems the user can fix are input errors.
func NewGuestTest(ctx context.Context, c KernelConfig, cacheDir string, log *slog.Logger) (*GuestTest, error) {
	spec, err := CheckRootfs(c.Rootfs, c.Target)
	if err != nil {
		return nil, err
	}
	if spec.Via = c.RootfsShare; spec.Via == "" {
		spec.Via = rootfs.Via9p
	}
	var re *regexp.Regexp
	if c.CrashMatch != "" {
		var err error
		if re, err = regexp.Compile(c.CrashMatch); err != nil {
			return nil, outcome.InputErr("--crash-match: %v", err)
		}
	}
	busybox, err := guest.FindBusybox()
	if err != nil {
		return nil, outcome.InputErr("%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := guest.CheckStatic(self); err != nil {
		return nil, outcome.InputErr("%v", err)
	}
	q, err := NewTarget(ctx, c, cacheDir, log)
	if err != nil {
		return nil, err
	}
	if qemu, ok := q.(*target.QEMU); ok {
		err := qemu.CheckMachine(c.Machine)
		if err == nil && spec.Shared() {
			err = qemu.CheckShare(spec.Via)
		}
		if err != nil {
			return nil, outcome.InputErr("%v", err)
		}
	}
	root, err := rootfs.Prepare(ctx, spec, cachedir.Dir(cacheDir), log)
	if err != nil {
		return nil, err
	}
	base, err := guest.Cached(cachedir.Dir(cacheDir).Initramfs(), self, busybox)
	if err != nil {
		return nil, outcome.InfraErr("initramfs", err)
	}
	gt := &GuestTest{Target: q, BaseInitrd: base, Test: c.GuestTest, Files: c.Files, Timeout: c.Timeout,
		BootTimeout: c.BootTimeout, RebootEach: c.RebootEach, BootFailureBad: c.BootFailureBad, CrashMatch: re,
		MemMiB: c.MemMiB, CPUs: c.CPUs, Net: true, Cmdline: c.Append, Host: c.Host, Root: root, Init: c.Init, Machine: c.Machine, Log: log}
	if p, ok := q.(*target.Physical); ok {
		gt.machine = &machineBuild{p: p, dir: filepath.Join(cacheDir, "machine-configs")}
		gt.BootTimeout = p.BootGrace()
		// Fetched now, while the machine runs its default kernel, not
		// in the middle of the run (BuildOptions would fetch lazily).
		if _, err := gt.BuildOptions(ctx, c.Build); err != nil {
			gt.Close()
			return nil, err
		}
	}
	return gt, nil
}

// machineBuild is how kernels for a real machine are built: with modules
// and firstbad's machine fragment, from the machine's own config when the
// base is "machine" (fetched once).
type machineBuild struct {
	p             *target.Physical
	dir           string
	config, lsmod string
}

// BuildOptions are the build options for kernels this stage boots: o as
// given for a VM; for a machine, see machineBuild.
func (g *GuestTest) BuildOptions(ctx context.Context, o kbuild.Options) (kbuild.Options, error) {
	m := g.machine
	if m == nil {
		if o.Base == "machine" {
			return o, outcome.InputErr("--base-config machine takes the config of the machine of --target machine://HOST")
		}
		if o.TrimModules == "machine" {
			return o, outcome.InputErr("--trim-modules machine takes the modules loaded on the machine of --target machine://HOST (or give a file of lsmod's output)")
		}
		o.Target = kbuild.QEMUTarget(g.Machine)
		if g.Root != nil {
			// Last: what the mode needs overrides the user's fragments.
			names := []string{g.Root.Spec.Fragment()}
			if g.Init == guest.InitSystem {
				names = append(names, "init-system")
			}
			o.Fragments = append([]kbuild.Fragment(nil), o.Fragments...)
			for _, n := range names {
				f, err := kbuild.TargetFragment(n)
				if err != nil {
					return o, err
				}
				o.Fragments = append(o.Fragments, f)
			}
		}
		return o, nil
	}
	o.Modules, o.Target = true, "machine-x86_64"
	var err error
	if o.Base == "machine" {
		if o.Base, err = fetchOnce(ctx, &m.config, m.dir, m.p.FetchConfig); err != nil {
			return o, err
		}
	}
	if o.TrimModules == "machine" {
		if o.TrimModules, err = fetchOnce(ctx, &m.lsmod, m.dir, m.p.FetchLsmod); err != nil {
			return o, err
		}
	}
	if _, err := m.p.Check(ctx); err != nil {
		return o, err
	}
	if m.p.BootMethod() == "systemd-boot" {
		// Last, like a rootfs mode's: what the boot loader needs wins.
		f, err := kbuild.TargetFragment("machine-efi")
		if err != nil {
			return o, err
		}
		o.Fragments = append(append([]kbuild.Fragment(nil), o.Fragments...), f)
	}
	return o, nil
}

// fetchOnce is *have, fetched first if empty.
func fetchOnce(ctx context.Context, have *string, dir string, fetch func(context.Context, string) (string, error)) (string, error) {
	if *have == "" {
		p, err := fetch(ctx, dir)
		if err != nil {
			return "", err
		}
		*have = p
	}
	return *have, nil
}

// NewKernelStep assembles build + boot + test for a run, with the
// boot-and-test stage made once (NewGuestTest) for the run.
func NewKernelStep(ctx context.Context, c KernelConfig, wt *git.Worktree, gt *GuestTest, cacheDir string, log *slog.Logger) (*KernelStep, error) {
	opts, err := gt.BuildOptions(ctx, c.Build)
	if err != nil {
		return nil, err
	}
	b := &kbuild.Builder{CacheDir: cacheDir, CacheSize: c.CacheSize, Log: log}
	if c.ArtifactStore != "" {
		if b.Store, err = artstore.New(c.ArtifactStore); err != nil {
			return nil, outcome.InputErr("%v", err)
		}
	}
	return &KernelStep{Test: gt, Build: &KernelBuild{Worktree: wt, Opts: opts, Builder: b}}, nil
}

// ProbeKVM boots b under KVM and waits briefly for the guest agent's start
// marker: QEMU starting is not enough (on some hosts KVM guests start and
// print nothing), only a sign of life from the guest counts.
func ProbeKVM(ctx context.Context, start target.StartFunc, b target.Boot) bool {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b.Dir = filepath.Join(b.Dir, "kvm-probe")
	b.Interactive = false
	m, err := start(ctx, b, "kvm")
	if err != nil {
		return false
	}
	defer func() { m.Stop(); m.Wait() }()
	for {
		select {
		case <-ctx.Done():
			return false
		case line, ok := <-m.Lines():
			if !ok {
				return false
			}
			if strings.Contains(line, guest.StartMarker+" nonce=") {
				return true
			}
		}
	}
}
