package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/firstbad/firstbad/internal/guest"
	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/target"
)

func doctorCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "check that this machine has everything a kernel bisect needs",
		Long:  "doctor checks git, kernel build dependencies, ccache, QEMU, busybox-static, KVM and free disk,\nand prints what is missing with the command that installs it. Exit 0 only when everything is there.",
		Args:  cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			type check struct {
				name string
				err  error
				note string
			}
			var checks []check
			add := func(name string, err error, note string) { checks = append(checks, check{name, err, note}) }
			if _, err := exec.LookPath("git"); err != nil {
				add("git", fmt.Errorf("git not found: apt-get install git"), "")
			} else {
				add("git", nil, "")
			}
			add("kernel build dependencies", kbuild.CheckDeps(kbuild.Options{}), "make, gcc, flex, bison, bc, perl, libelf, libssl")
			if _, err := exec.LookPath("ccache"); err != nil {
				add("ccache", fmt.Errorf("ccache not found (builds work, but slower): apt-get install ccache"), "")
			} else {
				add("ccache", nil, "")
			}
			add("QEMU", (&target.QEMU{}).Check(), "qemu-system-x86_64")
			_, err := guest.FindBusybox()
			add("busybox-static", err, "")
			self, _ := os.Executable()
			add("static firstbad binary (the guest agent)", guest.CheckStatic(self), self)
			kvm := "device absent: TCG (software emulation) will be used"
			if _, err := os.Stat("/dev/kvm"); err == nil {
				kvm = "device present; whether guests really run under it is probed at the first boot"
				if data, err := filepath.Glob(filepath.Join(g.cacheDir, "probe", "accel-*")); err == nil && len(data) > 0 {
					if b, err := os.ReadFile(data[len(data)-1]); err == nil {
						kvm = "probed: " + strings.TrimSpace(string(b))
					}
				}
			}
			add("KVM", nil, kvm)
			_ = os.MkdirAll(g.cacheDir, 0o755)
			var st syscall.Statfs_t
			if err := syscall.Statfs(g.cacheDir, &st); err == nil {
				free := st.Bavail * uint64(st.Bsize)
				var ferr error
				if free < 5<<30 {
					ferr = fmt.Errorf("only %d MiB free in %s: a kernel bisect needs several GiB (build dirs, artifacts)", free>>20, g.cacheDir)
				}
				add("free disk in the cache dir", ferr, fmt.Sprintf("%.1f GiB in %s", float64(free)/(1<<30), g.cacheDir))
			}
			failed := 0
			for _, c := range checks {
				status := "ok  "
				msg := c.note
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
			if failed > 0 {
				fmt.Fprintln(g.stdout, "\nrun ./setup.sh (apt-get installs everything above) and try again")
				return &exitError{code: ExitInfra}
			}
			return nil
		}),
	}
}
