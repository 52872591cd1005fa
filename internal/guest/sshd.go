package guest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

// SSHPort is where the agent's SSH server listens inside the guest.
const SSHPort = 22

// serveSSH runs the agent's SSH server: public-key auth with the one key the
// host generated for this run, exec and shell (with a pty when asked)
// through /bin/sh, the SFTP subsystem (what modern scp speaks), and
// direct-tcpip forwards (ssh -L). It listens before returning, so the host
// can connect as soon as the agent says it started.
func serveSSH(authorized, addr string) error {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
	if err != nil {
		return fmt.Errorf("authorized key: %v", err)
	}
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		return err
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), want.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveConn(c, cfg)
		}
	}()
	return nil
}

func serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, reqs, err := nc.Accept()
			if err == nil {
				go session(ch, reqs)
			}
		case "direct-tcpip":
			go forward(nc)
		default:
			nc.Reject(ssh.UnknownChannelType, "not supported")
		}
	}
}

// forward is ssh -L: connect to the requested address inside the guest.
func forward(nc ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad request")
		return
	}
	dst, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		dst.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(ch, dst); ch.CloseWrite() }()
	go func() { defer wg.Done(); io.Copy(dst, ch); dst.(*net.TCPConn).CloseWrite() }()
	wg.Wait()
	ch.Close()
	dst.Close()
}

type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// session serves one session channel: env, pty-req, window-change, then
// one of exec, shell or subsystem sftp, which runs while the requests keep
// being served; its end sends the exit status and closes the channel.
func session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	env := os.Environ()
	var ptyReq *ptyRequest
	var tty *os.File
	started := false
	finish := func(code int) {
		exitStatus(ch, code)
		ch.Close()
	}
	for req := range reqs {
		ok := false
		var launch func() // starts the work once the request is answered
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ok = ssh.Unmarshal(req.Payload, &kv) == nil; ok {
				env = append(env, kv.Name+"="+kv.Value)
			}
		case "pty-req":
			ptyReq = &ptyRequest{}
			ok = ssh.Unmarshal(req.Payload, ptyReq) == nil
		case "window-change":
			var wc struct{ Cols, Rows, Width, Height uint32 }
			if ok = ssh.Unmarshal(req.Payload, &wc) == nil && tty != nil; ok {
				_ = pty.Setsize(tty, &pty.Winsize{Rows: uint16(wc.Rows), Cols: uint16(wc.Cols)})
			}
		case "subsystem":
			var sub struct{ Name string }
			if ok = !started && ssh.Unmarshal(req.Payload, &sub) == nil && sub.Name == "sftp"; ok {
				started = true
				launch = func() {
					serveSFTP(ch)
					finish(0)
				}
			}
		case "exec", "shell":
			if started {
				break
			}
			cmd := exec.Command("/bin/sh", "-l")
			if req.Type == "exec" {
				var c struct{ Command string }
				if ssh.Unmarshal(req.Payload, &c) != nil {
					break
				}
				cmd = exec.Command("/bin/sh", "-c", c.Command)
			}
			cmd.Dir, cmd.Env = "/root", env
			inRoot(cmd)
			started, ok = true, true
			if ptyReq != nil {
				cmd.Env = append(cmd.Env, "TERM="+ptyReq.Term)
				f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(ptyReq.Rows), Cols: uint16(ptyReq.Cols)})
				if err != nil {
					launch = func() {
						fmt.Fprintf(ch.Stderr(), "%v\n", err)
						finish(127)
					}
					break
				}
				tty = f
				launch = func() { finish(waitPty(cmd, f, ch)) }
				break
			}
			launch = func() { finish(runPipes(cmd, ch)) }
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if launch != nil {
			go launch()
		}
	}
}

// runPipes runs cmd with the channel as stdin, stdout and stderr.
func runPipes(cmd *exec.Cmd, ch ssh.Channel) int {
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 127
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "%v\n", err)
		return 127
	}
	go func() { io.Copy(stdin, ch); stdin.Close() }()
	return exitCode(cmd.Wait())
}

// waitPty copies between a command's pseudo-terminal and the channel until
// the command ends.
func waitPty(cmd *exec.Cmd, f *os.File, ch ssh.Channel) int {
	defer f.Close()
	go io.Copy(f, ch)
	done := make(chan struct{})
	go func() { io.Copy(ch, f); close(done) }()
	code := exitCode(cmd.Wait())
	<-done
	return code
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 127
}

func exitStatus(ch ssh.Channel, code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	_, _ = ch.SendRequest("exit-status", false, b[:])
}
