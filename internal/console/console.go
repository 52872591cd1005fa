// Package console reads kernel console output and recognizes crashes: panics,
// Oopses, BUG and WARNING reports, general protection faults, KASAN/UBSAN
// reports, hung tasks, soft/hard lockups, RCU stalls and boot failures. It
// returns a short title in syzkaller's style ("BUG: unable to handle page
// fault in virtnet_poll") and the report's lines.
package console

import (
	"regexp"
	"strings"
)

// Crash is one recognized report.
type Crash struct {
	Title  string
	Kind   string // panic, oops, bug, warning, gpf, kasan, ubsan, hung-task, soft-lockup, hard-lockup, rcu-stall, boot
	Report []string
	// Boot is set for failures that stop the kernel before init runs.
	Boot bool
}

type pattern struct {
	kind  string
	re    *regexp.Regexp
	title func(m []string, fn string) string
	boot  bool
}

var (
	// "RIP: 0010:virtnet_poll+0x1c/0x80 [virtio_net]" or "RIP: virtnet_poll+..." or
	// "pc : foo+0x1/0x2" (arm64).
	ripRe = regexp.MustCompile(`(?:RIP: (?:[0-9a-f]{4}:)?|pc : |EIP: (?:[0-9a-f]{4}:)?)(?:\[<[0-9a-f]+>\] )?([A-Za-z0-9_.]+)\+0x`)
	// A call trace frame: " foo+0x12/0x34" or " ? foo+0x12/0x34".
	frameRe = regexp.MustCompile(`^\s+(?:\? )?([A-Za-z0-9_.]+)\+0x[0-9a-f]+/0x[0-9a-f]+`)
	// A console line's timestamp prefix.
	stampRe = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s?(?:\[\s*[TC]\d+\]\s?)?`)
)

// Ordered: the first pattern that matches a line wins; more specific first.
var patterns = []pattern{
	{kind: "boot", boot: true, re: regexp.MustCompile(`^Kernel panic - not syncing: (VFS: Unable to mount root fs.*|No working init found.*|Requested init \S+ failed.*|Attempted to kill init!.*)`),
		title: func(m []string, _ string) string { return "Kernel panic - not syncing: " + trimExit(m[1]) }},
	{kind: "kasan", re: regexp.MustCompile(`^BUG: KASAN: ([a-z\-]+) in ([A-Za-z0-9_.]+)`),
		title: func(m []string, _ string) string { return "KASAN: " + m[1] + " in " + m[2] }},
	{kind: "ubsan", re: regexp.MustCompile(`^UBSAN: ([a-z\-]+) in (\S+)`),
		title: func(m []string, _ string) string { return "UBSAN: " + m[1] + " in " + m[2] }},
	{kind: "bug", re: regexp.MustCompile(`^BUG: (unable to handle page fault|unable to handle kernel paging request|kernel NULL pointer dereference)`),
		title: func(m []string, fn string) string { return "BUG: " + m[1] + in(fn) }},
	{kind: "soft-lockup", re: regexp.MustCompile(`^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck`),
		title: func(m []string, fn string) string { return "BUG: soft lockup" + in(fn) }},
	{kind: "hard-lockup", re: regexp.MustCompile(`^(?:NMI watchdog: )?Watchdog detected hard LOCKUP on cpu \d+`),
		title: func(m []string, fn string) string { return "hard lockup" + in(fn) }},
	{kind: "rcu-stall", re: regexp.MustCompile(`^(?:rcu: )?INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected (?:stalls?|expedited stalls?)`),
		title: func(m []string, fn string) string { return "INFO: rcu detected stall" + in(fn) }},
	{kind: "hung-task", re: regexp.MustCompile(`^INFO: task (\S+):\d+ blocked for more than \d+ seconds`),
		title: func(m []string, fn string) string { return "INFO: task hung" + in(fn) }},
	{kind: "gpf", re: regexp.MustCompile(`^general protection fault[,:]`),
		title: func(m []string, fn string) string { return "general protection fault" + in(fn) }},
	{kind: "bug", re: regexp.MustCompile(`^kernel BUG at (\S+?)!?$`),
		title: func(m []string, fn string) string { return "kernel BUG" + in(fn) }},
	{kind: "bug", re: regexp.MustCompile(`^BUG: ((?:sleeping function called from invalid context|scheduling while atomic|spinlock|Bad page|bad unlock|workqueue lockup|KFENCE|using smp_processor_id|held lock freed|Bad rss-counter|stack guard page|TASK stack guard|looking up invalid subclass|corrupted list|MAX_LOCKDEP).*)$`),
		title: func(m []string, _ string) string { return "BUG: " + strings.TrimSpace(m[1]) }},
	{kind: "warning", re: regexp.MustCompile(`^WARNING: CPU: \d+ PID: \d+ at \S+ ([A-Za-z0-9_.]+)\+0x`),
		title: func(m []string, _ string) string { return "WARNING in " + m[1] }},
	{kind: "warning", re: regexp.MustCompile(`^WARNING: (?:CPU: \d+ PID: \d+ at |at )(\S+)`),
		title: func(m []string, fn string) string { return "WARNING" + in(fn) }},
	{kind: "oops", re: regexp.MustCompile(`^Oops: (.*\[#\d+\].*)$`),
		title: func(m []string, fn string) string { return "Oops" + in(fn) }},
	{kind: "panic", re: regexp.MustCompile(`^Kernel panic - not syncing: (.*)$`),
		title: func(m []string, _ string) string { return "Kernel panic - not syncing: " + strings.TrimSpace(m[1]) }},
}

func in(fn string) string {
	if fn == "" {
		return ""
	}
	return " in " + fn
}

// trimExit drops the exit code tail from "Attempted to kill init! exitcode=0x00000100".
func trimExit(s string) string {
	if i := strings.Index(s, " exitcode="); i > 0 {
		return s[:i]
	}
	return strings.TrimSpace(s)
}

// Strip removes a console line's timestamp prefix.
func Strip(line string) string { return stampRe.ReplaceAllString(strings.TrimRight(line, "\r"), "") }

// Parse finds the first crash report in console output, or nil.
func Parse(output string) *Crash {
	lines := strings.Split(output, "\n")
	for i, raw := range lines {
		line := Strip(raw)
		for _, p := range patterns {
			m := p.re.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			end := min(len(lines), i+60)
			report := make([]string, 0, end-i)
			for _, l := range lines[i:end] {
				report = append(report, Strip(l))
			}
			return &Crash{Title: p.title(m, guiltyFunction(report[1:])), Kind: p.kind, Report: report, Boot: p.boot}
		}
	}
	return nil
}

// guiltyFunction is where the report says it happened: the RIP line, else
// the first call-trace frame that is not reporting machinery.
func guiltyFunction(lines []string) string {
	for _, l := range lines {
		if m := ripRe.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	inTrace := false
	for _, l := range lines {
		if strings.Contains(l, "Call Trace:") {
			inTrace = true
			continue
		}
		if !inTrace {
			continue
		}
		if m := frameRe.FindStringSubmatch(l); m != nil && !boring(m[1]) {
			return m[1]
		}
	}
	return ""
}

// boring frames are the reporting and scheduling machinery, not the culprit.
func boring(fn string) bool {
	for _, p := range []string{"dump_stack", "show_stack", "panic", "__warn", "warn_slowpath", "report_bug", "handle_bug",
		"exc_invalid_op", "asm_exc_", "schedule", "__schedule", "rcu_", "printk", "__switch_to", "context_switch", "kasan_", "__asan_",
		"ubsan_", "__ubsan", "print_", "watchdog", "check_hung", "io_schedule", "schedule_timeout", "preempt_schedule"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}
