package guest

import (
	"fmt"
	"os"
	"syscall"
)

// InitSystem, as Settings.Init, hands the boot over to the guest root's
// own init (--init system): the test runs as a service of the booted
// system, not chrooted under firstbad's /init.
const InitSystem = "system"

// SystemAgentArg, as the first argument, makes the firstbad binary the
// agent of a guest whose own init booted: the service firstbad's /init
// installed in the root before handing the boot over.
const SystemAgentArg = "__system-agent"

// systemAgent is where the agent puts itself in the guest's root.
const systemAgent = "/firstbad/agent"

// systemUnit runs the agent once the system is up, its output on the
// serial console (where the host reads the markers, next to what systemd
// prints there). A file, not a TTYPath: that would wait for the tty's
// device unit, which a root without udev never gets.
const systemUnit = `[Unit]
Description=firstbad: the test's runs
After=multi-user.target

[Service]
Type=simple
ExecStart=` + systemAgent + ` ` + SystemAgentArg + `
StandardInput=null
StandardOutput=file:/dev/ttyS0
StandardError=file:/dev/ttyS0

[Install]
WantedBy=multi-user.target
`

// handOver installs the agent as a service in root (the overlay: nothing
// reaches the image or the host) and makes root's own init PID 1, as
// switch_root does: root moved onto /, chrooted, /sbin/init executed. It
// returns only on failure.
func handOver(root string) error {
	if _, err := os.Lstat(root + "/sbin/init"); err != nil {
		return fmt.Errorf("--init system: the guest's root has no /sbin/init (%v): install an init system in it (Debian: systemd-sysv)", err)
	}
	if err := installService(root); err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := syscall.Mount(root, "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the guest's root to /: %v", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the guest's root: %v", err)
	}
	_ = os.Chdir("/")
	return fmt.Errorf("starting the guest's /sbin/init: %v", syscall.Exec("/sbin/init", []string{"/sbin/init"}, os.Environ()))
}

// installService puts the agent, its settings and its unit into root.
func installService(root string) error {
	if err := copyIn("/init", root+systemAgent); err != nil {
		return err
	}
	if err := copyIn(settingsPath, root+settingsPath); err != nil {
		return err
	}
	units := root + "/etc/systemd/system"
	if err := os.MkdirAll(units+"/multi-user.target.wants", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(units+"/firstbad-agent.service", []byte(systemUnit), 0o644); err != nil {
		return err
	}
	if err := os.Symlink("../firstbad-agent.service", units+"/multi-user.target.wants/firstbad-agent.service"); err != nil && !os.IsExist(err) {
		return err
	}
	// No getty on the console: it would reset the line under the
	// markers, and without udev it waits 90 s for the tty's device.
	os.Remove(units + "/serial-getty@ttyS0.service")
	return os.Symlink("/dev/null", units+"/serial-getty@ttyS0.service")
}

// SystemAgent runs the boot's runs as a service of the guest's own init,
// then powers off (the root's writes live in a tmpfs: nothing to save).
func SystemAgent() int {
	defer poweroff()
	var s Settings
	if err := readSettings(settingsPath, &s); err != nil {
		say("firstbad-agent: %v", err)
		return 1
	}
	serve(s)
	return 0
}
