package kbuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/firstbad/firstbad/internal/artstore"
	"github.com/firstbad/firstbad/internal/cachedir"
	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/proc"
	"github.com/firstbad/firstbad/internal/toolchain"
)

// Options choose how a kernel is configured and compiled.
type Options struct {
	Base         string     // tinyconfig (default), defconfig, or a .config file
	Fragments    []Fragment // the user's; every option is required
	Target       string     // built-in required fragment (default qemu-x86_64)
	Arch         string     // default x86_64
	CC           string     // compiler; default "ccache gcc" when ccache exists, else gcc
	LLVM         bool
	CrossCompile string
	Jobs         int           // default: number of CPUs
	Timeout      time.Duration // one build; 0 = none
	NoCcache     bool
	// Toolchain is where builds run: host (default), auto, debian:RELEASE
	// or a build root's directory (see package toolchain).
	Toolchain string
	// NoBuildFixes turns off the known upstream fixes applied to trees
	// that fail to build without them.
	NoBuildFixes bool
	// Modules builds and keeps the modules too, for a kernel installed on
	// a real machine: the artifact holds them (modules.tar, lib/modules/
	// RELEASE) and System.map, and the release is unique per artifact
	// (LOCALVERSION -firstbad-KEY) so candidates never overwrite each
	// other's modules or the distribution's.
	Modules bool `json:"modules,omitempty"`
	// TrimModules, if set, is a file of lsmod's output: every module of
	// the base that it does not list is turned off (make localmodconfig),
	// so a distribution's config builds only what the machine loads.
	TrimModules string `json:"trim_modules,omitempty"`
	// Cluster routes ccache's misses through distcc (package distcc);
	// CcacheRemote is ccache's remote storage behind the local cache
	// (a URL without credentials). Neither changes the kernel: not part
	// of any key.
	Cluster      string `json:"cluster,omitempty"`
	CcacheRemote string `json:"ccache_remote,omitempty"`
}

func (o Options) withDefaults() Options {
	if o.Base == "" {
		o.Base = "tinyconfig"
	}
	if o.Target == "" {
		o.Target = "qemu-x86_64"
	}
	if o.Arch == "" {
		o.Arch = "x86_64"
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	return o
}

// Result is one build's outcome. A commit that cannot be built (compile
// error, required option unavailable) has Verdict "skip" and a Reason.
type Result struct {
	Kernel      string   `json:"kernel"`
	Modules     string   `json:"modules,omitempty"` // modules.tar (Options.Modules)
	Key         string   `json:"key"`
	Version     string   `json:"version"`
	Release     string   `json:"release,omitempty"` // the image's UTS_RELEASE
	BuildS      float64  `json:"build_s"`
	Cached      bool     `json:"cached"`
	Missing     []string `json:"missing_options"`
	Verdict     string   `json:"verdict"`
	Reason      string   `json:"reason"`
	Log         string   `json:"build_log"`
	ConfigPath  string   `json:"config"`
	Compiled    int      `json:"compiled"`     // objects compiled by this build
	CcacheHits  int      `json:"ccache_hits"`  // of those, served by ccache
	BuildSystem bool     `json:"build_system"` // the build system changed since this build dir's last build
	// Toolchain names what built it: release or root, gcc, binutils.
	Toolchain string `json:"toolchain"`
	// Fixes are the upstream build fixes applied to the tree for this
	// build (they change the kernel: part of its key).
	Fixes []string `json:"fixes,omitempty"`
	// SameAs is the commit whose kernel this one is (the tree changed
	// since in no file that build read): taken, not built.
	SameAs string `json:"same_as,omitempty"`
	// RemoteHits are the compiles the team ccache served (--ccache-remote).
	RemoteHits int `json:"ccache_remote_hits,omitempty"`
	// Cluster says how the compiles went out (--cluster): the nodes that
	// answered, make -j, and the compiles given back to this machine.
	Cluster      string `json:"cluster,omitempty"`
	ClusterLocal int    `json:"cluster_local,omitempty"`
}

// Builder builds kernels under a cache dir: build dirs, the artifact cache
// and the ccache stats live there.
type Builder struct {
	CacheDir  string
	CacheSize int64 // artifact cache bound in bytes; 0 = default
	Log       *slog.Logger
	// Store, if set, shares built kernels with other machines.
	Store *artstore.Store
	// sameOff, once set, says why same-kernel reuse is off for this
	// Builder's life (checkPremise).
	sameOff atomic.Pointer[string]
}

// Request is one commit to build.
type Request struct {
	Src    string // the checkout, at Commit
	Commit string
	Tree   string // the commit's tree hash: part of the artifact key
	Opts   Options
	LogDir string // where the build log goes
}

// CheckTree says whether dir is a kernel source tree.
func CheckTree(dir string) error {
	mk, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil || !bytes.Contains(mk, []byte("kernelversion")) {
		return outcome.InputErr("%s is not a Linux kernel tree (no top-level Makefile with a kernelversion target)", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "Kconfig")); err != nil {
		return outcome.InputErr("%s is not a Linux kernel tree (no top-level Kconfig)", dir)
	}
	return nil
}

// CheckDeps lists missing build dependencies as one actionable message.
func CheckDeps(o Options) error {
	o = o.withDefaults()
	type dep struct{ what, pkg string }
	var missing []dep
	for _, d := range []dep{{"make", "make"}, {"flex", "flex"}, {"bison", "bison"}, {"bc", "bc"}, {"perl", "perl"}} {
		if _, err := exec.LookPath(d.what); err != nil {
			missing = append(missing, d)
		}
	}
	cc := compilerBinary(o)
	if _, err := exec.LookPath(cc); err != nil {
		missing = append(missing, dep{cc, map[bool]string{true: "clang lld llvm", false: "gcc"}[o.LLVM]})
	}
	for _, h := range []struct{ path, pkg string }{{"/usr/include/gelf.h", "libelf-dev"}, {"/usr/include/openssl/ssl.h", "libssl-dev"}} {
		if _, err := os.Stat(h.path); err != nil {
			missing = append(missing, dep{h.path, h.pkg})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var what, pkgs []string
	for _, d := range missing {
		what = append(what, d.what)
		pkgs = append(pkgs, d.pkg)
	}
	return outcome.InfraErr("build", fmt.Errorf("kernel build dependencies missing: %s; install them with: apt-get install %s (or run ./setup.sh)",
		strings.Join(what, ", "), strings.Join(pkgs, " ")))
}

// QEMUTarget is the built-in fragment for kernels that boot on a QEMU
// machine type (target.Machines): q35's unless microvm.
func QEMUTarget(machine string) string {
	if machine == "microvm" {
		return "qemu-microvm-x86_64"
	}
	return "qemu-x86_64"
}

// Required is the full list of required options for o: the target's
// fragment, then the user's.
func Required(o Options) ([]Option, error) {
	o = o.withDefaults()
	tf, err := TargetFragment(o.Target)
	if err != nil {
		return nil, err
	}
	return Merge(append([]Fragment{tf}, o.Fragments...)...), nil
}

// Trim is what a tinyconfig base gets before the required options: the
// target's trim fragment, defaults that keep the kernel small, overridden
// by anything required and never verified. Other bases are used as given.
func Trim(o Options) []Option {
	o = o.withDefaults()
	if o.Base != "tinyconfig" {
		return nil
	}
	tf, err := TargetFragment("trim-" + o.Target)
	if err != nil {
		return nil
	}
	return tf.Options
}

// inputsKey identifies a build dir: the checkout it builds from and
// everything that shapes the config and the compiler. Objects of two
// build roots never share a dir; the host's key is as before roots.
func inputsKey(src string, o Options, tc *toolchain.Root) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%v\x00%s\x00", src, o.Base, o.Arch, o.CC, o.LLVM, o.CrossCompile)
	if tc.Dir != "" {
		fmt.Fprintf(h, "%s\x00", tc.ID)
	}
	if o.Target != "" && o.Target != "qemu-x86_64" {
		// A kernel for another machine keeps its own warm dir (q35's key
		// is as before targets).
		fmt.Fprintf(h, "target %s\x00", o.Target)
	}
	for _, in := range []string{o.Base, o.TrimModules} {
		if fi, err := os.Stat(in); err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(in)
			h.Write(data)
		}
	}
	for _, f := range o.Fragments {
		for _, opt := range f.Options {
			fmt.Fprintf(h, "%s\n", opt)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// buildDir places the persistent build dir of a checkout, and the list of
// recent builds (samekernel.go) for its options. For firstbad's own
// checkouts (<clone>/wt/<slot>) the build dir is inside the checkout,
// <clone>/wt/<slot>/.firstbad-build-<key> (the kernel ignores dot-dirs;
// firstbad never cleans untracked files): kbuild then reaches the sources
// as "..", and with ccache's base dir at <clone> every compile line is the
// same in every slot, clone, cache dir and machine, so ccache hits cross
// them all. (Beside the checkout, in <clone>/builds/<slot>-<key>, the path
// "../../wt/<slot>" kept a second slot from hitting the first one's cache.)
// The list is shared by the slots: <clone>/builds/.built-<key>.json.
func (b *Builder) buildDir(src string, o Options, tc *toolchain.Root) (dir, ccacheBase, builtList string) {
	if clone := filepath.Dir(filepath.Dir(src)); filepath.Dir(src) == cachedir.CloneSlots(clone) {
		key := inputsKey("", o, tc)
		return filepath.Join(src, cachedir.BuildDirPrefix+key), clone, filepath.Join(cachedir.CloneBuilds(clone), ".built-"+key+".json")
	}
	key := inputsKey(src, o, tc)
	builds := cachedir.Dir(b.CacheDir).Builds()
	return filepath.Join(builds, key), src, filepath.Join(builds, ".built-"+key+".json")
}

func (b *Builder) makeArgs(o Options, src, buildDir string) []string {
	args := []string{"-C", src, "O=" + buildDir, "ARCH=" + o.Arch}
	if o.CC != "" {
		args = append(args, "CC="+o.CC)
	}
	if o.LLVM {
		args = append(args, "LLVM=1")
	}
	if o.CrossCompile != "" {
		args = append(args, "CROSS_COMPILE="+o.CrossCompile)
	}
	return args
}

// env is the build's environment: reproducible (fixed timestamp, user,
// host, version), ccache set up so hits survive another checkout path.
func (b *Builder) env(ccacheBase, statsLog string, o Options) []string {
	env := append(os.Environ(),
		"KBUILD_BUILD_TIMESTAMP=1970-01-01 00:00:00 UTC",
		"KBUILD_BUILD_USER=firstbad",
		"KBUILD_BUILD_HOST=firstbad",
		"KBUILD_BUILD_VERSION=1",
		"LOCALVERSION=", // set (empty): setlocalversion adds no "+" or hash
		"LC_ALL=C",
		"CCACHE_BASEDIR="+ccacheBase,
		"CCACHE_NOHASHDIR=1",
		// Depend mode: a miss costs no extra preprocessor run (ccache
		// takes the includes from the compiler's own -MMD output), which
		// on a cold cache is most of ccache's price; kbuild always
		// passes -Wp,-MMD.
		"CCACHE_DEPEND=1",
		"CCACHE_STATSLOG="+statsLog,
	)
	if o.NoCcache {
		env = append(env, "CCACHE_DISABLE=1")
	}
	return env
}

// resolveCC picks the compiler: the user's, else "ccache gcc" where ccache
// exists (and is not disabled), else the kernel's default.
func resolveCC(o Options) Options {
	if o.CC != "" || o.LLVM {
		return o
	}
	if _, err := exec.LookPath("ccache"); err == nil && !o.NoCcache {
		o.CC = "ccache " + o.CrossCompile + "gcc"
	}
	return o
}

// Build configures, verifies and builds one commit, or returns it from the
// artifact cache. The error is for input and infrastructure problems; a
// commit that cannot be built is a Result with Verdict "skip".
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	o := resolveCC(req.Opts.withDefaults())
	spec, err := toolchain.Parse(o.Toolchain)
	if err != nil {
		return nil, err
	}
	if spec.Kind == "auto" {
		spec = toolchain.Auto(req.Src)
	}
	for {
		tc, err := toolchain.Ensure(ctx, spec, cachedir.Dir(b.CacheDir).Roots(), b.Log)
		if err != nil {
			return nil, err
		}
		res, err := b.buildWith(ctx, req, o, tc)
		older, ok := b.fallBack(o, spec, err)
		if !ok {
			return res, err
		}
		b.Log.Warn("the toolchain is too new for this kernel: building in an older build root", "toolchain", tc.ID, "release", older)
		spec = toolchain.Spec{Kind: "debian", Release: older}
	}
}

// fallBack says, for a failed build under --toolchain auto, the older
// release to try when the failure is a toolchain-era signature.
func (b *Builder) fallBack(o Options, spec toolchain.Spec, err error) (string, bool) {
	if err == nil || !errors.Is(err, errTooNew) || o.Toolchain != "auto" {
		return "", false
	}
	older := toolchain.Older(spec.Era())
	return older, older != ""
}

// buildWith is one build with one toolchain: checks, the build dir, the
// config, the artifact cache, the compile (with known fixes applied to a
// tree that needs them).
func (b *Builder) buildWith(ctx context.Context, req Request, o Options, tc *toolchain.Root) (*Result, error) {
	required, err := b.check(req, o, tc)
	if err != nil {
		return nil, err
	}
	j := &buildJob{b: b, o: o, req: req, tc: tc, start: time.Now()}
	j.dir, j.ccacheBase, j.builtList = b.buildDir(req.Src, o, tc)
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		return nil, outcome.InfraErr("build", err)
	}
	l, err := lock.Acquire(ctx, j.dir+".lock", func(h *lock.HeldError) {
		b.Log.Info("waiting for a build dir held by another firstbad", "dir", j.dir, "pid", h.PID)
	})
	if err != nil {
		return nil, err
	}
	defer l.Release()
	if err := j.openLog(); err != nil {
		return nil, err
	}
	defer j.log.Close()
	fmt.Fprintf(j.log, "firstbad: toolchain %s\n", tc.ID)
	j.res.Toolchain = tc.ID
	final, res, err := j.config(ctx, required)
	if res != nil || err != nil {
		return res, err
	}
	cache := &Cache{Dir: cachedir.Dir(b.CacheDir).Artifacts(), Limit: b.CacheSize, Store: b.Store, Log: b.Log}
	for {
		if j.cached(cache, final) || j.sameKernel(cache, final) {
			return j.res, nil
		}
		res, err := j.compile(ctx, cache, final)
		if err == nil && res.Verdict != "ok" && j.fix(ctx) {
			continue
		}
		if err == nil && res.Verdict != "ok" {
			if e := j.tooNew(); e != nil {
				return nil, e
			}
		}
		return res, err
	}
}

// check is what must hold before a build starts: a kernel tree, the build
// tools, a readable base config, the required options, disk space.
func (b *Builder) check(req Request, o Options, tc *toolchain.Root) ([]Option, error) {
	if err := CheckTree(req.Src); err != nil {
		return nil, err
	}
	if tc.Dir == "" {
		// A build root has the tools by construction.
		if err := CheckDeps(o); err != nil {
			return nil, err
		}
	}
	if o.Base != "tinyconfig" && o.Base != "defconfig" {
		if fi, err := os.Stat(o.Base); err != nil || fi.IsDir() {
			if o.Base == "machine" {
				return nil, outcome.InputErr("--base-config machine takes the config of the machine of --target machine://HOST (with run or test)")
			}
			return nil, outcome.InputErr("--base-config %q: not tinyconfig, defconfig, machine, or a readable .config file", o.Base)
		}
	}
	required, err := Required(o)
	if err != nil {
		return nil, err
	}
	return required, checkSpace(b.CacheDir, 3<<30)
}

// buildJob is one Build in progress.
type buildJob struct {
	b          *Builder
	o          Options
	req        Request
	tc         *toolchain.Root
	fixes      []toolchain.Fix // applied to the tree for this build
	dir        string          // the persistent build dir
	ccacheBase string
	builtList  string // recent builds with these options (samekernel.go)
	mark       int64  // where the last make began in the log
	cc         string // the host compiler's version line, once asked
	log        *os.File
	res        *Result
	start      time.Time
	// localVersion is LOCALVERSION for make: empty, or -firstbad-KEY
	// for a kernel with modules.
	localVersion string
	// shareEnv is the compile's environment for the cluster and the team
	// ccache (share.go).
	shareEnv []string
}

func (j *buildJob) openLog() error {
	if err := os.MkdirAll(j.req.LogDir, 0o755); err != nil {
		return outcome.InfraErr("build", err)
	}
	j.res = &Result{Log: filepath.Join(j.req.LogDir, "build.log"), Missing: []string{}}
	f, err := os.Create(j.res.Log)
	if err != nil {
		return outcome.InfraErr("build", err)
	}
	j.log = f
	return nil
}

// make runs make in the build dir with extra arguments, logged.
func (j *buildJob) make(ctx context.Context, timeout time.Duration, statsLog string, args ...string) (proc.Result, error) {
	return j.makeIn(ctx, j.dir, timeout, statsLog, args...)
}

// makeIn is make with another build dir (inside the build dir: the build
// root binds that).
func (j *buildJob) makeIn(ctx context.Context, dir string, timeout time.Duration, statsLog string, args ...string) (proc.Result, error) {
	args = append(j.b.makeArgs(j.o, j.req.Src, dir), args...)
	j.mark, _ = j.log.Seek(0, io.SeekCurrent)
	cmd := j.tc.Command("make", args, j.binds()...)
	cmd.Env = append(append(j.b.env(j.ccacheBase, statsLog, j.o), j.shareEnv...), "LOCALVERSION="+j.localVersion)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = j.log, j.log, strings.NewReader("")
	fmt.Fprintf(j.log, "$ make %s\n", strings.Join(args, " "))
	return proc.Run(ctx, cmd, timeout)
}

// config assembles the config in a side file (so that the build dir's
// .config, and so the build, is touched only when the result differs) and
// verifies every required option. A commit where one cannot hold is a
// skip result naming it.
func (j *buildJob) config(ctx context.Context, required []Option) ([]byte, *Result, error) {
	// The trim first: any option also required is set as required.
	apply := Merge(Fragment{Options: Trim(j.o)}, Fragment{Options: required})
	key := j.configKey(apply)
	final, ok := j.cachedConfig(key)
	if ok {
		fmt.Fprintf(j.log, "firstbad: config %s from the config cache (no Kconfig input changed)\n", key)
	} else {
		var res *Result
		var err error
		if final, res, err = j.assemble(ctx, apply); res != nil || err != nil {
			return nil, res, err
		}
		j.storeConfig(key, final)
	}
	return final, j.verify(final, required), nil
}

// assemble makes the config in a side file: the base, the options applied,
// olddefconfig.
func (j *buildJob) assemble(ctx context.Context, apply []Option) ([]byte, *Result, error) {
	side := filepath.Join(j.dir, ".config.firstbad")
	kc := func(target string) (proc.Result, error) {
		return j.make(ctx, 5*time.Minute, os.DevNull, "KCONFIG_CONFIG="+side, target)
	}
	if j.o.Base == "tinyconfig" || j.o.Base == "defconfig" {
		var r proc.Result
		var err error
		if j.o.Base == "tinyconfig" {
			r, err = j.tinyconfig(ctx, side)
		} else {
			r, err = kc(j.o.Base)
		}
		if err != nil || r.ExitCode != 0 {
			res, err := j.b.failed(ctx, j.res, j.log, j.mark, r, err, "make "+j.o.Base)
			return nil, res, err
		}
	} else if err := copyBase(j.o.Base, side); err != nil {
		return nil, nil, err
	}
	if j.o.TrimModules != "" {
		if _, err := os.Stat(j.o.TrimModules); err != nil {
			return nil, nil, outcome.InputErr("--trim-modules: %v", err)
		}
		if r, err := j.trimModules(ctx, side); err != nil || r.ExitCode != 0 {
			res, err := j.b.failed(ctx, j.res, j.log, j.mark, r, err, "make localmodconfig")
			return nil, res, err
		}
	}
	base, err := os.ReadFile(side)
	if err != nil {
		return nil, nil, outcome.InfraErr("build", err)
	}
	if err := os.WriteFile(side, []byte(Apply(string(base), apply)), 0o644); err != nil {
		return nil, nil, outcome.InfraErr("build", err)
	}
	if r, err := kc("olddefconfig"); err != nil || r.ExitCode != 0 {
		if err != nil || ctx.Err() != nil || !oldKconfig(j.res.Log) {
			res, err := j.b.failed(ctx, j.res, j.log, j.mark, r, err, "make olddefconfig")
			return nil, res, err
		}
		// Before olddefconfig existed: oldconfig with empty answers.
		if r, err = kc("oldconfig"); err != nil || r.ExitCode != 0 {
			res, err := j.b.failed(ctx, j.res, j.log, j.mark, r, err, "make oldconfig")
			return nil, res, err
		}
	}
	final, err := os.ReadFile(side)
	if err != nil {
		return nil, nil, outcome.InfraErr("build", err)
	}
	return final, nil, nil
}

// trimModules turns off the side file's modules that the lsmod file does
// not list: make localmodconfig, in a scratch build dir of its own (it
// works on the build dir's .config, which the side file spares).
func (j *buildJob) trimModules(ctx context.Context, side string) (proc.Result, error) {
	lsmod, err := filepath.Abs(j.o.TrimModules)
	if err != nil {
		return proc.Result{}, err
	}
	scratch := filepath.Join(j.dir, ".firstbad-trim")
	defer os.RemoveAll(scratch)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return proc.Result{}, outcome.InfraErr("build", err)
	}
	if err := copyBase(side, filepath.Join(scratch, ".config")); err != nil {
		return proc.Result{}, err
	}
	before := countModules(side)
	r, err := j.makeIn(ctx, scratch, 5*time.Minute, os.DevNull, "LSMOD="+lsmod, "localmodconfig")
	if err != nil || r.ExitCode != 0 {
		return r, err
	}
	if err := copyBase(filepath.Join(scratch, ".config"), side); err != nil {
		return r, err
	}
	fmt.Fprintf(j.log, "firstbad: --trim-modules: %d modules in the base, %d left (those lsmod lists)\n", before, countModules(side))
	return r, nil
}

// countModules counts the =m options of a config file.
func countModules(config string) int {
	data, _ := os.ReadFile(config)
	return bytes.Count(data, []byte("=m\n"))
}

// tinyconfig makes the tinyconfig base into the side file in a scratch
// dir of its own that holds no .config. The target is allnoconfig, then
// tiny.config merged — into a hard-coded .config, not KCONFIG_CONFIG (6.1
// still has `merge_config.sh -m .config`): made in the build dir, it was
// merged onto whatever config that dir built last, so a commit's config
// depended on the dir's past (and each build after a new dir's first
// rebuilt everything for a config that had drifted). In a dir without a
// .config, 6.1 merges tiny.config onto nothing and olddefconfig sets the
// rest to their defaults, as a new build dir always did; trees before
// ~5.13 refuse to merge without a base, and are made whole in the scratch
// dir (baseApart). The scratch dir is kept: its conf is built once.
func (j *buildJob) tinyconfig(ctx context.Context, side string) (proc.Result, error) {
	scratch := filepath.Join(j.dir, ".firstbad-base")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return proc.Result{}, outcome.InfraErr("build", err)
	}
	if err := os.Remove(filepath.Join(scratch, ".config")); err != nil && !os.IsNotExist(err) {
		return proc.Result{}, outcome.InfraErr("build", err)
	}
	r, err := j.makeIn(ctx, scratch, 5*time.Minute, os.DevNull, "KCONFIG_CONFIG="+side, "tinyconfig")
	if err == nil && r.ExitCode != 0 && ctx.Err() == nil && bytes.Contains(logFrom(j.res.Log, j.mark), []byte("The base file '.config' does not exist")) {
		return j.baseApart(ctx, scratch, side)
	}
	return r, err
}

// baseApart makes tinyconfig whole in scratch (no KCONFIG_CONFIG: the
// merge's hard-coded .config is then allnoconfig's) and copies it to the
// side file: before ~5.13 the target cannot merge into KCONFIG_CONFIG.
func (j *buildJob) baseApart(ctx context.Context, scratch, side string) (proc.Result, error) {
	fmt.Fprintf(j.log, "firstbad: this tree's tinyconfig ignores KCONFIG_CONFIG: making it whole in a scratch dir\n")
	os.Remove(filepath.Join(scratch, ".config"))
	r, err := j.makeIn(ctx, scratch, 5*time.Minute, os.DevNull, "tinyconfig")
	if err != nil || r.ExitCode != 0 {
		return r, err
	}
	data, err := os.ReadFile(filepath.Join(scratch, ".config"))
	if err == nil {
		err = os.WriteFile(side, data, 0o644)
	}
	if err != nil {
		return r, outcome.InfraErr("build", err)
	}
	return r, nil
}

// logFrom is the build log from offset from on.
func logFrom(log string, from int64) []byte {
	data, _ := os.ReadFile(log)
	if from > 0 && from <= int64(len(data)) {
		data = data[from:]
	}
	return data
}

// copyBase is a user's base config copied into the side file.
func copyBase(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return outcome.InputErr("--base-config: %v", err)
	}
	return outcome.InfraErr("build", os.WriteFile(to, data, 0o644))
}

// verify is a skip result naming the required options that do not hold in
// the final config, or nil when all hold.
func (j *buildJob) verify(final []byte, required []Option) *Result {
	vals, _ := Values(bytes.NewReader(final))
	bad := Verify(vals, required)
	if len(bad) == 0 {
		return nil
	}
	var reasons []string
	for _, m := range bad {
		j.res.Missing = append(j.res.Missing, m.Option.Name)
		reasons = append(reasons, m.String())
	}
	j.res.Verdict = "skip"
	j.res.Reason = "required config options unavailable: " + strings.Join(reasons, "; ")
	fmt.Fprintf(j.log, "firstbad: %s\n", j.res.Reason)
	j.res.BuildS = time.Since(j.start).Seconds()
	return j.res
}

// cached looks the kernel up in the artifact cache, keyed by tree, final
// config and compiler.
func (j *buildJob) cached(cache *Cache, final []byte) bool {
	cfgSum := sha256.Sum256(final)
	var fixes []string
	for _, f := range j.fixes {
		fixes = append(fixes, f.Commit)
	}
	in := j.req.Tree + "\x00" + hex.EncodeToString(cfgSum[:]) + "\x00" + j.compiler() + "\x00" + j.o.Arch + "\x00" + strings.Join(fixes, ",")
	if j.o.Modules {
		in += "\x00modules"
	}
	key := sha256.Sum256([]byte(in))
	j.res.Key = hex.EncodeToString(key[:16])
	if j.o.Modules {
		j.localVersion = "-firstbad-" + j.res.Key[:8]
	}
	a, ok := cache.Get(j.res.Key)
	if !ok || (j.o.Modules && a.Modules == "") || !fileExists(filepath.Join(filepath.Dir(a.Kernel), InputsFile)) {
		// An artifact without the list of what its build read is an
		// older firstbad's: built again, incrementally, to have it.
		return false
	}
	j.take(a)
	from := "the artifact cache"
	if a.FromStore {
		from = "the artifact store " + cache.Store.String() + " (sizes and sha256 checked)"
	}
	fmt.Fprintf(j.log, "firstbad: kernel %s from %s\n", j.res.Key, from)
	j.checkPremise(cache, final)
	cache.Share(j.res.Key)
	if j.ownTree() {
		// A kernel just used is a recent build: a commit after it that
		// changes nothing the build reads takes it (samekernel.go), also
		// when many builds of other commits came since it was made.
		j.remember()
	}
	return true
}

// take makes a cached artifact the build's result.
func (j *buildJob) take(a Artifact) {
	j.res.Kernel, j.res.Version, j.res.Release, j.res.ConfigPath, j.res.Modules = a.Kernel, a.Version, a.Release, a.Config, a.Modules
	j.res.Cached, j.res.Verdict = true, "ok"
	j.res.BuildS = time.Since(j.start).Seconds()
}

// compile builds bzImage incrementally in the persistent build dir and
// stores it in the artifact cache.
func (j *buildJob) compile(ctx context.Context, cache *Cache, final []byte) (*Result, error) {
	res, dir := j.res, j.dir
	j.seed(ctx, final)
	if cur, _ := os.ReadFile(filepath.Join(dir, ".config")); !bytes.Equal(cur, final) {
		if err := os.WriteFile(filepath.Join(dir, ".config"), final, 0o644); err != nil {
			return nil, outcome.InfraErr("build", err)
		}
	}
	res.BuildSystem = buildSystemChanged(dir, j.req.Src)
	stats := filepath.Join(dir, "ccache-stats.log")
	os.Remove(stats)
	marker := filepath.Join(dir, building)
	if n, err := removeInterrupted(dir, marker); err != nil {
		return nil, outcome.InfraErr("build", fmt.Errorf("cleaning up after an interrupted build in %s: %v", dir, err))
	} else if n > 0 {
		fmt.Fprintf(j.log, "firstbad: the last build in this dir was interrupted: removed the %d files it wrote\n", n)
	}
	os.Remove(filepath.Join(dir, builtTree))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return nil, outcome.InfraErr("build", err)
	}
	logStart, _ := j.log.Seek(0, io.SeekCurrent)
	targets := []string{"bzImage"}
	withModules := j.o.Modules && bytes.Contains(final, []byte("\nCONFIG_MODULES=y\n"))
	if withModules {
		targets = append(targets, "modules")
	}
	j.shareEnv = j.sharingEnv(ctx)
	r, err := j.make(ctx, j.o.Timeout, stats, append([]string{"-j" + strconv.Itoa(j.o.Jobs)}, targets...)...)
	if err == nil && r.Signal == 0 {
		os.Remove(marker) // make ended on its own: what it wrote is whole
	}
	c := compileStats(res.Log, logStart, stats)
	res.Compiled, res.CcacheHits, res.RemoteHits = c.n, c.hits, c.remoteHits
	j.noteGivenBack(logStart)
	j.noteRemoteErrors(c.remoteErrors)
	if err != nil || r.ExitCode != 0 {
		return j.b.failed(ctx, res, j.log, j.mark, r, err, "make "+strings.Join(targets, " "))
	}
	if j.ownTree() {
		_ = os.WriteFile(filepath.Join(dir, builtTree), []byte(j.req.Tree+"\n"), 0o644)
	}
	vr, _ := exec.Command("make", "-s", "-C", j.req.Src, "kernelversion").Output()
	res.Version = strings.TrimSpace(string(vr))
	res.Release = utsRelease(dir)
	files := map[string]string{"bzImage": filepath.Join(dir, "arch", ArchDir(j.o.Arch), "boot", "bzImage"), "config": filepath.Join(dir, ".config")}
	// What the build read, empty if unknown (no flag, no reuse then).
	inputs, err := buildInputs(dir, j.req.Src)
	if err != nil {
		fmt.Fprintf(j.log, "firstbad: cannot list what the build read: %v\n", err)
		inputs = nil
	}
	list := filepath.Join(dir, ".firstbad-inputs")
	if err := os.WriteFile(list, []byte(formatInputs(inputs)), 0o644); err != nil {
		return nil, outcome.InfraErr("build", err)
	}
	files[InputsFile] = list
	if j.o.Modules {
		files["System.map"] = filepath.Join(dir, "System.map")
		tarball, err := j.packModules(ctx, withModules, res.Release)
		if err != nil {
			return j.b.failed(ctx, res, j.log, j.mark, proc.Result{ExitCode: -1}, err, "make modules_install")
		}
		defer os.Remove(tarball)
		files["modules.tar"] = tarball
	}
	a, err := cache.Put(res.Key, Artifact{Version: res.Version, Release: res.Release, Commit: j.req.Commit}, files)
	if err != nil {
		return nil, outcome.InfraErr("build", fmt.Errorf("storing the built kernel: %v", err))
	}
	res.Kernel, res.ConfigPath, res.Modules = a.Kernel, a.Config, a.Modules
	if len(inputs) > 0 {
		j.remember()
	}
	res.Verdict = "ok"
	res.BuildS = time.Since(j.start).Seconds()
	return res, nil
}

// packModules installs the built modules into a staging dir and packs
// lib/modules/RELEASE as a tar (an empty dir for a kernel without
// modules: the machine still gets modules.builtin and depmod's files).
func (j *buildJob) packModules(ctx context.Context, withModules bool, release string) (string, error) {
	staging := filepath.Join(j.dir, ".firstbad-modules")
	if err := os.RemoveAll(staging); err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	rel := filepath.Join("lib", "modules", release)
	if withModules {
		r, err := j.make(ctx, j.o.Timeout, "", "INSTALL_MOD_PATH="+staging, "INSTALL_MOD_STRIP=1", "DEPMOD=true", "modules_install")
		if err != nil || r.ExitCode != 0 {
			return "", fmt.Errorf("make modules_install failed (exit %d): %v", r.ExitCode, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(staging, rel), 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if _, err := os.Stat(filepath.Join(staging, rel, f)); err != nil {
			_ = copyFile(filepath.Join(j.dir, f), filepath.Join(staging, rel, f))
		}
	}
	tarball := filepath.Join(j.dir, ".firstbad-modules.tar")
	out, err := exec.CommandContext(ctx, "tar", "-C", staging, "--exclude=build", "--exclude=source", "--owner=0", "--group=0",
		"-cf", tarball, rel).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("packing the modules: %v: %s", err, out)
	}
	return tarball, nil
}

// building marks a build dir while make runs in it. If it is still there
// when the next build starts, that make was killed (with its controller,
// maybe by SIGKILL or a power cut) and may have left a half-written object
// whose fresh mtime would make it look up to date.
const building = ".firstbad-building"

// removeInterrupted removes the files an interrupted build wrote (those not
// older than the marker), so that make rebuilds them; ccache makes that
// cheap. The config and the headers generated from it are kept: kbuild
// writes those atomically, and touching them would rebuild everything.
func removeInterrupted(buildDir, marker string) (int, error) {
	fi, err := os.Stat(marker)
	if os.IsNotExist(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	since := fi.ModTime()
	n := 0
	err = filepath.WalkDir(buildDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(buildDir, path)
		if d.IsDir() {
			if rel == filepath.Join("include", "config") || rel == filepath.Join("include", "generated") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || rel == building || strings.HasPrefix(rel, ".config") {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.ModTime().Before(since) {
			return err
		}
		n++
		return os.Remove(path)
	})
	if err != nil {
		return n, err
	}
	return n, os.Remove(marker)
}

// ArchDir is the directory under arch/ that holds an ARCH's sources.
func ArchDir(arch string) string {
	switch arch {
	case "x86_64", "i386", "x86":
		return "x86"
	}
	return arch
}

// failed classifies a failed make: the infrastructure's fault is an error,
// the kernel's fault a skip with the first error line as the reason.
// Only the failed make's part of the log counts (from): an earlier make
// of this build (a base config made again apart, a build before a fix)
// may have failed differently.
func (b *Builder) failed(ctx context.Context, res *Result, logf *os.File, from int64, r proc.Result, err error, what string) (*Result, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, outcome.InfraErr("build", fmt.Errorf("%s: %v", what, err))
	}
	logf.Sync()
	d := Diagnose(logFrom(res.Log, from), r)
	if d.Infra {
		return nil, outcome.InfraErr("build", fmt.Errorf("%s: %s (log: %s)", what, d.Reason, res.Log))
	}
	res.Verdict = "skip"
	res.Reason = fmt.Sprintf("%s failed: %s", what, d.Reason)
	if d.Context != "" {
		fmt.Fprintf(logf, "\nfirstbad: first error:\n%s\n", d.Context)
	}
	return res, nil
}

// Diagnosis is what a failed build's log says.
type Diagnosis struct {
	Infra   bool   // the machine's fault: retry or abort, never a verdict
	Reason  string // one line
	File    string
	Line    int
	Context string // ~30 lines around the first error
}

var (
	errLineRe = regexp.MustCompile(`(?m)^([^\s:]+):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$`)
	ldErrRe   = regexp.MustCompile(`(?m)^.*(?:undefined reference to|multiple definition of|ld: .*error).*$`)
	makeErrRe = regexp.MustCompile(`(?m)^make(?:\[\d+\])?: \*\*\* .*Error \d+.*$`)
)

// Diagnose classifies a failed build from its log and exit.
func Diagnose(log []byte, r proc.Result) Diagnosis {
	text := string(log)
	switch {
	case r.TimedOut:
		return Diagnosis{Infra: true, Reason: "build timeout (--build-timeout) reached"}
	case r.ExitCode == 137 || r.Signal == 9 || strings.Contains(text, "Killed signal terminated program") ||
		strings.Contains(text, "internal compiler error: Killed"):
		return Diagnosis{Infra: true, Reason: "the compiler was killed (out of memory?)"}
	case strings.Contains(text, "No space left on device"):
		return Diagnosis{Infra: true, Reason: "disk full (No space left on device)"}
	case regexp.MustCompile(`(?m)(gcc|cc|clang|ld|ccache|make|flex|bison|bc|perl)(: not found|: command not found|: No such file or directory$)`).MatchString(text):
		return Diagnosis{Infra: true, Reason: "a build tool is missing: " + firstMatch(text, `(?m)^.*(not found|No such file or directory).*$`)}
	}
	lines := strings.Split(text, "\n")
	if loc := errLineRe.FindStringSubmatchIndex(text); loc != nil {
		file, line, msg := text[loc[2]:loc[3]], text[loc[4]:loc[5]], text[loc[6]:loc[7]]
		n, _ := strconv.Atoi(line)
		return Diagnosis{Reason: fmt.Sprintf("%s:%s: error: %s", file, line, msg), File: file, Line: n, Context: context30(lines, text[loc[0]:loc[1]])}
	}
	if m := ldErrRe.FindString(text); m != "" {
		return Diagnosis{Reason: "link error: " + strings.TrimSpace(m), Context: context30(lines, m)}
	}
	if m := makeErrRe.FindString(text); m != "" {
		return Diagnosis{Reason: strings.TrimSpace(m), Context: context30(lines, m)}
	}
	return Diagnosis{Reason: fmt.Sprintf("make exited %d", r.ExitCode)}
}

func context30(lines []string, match string) string {
	for i, l := range lines {
		if l == match {
			lo, hi := max(0, i-15), min(len(lines), i+15)
			return strings.Join(lines[lo:hi], "\n")
		}
	}
	return match
}

func firstMatch(text, re string) string {
	return strings.TrimSpace(regexp.MustCompile(re).FindString(text))
}

// oldKconfig reports a tree whose Kconfig has no olddefconfig target.
func oldKconfig(log string) bool {
	data := logFrom(log, 0)
	return bytes.Contains(data, []byte("No rule to make target 'olddefconfig'")) ||
		bytes.Contains(data, []byte("No rule to make target `olddefconfig'"))
}

// compilerBinary is the compiler a build runs: the last word of --cc
// (after "ccache"), else clang with LLVM=1, else CROSS_COMPILE's gcc.
func compilerBinary(o Options) string {
	switch {
	case o.CC != "":
		f := strings.Fields(o.CC)
		return f[len(f)-1]
	case o.LLVM:
		return "clang"
	}
	return o.CrossCompile + "gcc"
}

// compilerVersion identifies the compiler for the artifact key.
func compilerVersion(o Options) string {
	cc := compilerBinary(o)
	out, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return cc
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

// compiles is what a build compiled, as kbuild and ccache tell.
type compiles struct {
	n, hits int
	// remoteHits came from ccache's remote storage; remoteErrors are
	// lookups or stores it failed (the compile ran here).
	remoteHits, remoteErrors int
}

// compileStats counts the objects this build compiled (kbuild's "  CC"
// lines after logStart), how many ccache served, and its remote storage's
// part.
func compileStats(logPath string, logStart int64, statsLog string) compiles {
	var c compiles
	if f, err := os.Open(logPath); err == nil {
		f.Seek(logStart, io.SeekStart)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "  CC ") {
				c.n++
			}
		}
		f.Close()
	}
	// ccache's record of each compile: "# FILE" then its counters. It also
	// counts when kbuild prints nothing (make 4.4 on trees before its
	// silent-mode fix makes every old kbuild silent).
	byCcache := 0
	if data, err := os.ReadFile(statsLog); err == nil {
		for _, rec := range strings.Split(string(data), "\n# ") {
			file, _, _ := strings.Cut(strings.TrimPrefix(rec, "# "), "\n")
			source := strings.HasSuffix(file, ".c") || strings.HasSuffix(file, ".S")
			hit := strings.Contains(rec, "direct_cache_hit") || strings.Contains(rec, "preprocessed_cache_hit")
			if hit {
				c.hits++
			}
			if strings.Contains(rec, "remote_storage_hit") {
				c.remoteHits++
			}
			if strings.Contains(rec, "remote_storage_error") || strings.Contains(rec, "remote_storage_timeout") {
				c.remoteErrors++
			}
			failed := strings.Contains(strings.ReplaceAll(rec, "remote_storage_error", ""), "error")
			if source && (hit || strings.Contains(rec, "cache_miss")) && !failed {
				byCcache++
			}
		}
	}
	c.n = max(c.n, byCcache)
	return c
}

// buildSystemChanged says whether the build machinery (top Makefile,
// scripts/) is newer than this build dir's last build: then most of the
// kernel recompiles, and a benchmark wants to know.
func buildSystemChanged(buildDir, src string) bool {
	stamp, err := os.Stat(filepath.Join(buildDir, "vmlinux"))
	if err != nil {
		return false
	}
	for _, p := range []string{"Makefile", "scripts/Makefile.build", "scripts/Kbuild.include", "scripts/Makefile.lib"} {
		if fi, err := os.Stat(filepath.Join(src, p)); err == nil && fi.ModTime().After(stamp.ModTime()) {
			return true
		}
	}
	return false
}

func utsRelease(buildDir string) string {
	data, err := os.ReadFile(filepath.Join(buildDir, "include", "generated", "utsrelease.h"))
	if err != nil {
		return ""
	}
	if m := regexp.MustCompile(`UTS_RELEASE "([^"]*)"`).FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return ""
}

// checkSpace fails with an infrastructure error below need bytes free.
func checkSpace(dir string, need uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return outcome.InfraErr("build", err)
	}
	free, err := freeBytes(dir)
	if err != nil {
		return nil
	}
	if free < need {
		return outcome.InfraErr("build", fmt.Errorf("only %d MiB free in %s; a kernel build needs about %d MiB: free space or use --cache-dir elsewhere",
			free>>20, dir, need>>20))
	}
	return nil
}

// writeJSON writes v as indented JSON (an artifact's meta.json).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
