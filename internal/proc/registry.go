package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The registry records every process group firstbad starts (pid and the
// kernel's start time for it) as a file, removed when the group ends. A
// controller killed with SIGKILL cannot clean up; the next firstbad that
// uses the same state dir finds the files and kills what is still running.
// The start time makes sure a reused pid of an unrelated process is never
// killed.
var (
	regMu  sync.Mutex
	regDir string
	live   = map[int]bool{} // groups this process started and has not seen end
)

// SetRegistry sets the directory where started process groups are recorded.
func SetRegistry(dir string) {
	regMu.Lock()
	defer regMu.Unlock()
	regDir = dir
}

// statFields are the fields of /proc/PID/stat after the command name:
// [0] is the state, [2] the process group, [19] the start time.
func statFields(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// startTime is field 22 of /proc/PID/stat (clock ticks since boot).
func startTime(pid int) string {
	if f := statFields(pid); len(f) >= 20 {
		return f[19]
	}
	return ""
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// Register records the process group led by pid; call the returned func
// once it is gone.
func Register(pid int) func() {
	regMu.Lock()
	dir := regDir
	live[pid] = true
	regMu.Unlock()
	path := ""
	if dir != "" {
		_ = os.MkdirAll(dir, 0o755)
		path = filepath.Join(dir, strconv.Itoa(pid))
		_ = os.WriteFile(path, []byte(startTime(pid)+" "+bootID()+" "+strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	return func() {
		regMu.Lock()
		delete(live, pid)
		regMu.Unlock()
		if path != "" {
			os.Remove(path)
		}
	}
}

// KillAll kills every process group this process started that is still
// recorded, for an exit that cannot wait for the usual clean-up (a second
// Ctrl-C).
func KillAll() {
	regMu.Lock()
	defer regMu.Unlock()
	for pid := range live {
		KillGroup(pid)
	}
}

// Reap kills the process groups recorded in dir whose recording controller
// is gone, and forgets them. It returns how many it killed.
func Reap(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	killed := 0
	boot := bootID()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, _ := os.ReadFile(path)
		f := strings.Fields(string(data))
		if len(f) == 3 {
			if owner, _ := strconv.Atoi(f[2]); owner > 0 && f[1] == boot && startTime(owner) != "" && syscall.Kill(owner, 0) == nil {
				continue // its controller still runs: not a leftover
			}
		}
		if len(f) >= 2 && f[1] == boot && f[0] != "" && startTime(pid) == f[0] {
			StopGroup(pid, StopGrace)
			killed++
		}
		os.Remove(path)
	}
	return killed
}
