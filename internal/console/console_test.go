package console

import "testing"

// Excerpts written from the kernel's own message formats (lib/bug.c,
// arch/x86/mm/fault.c, kernel/panic.c, kernel/hung_task.c,
// kernel/watchdog.c, kernel/rcu/tree_stall.h, mm/kasan/report.c,
// lib/ubsan.c, init/main.c, init/do_mounts.c).
func TestParse(t *testing.T) {
	cases := []struct {
		name, kind, title string
		boot              bool
		log               string
	}{
		{"page fault", "bug", "BUG: unable to handle page fault in virtnet_poll", false, `[   12.345678] BUG: unable to handle page fault for address: ffffc90000a1b000
[   12.345999] #PF: supervisor read access in kernel mode
[   12.346100] #PF: error_code(0x0000) - not-present page
[   12.346200] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   12.346300] CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.1.0 #1
[   12.346400] RIP: 0010:virtnet_poll+0x1c/0x80
[   12.346500] Code: 00 00`},
		{"null deref", "bug", "BUG: kernel NULL pointer dereference in ext4_fill_super", false, `[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    3.1] #PF: supervisor read access in kernel mode
[    3.1] RIP: 0010:ext4_fill_super+0x123/0x2a0`},
		{"sysrq panic", "panic", "Kernel panic - not syncing: sysrq triggered crash", false, `[    5.000000] sysrq: Trigger a crash
[    5.000100] Kernel panic - not syncing: sysrq triggered crash
[    5.000200] CPU: 0 PID: 61 Comm: sh Not tainted 6.1.176 #1
[    5.000300] Call Trace:
[    5.000400]  <TASK>
[    5.000500]  dump_stack_lvl+0x34/0x44
[    5.000600]  panic+0x100/0x2b0`},
		{"warning", "warning", "WARNING in tcp_recvmsg_locked", false, `[   20.1] ------------[ cut here ]------------
[   20.1] WARNING: CPU: 1 PID: 345 at net/ipv4/tcp.c:2400 tcp_recvmsg_locked+0x6a0/0x9f0
[   20.1] Modules linked in:
[   20.1] RIP: 0010:tcp_recvmsg_locked+0x6a0/0x9f0`},
		{"gpf", "gpf", "general protection fault in __list_del_entry_valid", false, `[   40.0] general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT SMP
[   40.0] CPU: 0 PID: 77 Comm: kworker/0:1 Not tainted 6.1.0 #1
[   40.0] RIP: 0010:__list_del_entry_valid+0x29/0xc0`},
		{"kasan", "kasan", "KASAN: use-after-free in skb_release_data", false, `[   60.2] ==================================================================
[   60.2] BUG: KASAN: use-after-free in skb_release_data+0x4a2/0x500
[   60.2] Read of size 8 at addr ffff888012345678 by task ksoftirqd/0/12`},
		{"ubsan", "ubsan", "UBSAN: shift-out-of-bounds in net/sched/sch_fq.c:123:9", false, `[   61.0] ================================================================================
[   61.0] UBSAN: shift-out-of-bounds in net/sched/sch_fq.c:123:9
[   61.0] shift exponent 64 is too large for 64-bit type 'long unsigned int'`},
		{"hung task", "hung-task", "INFO: task hung in virtnet_send_command", false, `[  245.1] INFO: task kworker/0:2:123 blocked for more than 122 seconds.
[  245.1]       Not tainted 6.1.0 #1
[  245.1] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  245.1] task:kworker/0:2     state:D stack:0     pid:123   ppid:2      flags:0x00004000
[  245.1] Call Trace:
[  245.1]  <TASK>
[  245.1]  __schedule+0x2f0/0x950
[  245.1]  schedule+0x5d/0xd0
[  245.1]  schedule_timeout+0x11d/0x160
[  245.1]  virtnet_send_command+0x1a0/0x220
[  245.1]  virtnet_set_rx_mode+0x90/0x2e0`},
		{"soft lockup", "soft-lockup", "BUG: soft lockup in virtqueue_get_buf_ctx", false, `[  100.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]
[  100.0] Modules linked in:
[  100.0] RIP: 0010:virtqueue_get_buf_ctx+0x4/0x2f0`},
		{"hard lockup", "hard-lockup", "hard lockup in native_queued_spin_lock_slowpath", false, `[  200.0] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1
[  200.0] Modules linked in:
[  200.0] RIP: 0010:native_queued_spin_lock_slowpath+0x60/0x1e0`},
		{"rcu stall", "rcu-stall", "INFO: rcu detected stall in vhost_worker", false, `[  300.0] rcu: INFO: rcu_preempt self-detected stall on CPU
[  300.0] rcu: 	0-....: (21000 ticks this GP) idle=abc/1/0x4000000000000000 softirq=1/1 fqs=5250
[  300.0] RIP: 0010:vhost_worker+0x1a/0x120`},
		{"no rootfs", "boot", "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", true, `[    1.9] VFS: Cannot open root device "(null)" or unknown-block(0,0): error -6
[    1.9] Please append a correct "root=" boot option; here are the available partitions:
[    1.9] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)`},
		{"init died", "boot", "Kernel panic - not syncing: Attempted to kill init!", true, `[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100`},
		{"no init", "boot", "Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. See Linux Documentation/admin-guide/init.rst for guidance.", true,
			`[    1.5] Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. See Linux Documentation/admin-guide/init.rst for guidance.`},
		{"kernel BUG at", "bug", "kernel BUG in skb_put", false, `[   10.0] kernel BUG at net/core/skbuff.c:113!
[   10.0] invalid opcode: 0000 [#1] PREEMPT SMP
[   10.0] RIP: 0010:skb_put+0x40/0x50`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Parse("[    0.000000] Linux version 6.1.176\nsome noise\n" + c.log + "\n")
			if got == nil {
				t.Fatal("no crash found")
			}
			if got.Title != c.title || got.Kind != c.kind || got.Boot != c.boot {
				t.Errorf("got %q (%s, boot=%v), want %q (%s, boot=%v)", got.Title, got.Kind, got.Boot, c.title, c.kind, c.boot)
			}
			if len(got.Report) == 0 {
				t.Error("no report lines")
			}
		})
	}
}

func TestParseClean(t *testing.T) {
	// A test's own output that merely mentions these words is not a crash.
	clean := "[    0.000000] Linux version 6.1.176\n[    0.5] Run /init as init process\nFIRSTBAD-START nonce=abc\nhello\n" +
		"WARNING: the test found something\nBUG: my script has a bug\nsaw Oops: nothing\nthe general protection fault test passed\n" +
		"echo Kernel panic - not syncing: in a string\n"
	if c := Parse(clean); c != nil {
		t.Errorf("clean boot reported as %q", c.Title)
	}
}
