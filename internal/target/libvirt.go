package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"

	"github.com/firstbad/firstbad/internal/lock"
	"github.com/firstbad/firstbad/internal/remote"
)

// Libvirt boots kernels in an existing libvirt domain, so the guest runs
// with the virtual hardware the user defined (disks, NICs, devices, CPU
// model, memory): firstbad only switches the domain to direct kernel boot
// with the candidate's kernel, initramfs and command line, logs its first
// serial port to a file, adds the result channel, and makes a reboot or a
// crash end the domain. The domain's definition is saved on the host
// before the first boot and put back by Close, or, after a controller that
// died, by the next firstbad that uses the domain.
//
// It drives virsh, on this machine or on the VM host over the same SSH
// connection that ships the kernels, rather than a libvirt RPC client:
// virsh is on every libvirt host, the files (kernels, the console log) have
// to be handled on the host anyway, and one SSH connection keeps the
// user's ssh_config, known_hosts and ProxyJump handling.
type Libvirt struct {
	Host     *sshHost // nil: libvirt on this machine
	URI      string   // libvirt URI on the host (default qemu:///system)
	Domain   string
	Dir      string // kernels and boot files on the host, readable by QEMU there
	StateDir string // local: the lock that keeps one run per domain
	TakeOver bool   // stop the domain even if it runs something else
	// CacheBytes bounds the kernels kept in Dir (default DefaultHostCache).
	CacheBytes int64
	Log        *slog.Logger
	hashes

	mu       sync.Mutex
	info     *HostInfo
	original string     // the domain's definition before firstbad
	lock     *lock.Lock // held from the first boot to Close
}

// markerNS marks a definition as a firstbad boot's (in its <metadata>).
const markerNS = "https://github.com/firstbad/firstbad/libvirt/1"

// ParseLibvirtTarget parses libvirt://[[user@]host[:port]]/DOMAIN[?uri=URI&dir=DIR].
func ParseLibvirtTarget(s string) (*Libvirt, error) {
	const want = "want libvirt:///DOMAIN (this machine) or libvirt://[user@]host[:port]/DOMAIN, with optional ?uri=LIBVIRT_URI&dir=DIR"
	u, err := url.Parse(s)
	dom := ""
	if err == nil {
		dom = strings.TrimPrefix(u.Path, "/")
	}
	if err != nil || u.Scheme != "libvirt" || dom == "" || strings.Contains(dom, "/") {
		return nil, fmt.Errorf("--target %q: %s", s, want)
	}
	l := &Libvirt{Domain: dom, URI: "qemu:///system", Dir: "/var/lib/libvirt/firstbad"}
	if u.Host != "" {
		d, err := remote.ParseDest(u.Host)
		if err != nil {
			return nil, fmt.Errorf("--target %q: %v", s, err)
		}
		d.User = u.User.Username()
		l.Host = &sshHost{Dest: d}
	}
	if err := targetParams(s, u, map[string]*string{"uri": &l.URI, "dir": &l.Dir}); err != nil {
		return nil, err
	}
	return l, nil
}

// Name implements Target.
func (l *Libvirt) Name() string {
	h := ""
	if l.Host != nil {
		h = l.Host.Dest.String()
	}
	return "libvirt://" + h + "/" + l.Domain
}

func (l *Libvirt) sh() shell {
	if l.Host != nil {
		return l.Host
	}
	return localShell{}
}

// where names the domain for messages.
func (l *Libvirt) where() string {
	return fmt.Sprintf("libvirt domain %s on %s (%s)", l.Domain, l.sh().where(), l.URI)
}

// libvirtLib is the start of every libvirt script: its arguments, a virsh
// on the URI, and a way to fail with a message.
const libvirtLib = `d=$1; uri=$2; dom=$3; shift 3
v() { virsh -q -c "$uri" "$@"; }
` + scriptFail + `ours() { v dumpxml "$@" "$dom" 2>/dev/null | grep -q '` + markerNS + `'; }
saved="$d/saved-$dom.xml"
`

// checkScript looks without touching: the host, libvirt, the domain.
const checkScript = libvirtLib + `command -v virsh >/dev/null 2>&1 || fail "no virsh: install libvirt-clients (and libvirt-daemon-system for the hypervisor)"
umask 022
` + hostDirs + `ver=$(v version 2>&1) || fail "cannot connect to libvirt at $uri: $ver"
st=$(v domstate "$dom" 2>&1) || fail "no domain $dom at $uri ($st): virsh -c $uri list --all lists them"
uname -n; uname -r
echo "$ver" | sed -n 's/^Running hypervisor: //p' | head -n 1
echo "$st"
if ours; then echo ours; else echo theirs; fi
` + hostSpace

// Check implements Hosted: libvirt reachable, the domain defined, room for
// kernels, and the domain not busy with something else. It changes
// nothing (doctor uses it).
func (l *Libvirt) Check(ctx context.Context) (*HostInfo, error) {
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	if info != nil {
		return info, nil
	}
	out, err := l.sh().run(ctx, checkScript, []string{l.Dir, l.URI, l.Domain}, nil)
	if msg, ok := scriptError(out); ok {
		return nil, fmt.Errorf("%s: %s", l.where(), msg)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if err != nil || len(lines) < 7 {
		return nil, fmt.Errorf("checking %s: %v (output %q)", l.where(), err, out)
	}
	info = &HostInfo{Name: lines[0], Kernel: lines[1], QEMU: lines[2] + ", libvirt domain " + l.Domain, Dir: lines[6]}
	info.FreeMB, _ = strconv.ParseInt(strings.TrimSpace(lines[5]), 10, 64)
	info.FreeMB /= 1024
	state, ours := lines[3], lines[4] == "ours"
	if state != "shut off" && state != "crashed" && !ours && !l.TakeOver {
		return nil, fmt.Errorf("%s is %s, not with a firstbad boot: shut it down first, or pass --take-over-domain to let firstbad stop it (its definition is restored at the end)", l.where(), state)
	}
	if info.FreeMB < 256 {
		return nil, fmt.Errorf("%s: only %d MiB free in %s; firstbad needs 256 MiB there for kernels and initramfs", l.where(), info.FreeMB, info.Dir)
	}
	l.mu.Lock()
	l.info = info
	l.mu.Unlock()
	return info, nil
}

// scriptError is the message of a script that failed with "firstbad-error".
func scriptError(out []byte) (string, bool) {
	for _, line := range strings.Split(string(out), "\n") {
		if msg, ok := strings.CutPrefix(line, "firstbad-error "); ok {
			return msg, true
		}
	}
	return "", false
}

// prepareScript makes the domain firstbad's: a definition left by a run
// that ended without restoring it is put back first, a firstbad boot still
// running is stopped (so is anything else, when taking over), and the
// original definition is saved on the host and printed.
const prepareScript = libvirtLib + `takeover=$1
if ours --inactive; then
	[ -s "$saved" ] || fail "its definition is a firstbad boot's but the original ($saved) is gone: define the domain again"
	v destroy "$dom" >/dev/null 2>&1
	out=$(v define "$saved" 2>&1) || fail "restoring the domain from $saved: $out"
	echo "firstbad-restored"
fi
case $(v domstate "$dom") in
"shut off"|crashed) ;;
*) if ours || [ "$takeover" = 1 ]; then v destroy "$dom" >/dev/null; else fail "it is running something else: shut it down, or pass --take-over-domain"; fi ;;
esac
v dumpxml --inactive --security-info "$dom" > "$saved.part" && mv -f "$saved.part" "$saved" || fail "saving the definition to $saved"
cat "$saved"`

// prepare is done once per run, before the first boot.
func (l *Libvirt) prepare(ctx context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.original != "" {
		return l.original, nil
	}
	if l.lock == nil {
		key := sha256.Sum256([]byte(l.sh().where() + "\x00" + l.URI + "\x00" + l.Domain))
		_ = os.MkdirAll(l.StateDir, 0o755)
		lk, err := lock.TryAcquire(filepath.Join(l.StateDir, "libvirt-"+hex.EncodeToString(key[:8])+".lock"))
		if err != nil {
			return "", fmt.Errorf("%s is in use by another firstbad: %w", l.where(), err)
		}
		l.lock = lk
	}
	takeover := "0"
	if l.TakeOver {
		takeover = "1"
	}
	out, err := l.sh().run(ctx, prepareScript, []string{l.Dir, l.URI, l.Domain, takeover}, nil)
	if msg, ok := scriptError(out); ok {
		return "", fmt.Errorf("%s: %s", l.where(), msg)
	}
	if err != nil {
		return "", fmt.Errorf("preparing %s: %w", l.where(), err)
	}
	if rest, ok := strings.CutPrefix(string(out), "firstbad-restored\n"); ok {
		out = []byte(rest)
		if l.Log != nil {
			l.Log.Warn("restored the domain's own definition, left switched to a firstbad boot by an earlier run", "domain", l.Domain)
		}
	}
	l.original = string(out)
	return l.original, nil
}

// restoreScript puts the saved definition back.
const restoreScript = libvirtLib + `[ -s "$saved" ] || exit 0
v destroy "$dom" >/dev/null 2>&1
out=$(v define "$saved" 2>&1) || fail "restoring the domain from $saved: $out"
rm -f "$saved"`

// Close implements Hosted: the domain gets its own definition back.
func (l *Libvirt) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.original != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := l.sh().run(ctx, restoreScript, []string{l.Dir, l.URI, l.Domain}, nil)
		cancel()
		if msg, ok := scriptError(out); ok || err != nil {
			if l.Log != nil {
				l.Log.Error("could not restore the libvirt domain's definition; the next firstbad run on it will", "domain", l.Domain, "err", err, "msg", msg)
			}
		} else {
			l.original = ""
		}
	}
	if l.lock != nil {
		l.lock.Release()
		l.lock = nil
	}
	if l.Host != nil {
		l.Host.closeConn()
	}
}

// bootXML is the original definition switched to direct kernel boot of
// kernel and initrd with cmdline, the first serial port logged to console,
// the result channel on a file, and an end to the domain on reboot or crash
// (the guest powers off or panics with panic=-1).
func bootXML(original, kernel, initrd, cmdline, console, result string) (string, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(original); err != nil {
		return "", fmt.Errorf("reading the domain's definition: %w", err)
	}
	dom := doc.SelectElement("domain")
	if dom == nil {
		return "", errors.New("the domain's definition has no <domain>")
	}
	child := func(parent *etree.Element, tag string) *etree.Element {
		if e := parent.SelectElement(tag); e != nil {
			return e
		}
		return parent.CreateElement(tag)
	}
	osEl := child(dom, "os")
	for _, tag := range []string{"kernel", "initrd", "cmdline", "dtb"} {
		for _, e := range osEl.SelectElements(tag) {
			osEl.RemoveChild(e)
		}
	}
	osEl.CreateElement("kernel").SetText(kernel)
	if initrd != "" {
		osEl.CreateElement("initrd").SetText(initrd)
	}
	osEl.CreateElement("cmdline").SetText(cmdline)
	child(dom, "on_reboot").SetText("destroy")
	child(dom, "on_crash").SetText("destroy")
	md := child(dom, "metadata")
	mark := md.CreateElement("fb:boot")
	mark.CreateAttr("xmlns:fb", markerNS)
	devices := child(dom, "devices")
	serial := devices.SelectElement("serial")
	if serial == nil {
		serial = devices.CreateElement("serial")
		serial.CreateAttr("type", "pty")
		serial.CreateElement("target").CreateAttr("port", "0")
	}
	for _, e := range serial.SelectElements("log") {
		serial.RemoveChild(e)
	}
	lg := etree.NewElement("log")
	lg.CreateAttr("file", console)
	lg.CreateAttr("append", "off")
	serial.InsertChildAt(0, lg)
	ch := devices.CreateElement("channel")
	ch.CreateAttr("type", "file")
	ch.CreateElement("source").CreateAttr("path", result)
	tg := ch.CreateElement("target")
	tg.CreateAttr("type", "virtio")
	tg.CreateAttr("name", "firstbad.result")
	doc.Indent(2)
	return doc.WriteToString()
}

// libvirtBootScript stages a boot on the host and runs it, in one session:
// like the remote QEMU's start script (exit 97 names a file missing from
// the host's cache, this boot's part of the initramfs is the first bytes
// of stdin, the console comes on stdout and the result channel on stderr,
// EOF on stdin ends the guest), with the domain defined for this boot and
// started instead of a QEMU process.
const libvirtBootScript = libvirtLib + `k=$1; base=$2; size=$3; max=$4; b=$5; xml=$6
trap 'rm -rf "$b"; exit 129' HUP INT TERM PIPE
` + hostCache + `umask 022
mkdir -p "$b" || fail "cannot create $b"
{ [ -z "$base" ] || cat "$base"; head -c "$size"; } > "$b/initrd" || fail "cannot write $b/initrd"
printf '%s\n' "$xml" > "$b/domain.xml"
out=$(v define "$b/domain.xml" 2>&1) || { rm -rf "$b"; fail "defining the boot: $out"; }
out=$(v start "$dom" 2>&1) || { rm -rf "$b"; fail "starting the domain: $out"; }
echo firstbad-starting
exec 3<&0
trap 'v destroy "$dom" >/dev/null 2>&1' HUP INT TERM PIPE
{ while read -r _ <&3; do :; done; v destroy "$dom" >/dev/null 2>&1; } &
w=$!
{ while :; do
	case $(v domstate "$dom" 2>/dev/null) in
	running|paused|blocked|"in shutdown"|pmsuspended) sleep 0.2 ;;
	*) break ;;
	esac
done; } </dev/null &
l=$!
# --pid: the tails read what is left once the domain is over, then end.
tail -n +1 -F --pid=$l "$b/console.log" 2>/dev/null &
t=$!
tail -n +1 -F --pid=$l "$b/result.jsonl" 2>/dev/null >&2 &
r=$!
wait $l $t $r
kill $w 2>/dev/null
rm -rf "$b"`

// Boot implements Target.
func (l *Libvirt) Boot(ctx context.Context, b Boot) (Machine, error) {
	if b.Interactive {
		return nil, fmt.Errorf("%s: an interactive console is not supported here: use virsh console", l.where())
	}
	if len(b.Forwards) > 0 {
		return nil, fmt.Errorf("%s: host-side tests need a port forwarded into the guest, which a libvirt domain's own NICs do not give: use the qemu or ssh:// target for them", l.where())
	}
	info, st, err := checkAndStage(ctx, l.Check, &l.hashes, b)
	if err != nil {
		return nil, err
	}
	defer st.close()
	original, err := l.prepare(ctx)
	if err != nil {
		return nil, err
	}
	xml, err := bootXML(original, st.kernel, st.initrd, b.Cmdline, path.Join(st.dir, "console.log"), path.Join(st.dir, "result.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.where(), err)
	}
	args := []string{l.Dir, l.URI, l.Domain, st.kernel, st.base, strconv.FormatInt(st.tail, 10), cacheBound(l.CacheBytes), st.dir, xml}
	m := &hostedMachine{vm: newVM(b.Dir, map[int]int{})}
	hb := hostedBoot{sh: l.sh(), script: libvirtBootScript, args: args, st: st, where: l.where(), stop: 10 * time.Second, log: l.Log,
		header: fmt.Sprintf("%s%s\nfirstbad: %s: kernel %s, initrd %s, cmdline %q\n", HostLinePrefix, info, l.Name(), st.kernel, st.initrd, b.Cmdline)}
	return hb.boot(ctx, m)
}
