package kbuild

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/firstbad/firstbad/internal/cachedir"
)

// Config assembly (make tinyconfig + olddefconfig) costs 15-50 s a step
// here, and its result depends only on the Kconfig language's inputs: the
// Kconfig files, the kconfig tool and the scripts its macros run (all of
// scripts/), the top-level and arch Makefiles, a defconfig base, the
// options applied, and the toolchain (Kconfig probes the compiler). Those
// are read from the commit's tree (blob hashes, one git ls-tree), and the
// final config is cached under their hash: commits that change none of
// them reuse it at once.

// configKey is the hash of everything olddefconfig's result depends on, or
// "" when the tree cannot be read (then nothing is cached).
func (j *buildJob) configKey(applied []Option) string {
	if j.req.Tree == "" {
		return ""
	}
	cmd := exec.Command("git", "-C", j.req.Src, "ls-tree", "-r", "--full-tree", j.req.Tree)
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	h := sha256.New()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		_, name, ok := strings.Cut(line, "\t")
		if ok && configInput(name, j.o.Arch) {
			fmt.Fprintln(h, line)
		}
	}
	// "clean": tinyconfig made where no .config is (buildJob.tinyconfig);
	// configs cached before could be merged onto a build dir's last one.
	fmt.Fprintf(h, "base %s clean\narch %s\ncc %s %s %v %s\n", j.o.Base, j.o.Arch, j.o.CC, j.compiler(), j.o.LLVM, j.o.CrossCompile)
	if j.o.Base != "tinyconfig" && j.o.Base != "defconfig" {
		data, _ := os.ReadFile(j.o.Base)
		h.Write(data)
	}
	if j.o.TrimModules != "" {
		data, _ := os.ReadFile(j.o.TrimModules)
		fmt.Fprintf(h, "lsmod\n%s", data)
	}
	for _, o := range applied {
		fmt.Fprintln(h, o)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// configInput says whether a tree path can change what olddefconfig makes.
func configInput(name, arch string) bool {
	base := path.Base(name)
	switch {
	case KconfigFile(name), strings.HasPrefix(name, "scripts/"), name == "Makefile":
		return true
	case strings.HasPrefix(name, "arch/") && (base == "Makefile" || strings.Contains(name, "/configs/")):
		// arch/x86 serves x86_64 and i386: keep every arch's, it is cheap.
		return true
	}
	return false
}

// configCache is where assembled configs are kept, by key.
func (j *buildJob) configCache(key string) string {
	return filepath.Join(cachedir.Dir(j.b.CacheDir).Configs(), key)
}

// cachedConfig is the final config assembled before for key, if any.
func (j *buildJob) cachedConfig(key string) ([]byte, bool) {
	if key == "" {
		return nil, false
	}
	data, err := os.ReadFile(j.configCache(key))
	return data, err == nil && len(data) > 0
}

// storeConfig keeps an assembled config for key (atomically; a failure
// only costs the next step the assembly).
func (j *buildJob) storeConfig(key string, final []byte) {
	if key == "" {
		return
	}
	p := j.configCache(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	tmp := p + ".tmp"
	if os.WriteFile(tmp, final, 0o644) == nil {
		_ = os.Rename(tmp, p)
	}
}
