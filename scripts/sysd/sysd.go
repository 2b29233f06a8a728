// Package sysd boots a private systemd for tests, so that catherd's unit
// file is tried by systemd itself (its sandboxing, its notification
// protocol, ExecStartPre and ExecReload) on hosts whose PID 1 is not
// systemd, or whose systemd a test must not touch.
//
// systemd runs as PID 1 of new PID, mount, UTS, IPC and cgroup
// namespaces, in a cgroup of its own on the host's cgroup v2 hierarchy,
// told to use that hierarchy only (a systemd that picks the hybrid layout
// creates cgroups at the root of the host's v1 hierarchies and remounts
// the host's /sys/fs/cgroup read-only). Its /run is a private tmpfs (with
// the host's /run/netns bound in, for NetworkNamespacePath=), /proc/sys is
// read-only, and it starts one target with no default dependencies, so
// nothing of the host's own units runs: units a test wants are written to
// /run/systemd/system and should have DefaultDependencies=no (a drop-in
// can say so). Everything else, /sys/fs/bpf and the test's files among it,
// is the host's.
package sysd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options say what the private systemd runs.
type Options struct {
	// Dir holds the boot script, systemd's own log (systemd.log) and
	// what Files name; a test's temporary directory.
	Dir string
	// Units are unit files by name (a drop-in as "x.service.d/y.conf"),
	// written to /run/systemd/system.
	Units map[string]string
	// Files are host files bound over paths inside (the target path
	// need not exist on the host: its directory is covered by a tmpfs
	// holding the bound files and nothing else).
	Files map[string]string
	// Dirs are host directories bound over directories inside, which
	// must exist.
	Dirs map[string]string
	// Masked are units systemd must not start, even when a unit wants
	// them (as the host's network-online.target would pull in its
	// network scripts).
	Masked []string
}

// Systemd is a running private systemd.
type Systemd struct {
	cmd      *exec.Cmd
	pid      int    // systemd's PID on the host
	cgroup   string // the host cgroup it runs in
	services []string
	exited   chan struct{}
}

// target is what the private systemd starts: nothing by default.
const target = "sysd-test.target"

// Boot starts a private systemd and waits until it has started its
// target (60 s at most).
func Boot(o Options) (*Systemd, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("booting systemd needs root")
	}
	systemd, err := exec.LookPath("/lib/systemd/systemd")
	if err != nil {
		return nil, fmt.Errorf("systemd is not installed: %w", err)
	}
	v2, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	s := &Systemd{cgroup: filepath.Join(v2, fmt.Sprintf("catherd-sysd-%d-%d", os.Getpid(), time.Now().UnixNano())),
		exited: make(chan struct{})}
	for name := range o.Units {
		if strings.HasSuffix(name, ".service") {
			s.services = append(s.services, name)
		}
	}
	if err := os.Mkdir(s.cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup for systemd: %w", err)
	}
	script := filepath.Join(o.Dir, "sysd-boot.sh")
	if err := os.WriteFile(script, []byte(bootScript(o, systemd)), 0o755); err != nil {
		s.removeCgroup()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(o.Dir, "systemd.log"))
	if err != nil {
		s.removeCgroup()
		return nil, err
	}
	// The shell moves itself into the cgroup, then unshare makes it the
	// root of systemd's cgroup namespace.
	s.cmd = exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec unshare --pid --mount --uts --ipc --cgroup --fork --mount-proc "$2"`,
		"sh", s.cgroup, script)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		s.removeCgroup()
		return nil, err
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.exited) }()
	if err := s.waitBooted(); err != nil {
		s.Close()
		log, _ := os.ReadFile(filepath.Join(o.Dir, "systemd.log"))
		return nil, fmt.Errorf("%w\nsystemd's log:\n%s", err, log)
	}
	return s, nil
}

// cgroup2Root is where the host's cgroup v2 hierarchy is mounted: at
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host.
func cgroup2Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy mounted (at /sys/fs/cgroup or /sys/fs/cgroup/unified)")
}

// bootScript prepares the namespaces' mounts and runs systemd.
func bootScript(o Options, systemd string) string {
	var b strings.Builder
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	keep := filepath.Join(o.Dir, "sysd-netns")
	fmt.Fprintf(&b, "#!/bin/sh\nset -eu\nmount --make-rprivate /\nmkdir -p %s\n", q(keep))
	fmt.Fprintf(&b, "if [ -d /run/netns ]; then mount --rbind /run/netns %s; fi\n", q(keep))
	b.WriteString("mount -t tmpfs -o mode=755 tmpfs /run\nmkdir -p /run/netns /run/systemd/system\n")
	fmt.Fprintf(&b, "if mountpoint -q %s; then mount --move %s /run/netns; fi\n", q(keep), q(keep))
	b.WriteString("mount -t cgroup2 cgroup2 /sys/fs/cgroup\n")
	b.WriteString("mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys\n")
	covered := map[string]bool{}
	for inside, host := range o.Files {
		if d := filepath.Dir(inside); !covered[d] {
			fmt.Fprintf(&b, "mount -t tmpfs -o mode=755 tmpfs %s\n", q(d))
			covered[d] = true
		}
		fmt.Fprintf(&b, "touch %s && mount --bind %s %s\n", q(inside), q(host), q(inside))
	}
	for inside, host := range o.Dirs {
		fmt.Fprintf(&b, "mount --bind %s %s\n", q(host), q(inside))
	}
	units := map[string]string{target: "[Unit]\nDescription=what a test runs\nDefaultDependencies=no\n"}
	for name, text := range o.Units {
		units[name] = text
	}
	for name, text := range units {
		path := "/run/systemd/system/" + name
		fmt.Fprintf(&b, "mkdir -p %s\ncat > %s <<'SYSD_UNIT_END'\n%s\nSYSD_UNIT_END\n", q(filepath.Dir(path)), q(path), text)
	}
	for _, name := range o.Masked {
		fmt.Fprintf(&b, "ln -s /dev/null %s\n", q("/run/systemd/system/"+name))
	}
	// container= makes systemd behave as in a container (no hardware,
	// no kernel settings); in one, it reads its kernel command line
	// options from its own arguments.
	fmt.Fprintf(&b, "export container=catherd-test\nexec %s --system --unit=%s --log-target=console "+
		"systemd.unified_cgroup_hierarchy=1 systemd.legacy_systemd_cgroup_controller=0\n", q(systemd), target)
	return b.String()
}

// waitBooted waits until systemd has reached its target.
func (s *Systemd) waitBooted() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			return errors.New("systemd exited while booting")
		default:
		}
		if s.pid == 0 {
			s.pid = s.childPid()
		}
		if s.pid != 0 {
			out, _ := s.Systemctl("is-active", target)
			if strings.TrimSpace(string(out)) == "active" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("systemd did not reach its target within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childPid finds systemd, unshare's child, on the host (0 until it runs).
func (s *Systemd) childPid() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "systemd" {
		return 0 // still the boot script
	}
	return pid
}

// Run runs a command inside systemd's mount and PID namespaces (where
// systemctl finds it, and PIDs are systemd's), bounded by 2 minutes.
func (s *Systemd) Run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--target", strconv.Itoa(s.pid), "--mount", "--pid", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Systemctl runs systemctl against the private systemd.
func (s *Systemd) Systemctl(args ...string) ([]byte, error) {
	return s.Run("systemctl", args...)
}

// Show returns a unit's property, as systemctl show prints it.
func (s *Systemd) Show(unit, property string) string {
	out, _ := s.Systemctl("show", "--property", property, "--value", unit)
	return strings.TrimSpace(string(out))
}

// Close stops the services first, so that systemd cleans up after them
// on the host (PrivateTmp= directories), then systemd and everything left
// (killing PID 1 ends its PID namespace), and removes its cgroup.
func (s *Systemd) Close() error {
	if s.pid != 0 {
		s.Systemctl(append([]string{"stop"}, s.services...)...)
		syscall.Kill(s.pid, syscall.SIGKILL)
	}
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		return errors.New("systemd's namespace did not end within 30 s")
	}
	return s.removeCgroup()
}

// removeCgroup removes systemd's cgroup and those it made, deepest first,
// once their processes are gone (bounded: 10 s).
func (s *Systemd) removeCgroup() error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var dirs []string
		filepath.WalkDir(s.cgroup, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		err = nil
		for i := len(dirs) - 1; i >= 0; i-- {
			if rmErr := os.Remove(dirs[i]); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = rmErr
			}
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
