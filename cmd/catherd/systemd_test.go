package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/userspace/xdp"
)

// capabilityBits are the capabilities the unit may name, by their name in
// capabilities(7).
var capabilityBits = map[string]uint{
	"CAP_BPF":              unix.CAP_BPF,
	"CAP_NET_ADMIN":        unix.CAP_NET_ADMIN,
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_SYS_ADMIN":        unix.CAP_SYS_ADMIN,
	"CAP_PERFMON":          unix.CAP_PERFMON,
}

// unitCapabilities reads CapabilityBoundingSet from the systemd unit.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../scripts/systemd/catherd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("the unit has no CapabilityBoundingSet")
	return nil
}

// setpriv is the wrapper that runs a command as root with only caps, as
// the unit does (bounding, inheritable and ambient sets; no new privileges).
func setpriv(t *testing.T, caps []string) (wrapper []string, mask uint64) {
	t.Helper()
	set := "-all"
	for _, c := range caps {
		bit, ok := capabilityBits[c]
		if !ok {
			t.Fatalf("capability %s: not one this test knows", c)
		}
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		mask |= 1 << bit
	}
	return []string{"setpriv", "--no-new-privs", "--bounding-set=" + set, "--inh-caps=" + set, "--ambient-caps=" + set, "--"}, mask
}

// effectiveCaps reads a process's effective capability mask.
func effectiveCaps(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/%d/status", pid)
}

// The systemd unit's capabilities are enough for what catherd does as a
// service: load and attach XDP, pin its maps, steer L4 flows, listen on
// port 80. And each of them is needed.
func TestRunsWithTheUnitsCapabilities(t *testing.T) {
	caps := unitCapabilities(t)
	h := newL4Harness(t, "cs", 2, 20)
	topo, bin, pins, logf := h.topo, h.bin, h.pins, h.log
	args := []string{"--l4", l4run.L4Flag(80, "tcp", topo.Backends), "--listen", ":80",
		"--backend", "web=http://" + topo.Backends[0].String() + ":80", "--health-interval", "200ms"}

	wrapper, mask := setpriv(t, caps)
	c, err := l4run.StartWrapped(topo, wrapper, bin, pins, logf, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(syscall.SIGTERM) })
	waitUsable(t, pins, topo.Backends...)
	if got, err := effectiveCaps(c.Pid()); err != nil || got != mask {
		t.Fatalf("catherd's effective capabilities: %x (%v), want exactly %x (%v)", got, err, mask, caps)
	}
	if got := backendsOf(t, topo, topo.Sources); len(got) != len(topo.Sources) {
		t.Fatalf("%d of %d clients steered", len(got), len(topo.Sources))
	}
	err = topo.Do(topo.BalancerNS(), func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:80", time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		t.Fatalf("catherd does not listen on port 80: %v", err)
	}
	c.Stop(syscall.SIGTERM)

	// Each capability is needed: without it, catherd stops at start-up
	// with one line saying what failed, not half-running.
	for _, drop := range caps {
		var fewer []string
		for _, c := range caps {
			if c != drop {
				fewer = append(fewer, c)
			}
		}
		wrapper, _ = setpriv(t, fewer)
		var out strings.Builder
		c, err = l4run.StartWrapped(topo, wrapper, bin, pins+"-less", &out, args...)
		if err != nil {
			t.Fatal(err)
		}
		want := "(catherd needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
		if drop == "CAP_NET_BIND_SERVICE" {
			want = "--listen :80: listen tcp :80: bind: permission denied"
		}
		code := c.Wait(10 * time.Second)
		line := firstLine(out.String(), "catherd run:")
		if code != 2 || !strings.Contains(line, want) {
			t.Errorf("without %s: exit %d, want 2 and a line with %q; output:\n%s", drop, code, want, tcTail(out.String(), 5))
		} else {
			t.Logf("without %s: %s", drop, line)
		}
		xdp.Unload(pins + "-less")
	}
}

// firstLine returns the first line of s that starts with prefix.
func firstLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
