package target

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// hostedBoot is one boot through a boot script where the VMs are (a VM
// host over SSH, or libvirt on this machine): every hosted target runs
// the same steps, each undone in reverse if a later one fails:
//
//	evidence files -> header naming the host -> start the script with this
//	boot's part of the initramfs on its stdin -> (a file missing from the
//	host's cache: upload it, start again) -> stream the console and the
//	result channel -> stop (EOF on the script's stdin) -> the script ends.
//
// The script prints one word first: "firstbad-starting" (the rest of its
// stdout is the console, its stderr the result channel), "firstbad-missing
// PATH" (exit 97), or "firstbad-error MESSAGE". At EOF on its stdin (a Stop,
// the controller killed, the connection lost) it ends the guest.
type hostedBoot struct {
	sh     shell
	script string
	args   []string
	st     *staging
	header string // the console log's first lines
	where  string // the host or domain, for messages
	stop   time.Duration
	log    *slog.Logger
}

// hostedMachine is a machine behind a boot script.
type hostedMachine struct {
	vm
	portForwards
	job   *job
	grace time.Duration // after a Stop, how long the script gets to end
}

// portForwards are a machine's loopback listeners, each carried to a port
// on the far side of a connection.
type portForwards struct {
	listeners []net.Listener
	conns     sync.WaitGroup // forwards in flight
}

// checkAndStage is the front of every hosted boot: the host checked, the
// boot's local dir made, the kernel and initramfs staged for the host's
// cache. The caller closes the staging.
func checkAndStage(ctx context.Context, check func(context.Context) (*HostInfo, error), hs *hashes, b Boot) (*HostInfo, *staging, error) {
	info, err := check(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, nil, err
	}
	st, err := hs.stage(b, info.Dir)
	if err != nil {
		return nil, nil, err
	}
	return info, st, nil
}

// boot is run, with the machine as a Machine.
func (hb hostedBoot) boot(ctx context.Context, m *hostedMachine) (Machine, error) {
	if err := hb.run(ctx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// run boots: it returns once the script said it started the guest, with
// the console pumped to the log until the script ends.
func (hb hostedBoot) run(ctx context.Context, m *hostedMachine) error {
	logf, resf, err := m.create()
	if err != nil {
		m.closeListeners()
		return err
	}
	fail := func(err error) error {
		logf.Close()
		resf.Close()
		m.closeListeners()
		return err
	}
	fmt.Fprint(logf, hb.header)
	stdout, err := hb.start(ctx, m, resf)
	if err != nil {
		return fail(err)
	}
	m.grace = hb.stop
	m.stopOn(ctx, m.Stop)
	go func() {
		m.pump(stdout, logf)
		code, err := m.job.wait()
		m.closeListeners()
		logf.Close()
		resf.Close()
		e := Exit{Code: code}
		if err != nil && !m.wasKilled() {
			e.Err, e.Code = err, -1
		}
		m.finish(e)
	}()
	return nil
}

// start runs the script until it starts the guest, uploading what the
// host's cache lacks on the way, and returns the console's reader.
func (hb hostedBoot) start(ctx context.Context, m *hostedMachine, resf io.Writer) (io.Reader, error) {
	for attempt := 1; ; attempt++ {
		j, word, rest, err := startJob(ctx, hb.sh, hb.script, hb.args, resf, hb.st.in, hb.st.tail)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", hb.where, err)
		}
		if word == "firstbad-starting" {
			m.job = j
			return rest, nil
		}
		code, werr := j.wait()
		missing, ok := strings.CutPrefix(word, "firstbad-missing ")
		switch {
		case ok:
			local, known := hb.st.local[missing]
			if !known || attempt > len(hb.st.local) {
				return nil, fmt.Errorf("%s: %s is still missing from its cache after an upload", hb.where, missing)
			}
			if hb.log != nil {
				hb.log.Debug("uploading to the host's cache", "host", hb.where, "file", local)
			}
			if err := upload(ctx, hb.sh, local, missing); err != nil {
				return nil, fmt.Errorf("copying %s to %s on %s: %w", local, missing, hb.sh.where(), err)
			}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case werr != nil:
			return nil, werr
		default:
			msg, _ := strings.CutPrefix(word, "firstbad-error ")
			return nil, fmt.Errorf("%s: preparing the boot failed (exit %d): %s", hb.where, code, msg)
		}
	}
}

// startJob starts script, feeds it the last tail bytes of initrd (its
// stdin stays open: its EOF is the watchdog's signal), and reads its first
// line. The feeding ends when the script has its bytes or dies.
func startJob(ctx context.Context, sh shell, script string, args []string, stderr io.Writer, initrd *os.File, tail int64) (*job, string, io.Reader, error) {
	j, err := sh.start(ctx, script, args, stderr)
	if err != nil {
		return nil, "", nil, err
	}
	if initrd != nil {
		fi, err := initrd.Stat()
		if err != nil {
			j.kill()
			return nil, "", nil, err
		}
		// Joined by wait: the copy ends when the script has its bytes
		// or is gone.
		var feeding sync.WaitGroup
		feeding.Add(1)
		go func() {
			defer feeding.Done()
			io.Copy(j.stdin, io.NewSectionReader(initrd, fi.Size()-tail, tail))
		}()
		wait := j.wait
		j.wait = func() (int, error) {
			code, err := wait()
			feeding.Wait()
			return code, err
		}
	}
	stop := context.AfterFunc(ctx, j.kill)
	defer stop()
	br := bufio.NewReader(j.stdout)
	word, _ := br.ReadString('\n')
	return j, strings.TrimSpace(word), br, nil
}

// Stop closes the script's stdin: its watchdog ends the guest. If the
// script does not end within the grace period, it is killed.
func (m *hostedMachine) Stop() {
	if !m.markKilled() {
		return
	}
	m.job.stdin.Close()
	go func() {
		select {
		case <-m.done:
		case <-time.After(m.grace):
			m.job.kill()
		}
	}()
}

// Wait implements Machine: the machine gone, its forwards ended too.
func (m *hostedMachine) Wait() Exit {
	e := m.vm.Wait()
	m.conns.Wait()
	return e
}

func (m *portForwards) closeListeners() {
	for _, l := range m.listeners {
		l.Close()
	}
}

// listen binds a free loopback port for guest port g (recorded in ports)
// and forwards it with dial.
func (m *portForwards) listen(ports map[int]int, g int, dial func() (net.Conn, error)) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.closeListeners()
		return fmt.Errorf("listening for the guest's port %d: %w", g, err)
	}
	m.listeners = append(m.listeners, l)
	ports[g] = l.Addr().(*net.TCPAddr).Port
	m.forward(l, dial)
	return nil
}

// forward carries connections to l to address on the far side of dial (the
// VM host's loopback, where QEMU forwards into the guest), until l is
// closed. Each connection is counted in m.conns.
func (m *portForwards) forward(l net.Listener, dial func() (net.Conn, error)) {
	m.conns.Add(1)
	go func() {
		defer m.conns.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			m.conns.Add(1)
			go func() {
				defer m.conns.Done()
				splice(conn, dial)
			}()
		}
	}()
}

// splice copies both ways between conn and a new connection from dial
// until either side ends.
func splice(conn net.Conn, dial func() (net.Conn, error)) {
	defer conn.Close()
	rc, err := dial()
	if err != nil {
		return
	}
	defer rc.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(rc, conn); rc.Close() }()
	go func() { defer wg.Done(); io.Copy(conn, rc); conn.Close() }()
	wg.Wait()
}
