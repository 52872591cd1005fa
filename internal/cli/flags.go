package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/distcc"
	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/rootfs"
	"github.com/firstbad/firstbad/internal/target"
	"github.com/firstbad/firstbad/internal/toolchain"
)

// maxRepeat bounds --repeat: more runs than this per step is a typo, and
// each run keeps its evidence.
const maxRepeat = 1000

// guestFlags are the boot-and-test options shared by boot, test and run.
type guestFlags struct {
	test        string
	files       []string
	timeout     time.Duration
	bootTimeout time.Duration
	repeat      int
	rebootEach  bool
	bootFailure string
	crashMatch  string
	anyCrash    bool
	accel       string
	memory      int
	cpus        int
	appendLine  string
	hostTest    string
	forwards    []int
	unreachable string
	target      string
	sshConfig   string
	takeOver    bool
	powerCycle  string
	bootMethod  string
	console     string
	leave       bool
	guestKernel string
	rootfs      string
	rootfsShare string
	init        string
	machine     string
}

// hasTest says whether a guest or a host test was given.
func (gf *guestFlags) hasTest() bool { return gf.test != "" || gf.hostTest != "" }

// register adds the flags; withRunFlags adds --timeout and --repeat too
// (run has its own, shared with --exec).
func (gf *guestFlags) register(c *cobra.Command, withRunFlags bool) {
	f := c.Flags()
	f.StringVar(&gf.test, "guest-test", "", "script run with /bin/sh inside the guest (exit 0 good, 1-127 bad, 125 skip)")
	f.StringArrayVar(&gf.files, "guest-file", nil, "extra file for the guest, SRC[:DEST]; repeatable")
	f.StringVar(&gf.rootfs, "rootfs", "busybox", rootfs.Usage)
	f.StringVar(&gf.init, "init", "agent", "with --rootfs image: or debian:, what starts the test: agent (firstbad's /init, the test chrooted in the root) or system (the root's own init boots, systemd, and runs the test as a service)")
	f.StringVar(&gf.rootfsShare, "rootfs-share", rootfs.Via9p, "how --rootfs host and debian: reach the guest: 9p (QEMU's own) or virtiofs (virtiofsd, this machine's or from a Debian trixie root made once, under bwrap)")
	if withRunFlags {
		f.DurationVar(&gf.timeout, "timeout", pipeline.DefaultTestTimeout, "deadline for one run of the guest test; overrunning is bad (hang)")
		f.IntVar(&gf.repeat, "repeat", 1, "runs of the guest test per step, in one boot (see --reboot-each)")
		f.BoolVar(&gf.anyCrash, "any-crash", false, "count any crash as bad (default: a crash titled otherwise than the run's first is a skip, \"another crash\")")
	}
	f.DurationVar(&gf.bootTimeout, "boot-timeout", 0, "deadline for a boot: QEMU start to the guest agent's start (default 1m; 3m with --init system), or a machine's reboot, down to up (default 10m)")
	f.BoolVar(&gf.rebootEach, "reboot-each", false, "boot afresh for every run of --repeat")
	f.StringVar(&gf.bootFailure, "boot-failure", "skip", "what a kernel that does not boot means: skip or bad")
	f.StringVar(&gf.crashMatch, "crash-match", "", "regexp: a crash whose title does not match is a skip, not bad")
	machineFlag(f, &gf.machine)
	f.StringVar(&gf.accel, "accel", "auto", "QEMU accelerator: kvm, tcg, or auto (probe KVM once, fall back to TCG)")
	f.IntVar(&gf.memory, "memory", 512, "guest memory in MiB")
	f.IntVar(&gf.cpus, "cpus", 1, "guest CPUs")
	f.StringVar(&gf.appendLine, "append", "", "extra kernel command line")
	f.StringVar(&gf.hostTest, "host-test", "", "executable run on the host once the guest is up, reaching it with $FIRSTBAD_SSH (alone or with --guest-test, concurrently)")
	f.IntSliceVar(&gf.forwards, "forward", nil, "guest TCP port the host test reaches at 127.0.0.1:$FIRSTBAD_GUEST_PORT_<port>; repeatable")
	f.StringVar(&gf.unreachable, "unreachable", "skip", "what a guest SSH never reaches means for --host-test: skip or bad")
	f.StringVar(&gf.target, "target", "qemu", "where kernels boot: qemu (local), ssh://[user@]host[:port][?dir=DIR&qemu=BINARY] (QEMU on a VM host), libvirt:///DOMAIN, libvirt://[user@]host/DOMAIN[?uri=URI&dir=DIR] (an existing libvirt domain), or machine://[user@]host[:port][?boot=METHOD&qemu=BINARY] (a real machine that boots the candidates itself)")
	f.StringVar(&gf.sshConfig, "ssh-config", "", "ssh_config for --target ssh:// and libvirt://HOST (default ~/.ssh/config)")
	f.BoolVar(&gf.takeOver, "take-over-domain", false, "let a libvirt target stop its domain even if it runs something else (its definition is restored at the end)")
	f.StringVar(&gf.bootMethod, "boot-method", "", "machine:// targets: how a candidate is booted once: auto (the boot loader that booted the machine, systemd-boot or GRUB, else kexec), grub (a one-shot entry and a reboot), systemd-boot (an entry on the ESP, bootctl set-oneshot, a reboot) or kexec (no firmware reboot); the same as the URL's ?boot=")
	f.StringVar(&gf.powerCycle, "power-cycle", "", "machine:// targets: command (sh -c, run here) that power-cycles the machine when it stops answering, e.g. ipmitool ... chassis power cycle")
	f.StringVar(&gf.console, "console", "", "machine:// targets: command (sh -c, run here) whose output is the machine's serial console, e.g. ipmitool ... sol activate; kept as evidence and read for crashes")
	f.StringVar(&gf.guestKernel, "guest-kernel", "", "machine:// targets: make the machine the VM host of a guest that boots this kernel (a bzImage) in QEMU there: the machine's kernel is bisected, the tests run in the guest (name the machine's QEMU with ?qemu=BINARY)")
	f.BoolVar(&gf.leave, "leave-running", false, "machine:// targets: at the end, leave the machine in the last candidate (default: reboot it into its default kernel)")
}

// config checks the flags, once, and turns them into a kernel step's
// config. Problems are input errors naming the flag.
func (gf *guestFlags) config() (pipeline.KernelConfig, error) {
	var none pipeline.KernelConfig
	if err := gf.checkValues(); err != nil {
		return none, err
	}
	host, err := gf.hostTestConfig()
	if err != nil {
		return none, err
	}
	if gf.guestKernel != "" {
		if gf.guestKernel, err = filepath.Abs(gf.guestKernel); err != nil {
			return none, outcome.InputErr("--guest-kernel: %v", err)
		}
	}
	if _, err := target.ParseTarget(gf.target, target.Options{BootMethod: gf.bootMethod, GuestKernel: gf.guestKernel}); err != nil {
		return none, outcome.InputErr("%v", err)
	}
	if gf.sshConfig != "" {
		abs, err := filepath.Abs(gf.sshConfig)
		if err != nil {
			return none, outcome.InputErr("--ssh-config: %v", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return none, outcome.InputErr("--ssh-config: %v", err)
		}
		gf.sshConfig = abs
	}
	var files []guest.File
	for _, a := range gf.files {
		f, err := guest.ParseFile(a)
		if err != nil {
			return none, outcome.InputErr("%v", err)
		}
		files = append(files, f)
	}
	test := gf.test
	if test != "" {
		if test, err = filepath.Abs(test); err != nil {
			return none, outcome.InputErr("--guest-test: %v", err)
		}
	}
	return pipeline.KernelConfig{GuestTest: test, Files: files, Timeout: gf.timeout, BootTimeout: gf.bootTimeout,
		RebootEach: gf.rebootEach, BootFailureBad: gf.bootFailure == "bad", CrashMatch: gf.crashMatch, AnyCrash: gf.anyCrash, Accel: gf.accel,
		MemMiB: gf.memory, CPUs: gf.cpus, Append: gf.appendLine, Host: host, Target: gf.target, SSHConfig: gf.sshConfig,
		TakeOver: gf.takeOver, PowerCycle: gf.powerCycle, Console: gf.console, BootMethod: gf.bootMethod, LeaveRunning: gf.leave,
		GuestKernel: gf.guestKernel, Rootfs: rootfsValue(gf.rootfs), RootfsShare: shareValue(gf.rootfs, gf.rootfsShare),
		Init: initValue(gf.init), Machine: machineValue(gf.machine)}, nil
}

// machineFlag registers --machine (boot, test, run and build).
func machineFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "machine", "q35", "QEMU machine type the kernels are built for and boot on: q35 (PCI, ACPI) or microvm (virtio-mmio, no PCI or ACPI: a smaller kernel; for bugs that need neither)")
}

// checkMachine rejects an unknown --machine.
func checkMachine(m string) error {
	if !slices.Contains(target.Machines, m) {
		return outcome.InputErr("--machine must be one of %s", strings.Join(target.Machines, ", "))
	}
	return nil
}

// machineValue is --machine as the run keeps it: "" for q35, the default.
func machineValue(m string) string {
	if target.Microvm(m) {
		return m
	}
	return ""
}

// rootfsValue is --rootfs as the run keeps it: "" for busybox, an image's
// path absolute (checkValues parsed it already).
func rootfsValue(s string) string {
	spec, _ := rootfs.Parse(s)
	if spec.Busybox() {
		return ""
	}
	return spec.String()
}

// shareValue is --rootfs-share as the run keeps it: "" for 9p, the
// default, and where nothing is shared.
func shareValue(root, via string) string {
	if spec, _ := rootfs.Parse(root); !spec.Shared() || via == rootfs.Via9p {
		return ""
	}
	return via
}

// initValue is --init as the run keeps it: "" for firstbad's agent, the
// default.
func initValue(init string) string {
	if init == guest.InitSystem {
		return init
	}
	return ""
}

// checkValues rejects values that would silently mean something else.
func (gf *guestFlags) checkValues() error {
	if gf.test != "" {
		if fi, err := os.Stat(gf.test); err != nil || fi.IsDir() {
			return outcome.InputErr("--guest-test %s: not a readable file", gf.test)
		}
	}
	if err := checkMachine(gf.machine); err != nil {
		return err
	}
	switch {
	case gf.bootFailure != "skip" && gf.bootFailure != "bad":
		return outcome.InputErr("--boot-failure must be skip or bad")
	case !slices.Contains([]string{"kvm", "tcg", "auto"}, gf.accel):
		return outcome.InputErr("--accel must be kvm, tcg or auto")
	case gf.repeat < 1 || gf.repeat > maxRepeat:
		return outcome.InputErr("--repeat must be between 1 and %d", maxRepeat)
	case gf.timeout < 0:
		return outcome.InputErr("--timeout must be positive (it bounds one run of the test)")
	case gf.bootTimeout < 0:
		return outcome.InputErr("--boot-timeout must be positive")
	case !strings.HasPrefix(gf.target, "machine://") && (gf.powerCycle != "" || gf.console != "" || gf.leave || gf.bootMethod != "" || gf.guestKernel != ""):
		return outcome.InputErr("--power-cycle, --console, --boot-method, --leave-running and --guest-kernel are for --target machine://HOST")
	case target.Microvm(gf.machine) && (strings.HasPrefix(gf.target, "machine://") || strings.HasPrefix(gf.target, "libvirt://")):
		return outcome.InputErr("--machine microvm is QEMU's machine type for the guests firstbad starts (--target qemu or ssh://HOST): a machine:// or libvirt:// target boots on its own hardware")
	case gf.guestKernel != "" && !isKernelImage(gf.guestKernel):
		return outcome.InputErr("--guest-kernel %s: not a readable x86 kernel image (a bzImage)", gf.guestKernel)
	case gf.memory < 64:
		return outcome.InputErr("--memory %d: give at least 64 (MiB)", gf.memory)
	case gf.cpus < 1 || gf.cpus > 64:
		return outcome.InputErr("--cpus %d: give 1 to 64", gf.cpus)
	}
	spec, err := pipeline.CheckRootfs(gf.rootfs, gf.target)
	if err != nil {
		return err
	}
	switch {
	case gf.rootfsShare != rootfs.Via9p && gf.rootfsShare != rootfs.ViaVirtiofs:
		return outcome.InputErr("--rootfs-share must be 9p or virtiofs")
	case gf.rootfsShare != rootfs.Via9p && !spec.Shared():
		return outcome.InputErr("--rootfs-share is how --rootfs host and debian: reach the guest: it does not go with --rootfs %s", gf.rootfs)
	case gf.init != "agent" && gf.init != guest.InitSystem:
		return outcome.InputErr("--init must be agent or system")
	case gf.init == guest.InitSystem && spec.Kind != "image" && spec.Kind != "debian":
		return outcome.InputErr("--init system boots the init of --rootfs image:FILE or debian:RELEASE: it does not go with --rootfs %s", gf.rootfs)
	}
	if gf.crashMatch != "" {
		if _, err := regexp.Compile(gf.crashMatch); err != nil {
			return outcome.InputErr("--crash-match: %v", err)
		}
	}
	return nil
}

func (gf *guestFlags) hostTestConfig() (*pipeline.HostTest, error) {
	if gf.hostTest == "" {
		if len(gf.forwards) > 0 {
			return nil, outcome.InputErr("--forward is for --host-test")
		}
		return nil, nil
	}
	abs, err := filepath.Abs(gf.hostTest)
	if err != nil {
		return nil, outcome.InputErr("--host-test: %v", err)
	}
	if err := pipeline.CheckHostTest(abs); err != nil {
		return nil, outcome.InputErr("%v", err)
	}
	if gf.unreachable != "skip" && gf.unreachable != "bad" {
		return nil, outcome.InputErr("--unreachable must be skip or bad")
	}
	for _, p := range gf.forwards {
		if p < 1 || p > 65535 || p == guest.SSHPort {
			return nil, outcome.InputErr("--forward %d: give a guest TCP port other than 22 (SSH is always forwarded)", p)
		}
	}
	return &pipeline.HostTest{File: abs, Forwards: gf.forwards, UnreachableBad: gf.unreachable == "bad"}, nil
}

// tester checks the host (QEMU, busybox, a static firstbad, the VM host)
// and makes the boot-and-test stage: once per command.
func (g *globals) tester(ctx context.Context, kc pipeline.KernelConfig, shell bool, log *slog.Logger) (*pipeline.GuestTest, error) {
	gt, err := pipeline.NewGuestTest(ctx, kc, g.cacheDir, log)
	if err != nil {
		return nil, err
	}
	gt.Shell = shell
	return gt, nil
}

// kbuildFlags are the kernel build options shared by build, test and run.
type kbuildFlags struct {
	opts      kbuild.Options
	kconfig   []string
	cacheSize int64
	store     string
}

func (k *kbuildFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&k.opts.Base, "base-config", "tinyconfig", "base config: tinyconfig, defconfig, a .config file, or machine (the running config of --target machine://HOST)")
	f.StringVar(&k.opts.TrimModules, "trim-modules", "", "turn off the base config's modules a machine does not load (make localmodconfig): machine (lsmod on --target machine://HOST) or a file of lsmod's output")
	f.StringArrayVar(&k.kconfig, "kconfig", nil, "config fragment whose options are all required; repeatable")
	f.StringVar(&k.opts.Arch, "arch", "x86_64", "ARCH to build for")
	f.StringVar(&k.opts.CC, "cc", "", "compiler (default: ccache gcc when ccache exists)")
	f.BoolVar(&k.opts.LLVM, "llvm", false, "build with LLVM=1")
	f.StringVar(&k.opts.CrossCompile, "cross-compile", "", "CROSS_COMPILE prefix")
	f.IntVarP(&k.opts.Jobs, "jobs", "j", 0, "parallel jobs (default: number of CPUs)")
	f.DurationVar(&k.opts.Timeout, "build-timeout", 0, "deadline for one build (default none)")
	f.BoolVar(&k.opts.NoCcache, "no-ccache", false, "do not use ccache")
	f.Int64Var(&k.cacheSize, "cache-size", kbuild.DefaultCacheSize, "artifact cache bound in bytes (least recently used kernels go first)")
	f.StringVar(&k.store, "artifact-store", "", "URL of a shared artifact store (plain HTTP GET/PUT, e.g. nginx with WebDAV): kernels missing here are fetched from it (checked by size and sha256), kernels built here are shared there; credentials from ~/.netrc")
	f.StringVar(&k.opts.Cluster, "cluster", "", distcc.Usage)
	f.StringVar(&k.opts.CcacheRemote, "ccache-remote", "", "team ccache behind the local one: ccache's remote storage, redis://HOST[:PORT] or http://HOST/PATH; credentials from FIRSTBAD_CCACHE_REMOTE_USER/_PASSWORD or ~/.netrc")
	f.StringVar(&k.opts.Toolchain, "toolchain", "host", "where builds run: host, auto (the kernel's era decides: a Debian release's toolchain in a build root), debian:RELEASE (bullseye gcc 10, bookworm gcc 12, trixie gcc 14), or a build root's directory")
	f.BoolVar(&k.opts.NoBuildFixes, "no-build-fixes", false, "never apply the known upstream fixes that let older trees build with newer toolchains")
}

// options parses the fragments; a missing or malformed one is an input
// error.
func (k *kbuildFlags) options() (kbuild.Options, error) {
	o := k.opts
	o.Fragments = nil
	switch {
	case o.Jobs < 0:
		return o, outcome.InputErr("--jobs must be 0 (all CPUs) or more")
	case o.Timeout < 0:
		return o, outcome.InputErr("--build-timeout must be positive")
	case k.cacheSize <= 0:
		return o, outcome.InputErr("--cache-size must be positive (bytes)")
	}
	if k.store != "" {
		if _, err := artstore.New(k.store); err != nil {
			return o, outcome.InputErr("%v", err)
		}
	}
	if _, err := toolchain.Parse(o.Toolchain); err != nil {
		return o, err
	}
	if err := kbuild.CheckSharing(o); err != nil {
		return o, err
	}
	if o.TrimModules != "" && o.TrimModules != "machine" {
		abs, err := filepath.Abs(o.TrimModules)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return o, outcome.InputErr("--trim-modules: %v (give machine, or a file of lsmod's output)", err)
		}
		o.TrimModules = abs
	}
	for _, p := range k.kconfig {
		f, err := kbuild.ReadFragment(p)
		if err != nil {
			return o, outcome.InputErr("--kconfig: %v", err)
		}
		o.Fragments = append(o.Fragments, f)
	}
	return o, nil
}

// kernelOnly names the flags of c that only a kernel run uses: given with
// --exec they would do nothing, which is an error naming them.
func kernelOnly(c *cobra.Command) error {
	shared := []string{"timeout", "repeat", "config"}
	var given []string
	c.Flags().Visit(func(f *pflag.Flag) {
		if f.Annotations[kernelFlag] != nil && !slices.Contains(shared, f.Name) {
			given = append(given, "--"+f.Name)
		}
	})
	if len(given) == 0 {
		return nil
	}
	return outcome.InputErr("%s only apply to kernel runs (--guest-test or --host-test); with --exec they would do nothing", strings.Join(given, ", "))
}

// kernelFlag annotates the flags that kernel runs use.
const kernelFlag = "firstbad/kernel"

// markKernelFlags annotates every flag of c not in before as kernel-only.
func markKernelFlags(c *cobra.Command, before map[string]bool) {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if !before[f.Name] {
			_ = c.Flags().SetAnnotation(f.Name, kernelFlag, []string{"1"})
		}
	})
}

// flagNames is the set of c's flags so far.
func flagNames(c *cobra.Command) map[string]bool {
	names := map[string]bool{}
	c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
	return names
}
