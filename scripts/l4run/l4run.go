// Package l4run runs catherd's XDP datapath in an l4topo topology for the
// L4 tests, the benchmark and the demo: start and stop the process, wait
// for its backends, name its --l4 flag.
package l4run

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/xdp"
)

// Catherd is a catherd process running in the balancer namespace.
type Catherd struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// L4Flag is the --l4 value steering VIP:port/proto to the given backends.
func L4Flag(port uint16, proto string, backends []netip.Addr) string {
	list := make([]string, len(backends))
	for i, b := range backends {
		list[i] = b.String()
	}
	return fmt.Sprintf("%s/%s=%s", netip.AddrPortFrom(l4topo.VIP, port), proto, strings.Join(list, ","))
}

// Start runs `bin run --xdp-iface eth0 --xdp-pin-dir pins args...`
// in the balancer namespace (through nsenter, which unlike ip netns exec
// keeps the host's /sys/fs/bpf), writing its output to log.
func Start(t *l4topo.Topo, bin, pins string, log io.Writer, args ...string) (*Catherd, error) {
	return start(t.BalancerNS(), nil, bin, pins, log, args...)
}

// StartWrapped is Start with catherd run by a wrapper command (e.g.
// setpriv, to drop capabilities), which must exec it in place.
func StartWrapped(t *l4topo.Topo, wrapper []string, bin, pins string, log io.Writer, args ...string) (*Catherd, error) {
	return start(t.BalancerNS(), wrapper, bin, pins, log, args...)
}

// StartIn is Start in namespace ns: the second balancer of a tier
// (l4topo.Topo.Balancer2NS), with pins of its own.
func StartIn(ns, bin, pins string, log io.Writer, args ...string) (*Catherd, error) {
	return start(ns, nil, bin, pins, log, args...)
}

func start(ns string, wrapper []string, bin, pins string, log io.Writer, args ...string) (*Catherd, error) {
	argv := append([]string{"--net=" + l4topo.NetnsPath(ns)}, wrapper...)
	// Its own hand-off socket, beside no other test's.
	handoff := filepath.Join(os.TempDir(), "catherd-"+filepath.Base(pins)+".handoff")
	argv = append(append(argv, bin, "run", "--xdp-iface", "eth0", "--xdp-pin-dir", pins, "--handoff-socket", handoff), args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start catherd: %w", err)
	}
	c := &Catherd{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	return c, nil
}

// Wait waits up to limit for catherd to exit by itself and returns its
// exit code; past limit it kills it and returns -1.
func (c *Catherd) Wait(limit time.Duration) int {
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		c.Stop(syscall.SIGKILL)
		return -1
	}
}

// Pid is the catherd process's ID (nsenter execs catherd in place).
func (c *Catherd) Pid() int { return c.cmd.Process.Pid }

// Stop sends sig and waits (SIGKILL after 5 s). With SIGKILL the XDP
// program stays attached and keeps steering: that is the point of pinning.
func (c *Catherd) Stop(sig syscall.Signal) {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// WaitUsable waits up to 10 s until every service pinned in pins (one
// at least) has exactly the given backends usable.
func WaitUsable(pins string, want ...netip.Addr) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := usable(pins, want)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("backends %v not (only) usable after 10s", want), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// usable says how the services pinned in pins differ from having exactly
// the backends want usable.
func usable(pins string, want []netip.Addr) error {
	st, err := xdp.ReadPinnedStats(pins)
	if err != nil {
		return err
	}
	if len(st.Services) == 0 {
		return errors.New("no service")
	}
	for _, s := range st.Services {
		var usable []netip.Addr
		for _, b := range s.Backends {
			if b.Usable {
				usable = append(usable, b.Addr)
			}
		}
		if fmt.Sprint(usable) != fmt.Sprint(want) {
			return fmt.Errorf("%s: usable: %v", s.Service, usable)
		}
	}
	return nil
}
