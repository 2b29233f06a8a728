// Package keepalived runs Debian's keepalived (VRRP) on a host of a test
// or a comparison: the configuration of README.md ("Balancer failover")
// with the caller's addresses, the command line that runs it in the
// foreground, and where the VIP is. The catherd tests and
// scripts/failover/compare use it, so that catherd and the front ends it
// is compared with sit under the same keepalived.
package keepalived

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// confTemplate is README.md's keepalived.conf, its check and instance
// named for any front end, not only catherd; Host fills it in. Both
// hosts start as BACKUP and, unless told to preempt, never do (the VIP
// moves once when a host fails, not again when it returns), and a host
// whose check fails goes to FAULT and gives the VIP up.
const confTemplate = `global_defs {
    router_id %[1]s
    script_user nobody
    enable_script_security
}

vrrp_script frontend_ready {
    script "/usr/bin/curl -fsS -o /dev/null -m 1 %[4]s"
    interval 1
    timeout 2
    fall %[5]d
    rise %[5]d
}

vrrp_instance frontend {
    state BACKUP
    %[6]s
    interface eth0
    virtual_router_id 51
    priority %[2]d
    advert_int 1
    virtual_ipaddress {
        %[3]s dev eth0
    }
    track_script {
        frontend_ready
    }
}
`

// Host is how keepalived runs on one host: its name, priority, the VIP
// (with its prefix length), the URL its check asks (catherd's /readyz, or
// a page the local front end serves itself), how many checks in a row
// change its verdict (default 1), and whether a host of a higher priority
// takes the VIP back when it returns (preempt).
type Host struct {
	ID, VIP, Check string
	Priority, Rise int
	Preempt        bool
}

// Config is the host's keepalived.conf.
func (h Host) Config() string {
	preempt := "nopreempt"
	if h.Preempt {
		preempt = ""
	}
	return fmt.Sprintf(confTemplate, h.ID, h.Priority, h.VIP, h.Check, max(h.Rise, 1), preempt)
}

// Prepare writes h's configuration into dir (made if missing) and returns
// the command line that runs keepalived there: VRRP only, in the
// foreground, logging to its standard output. Run it in the host's
// network namespace, and call KillChild(dir) once it has stopped.
func Prepare(dir string, h Host) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(h.Config()), 0o644); err != nil {
		return nil, err
	}
	return []string{"keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"-f", conf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid")}, nil
}

// KillChild kills the VRRP child of the keepalived Prepare set up in dir,
// by the PID in its pid file. Its parent stops it, but a parent that was
// killed leaves it holding the VIP.
func KillChild(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "vrrp.pid"))
	if err != nil {
		return
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// HasVIP reports whether vip (an address without its prefix) is on eth0
// of network namespace ns.
func HasVIP(ns, vip string) (bool, error) {
	out, err := exec.Command("ip", "-n", ns, "-4", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		return false, fmt.Errorf("ip -n %s addr show dev eth0: %w", ns, err)
	}
	return strings.Contains(string(out), " "+vip+"/"), nil
}

// WaitVIP waits until vip is on eth0 of namespace ns, for at most limit.
func WaitVIP(ctx context.Context, ns, vip string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		has, err := HasVIP(ns, vip)
		if has {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the VIP %s is not on %s's eth0 after %v (%v)", vip, ns, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
