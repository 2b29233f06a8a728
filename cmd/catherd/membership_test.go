package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/scripts/rig"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/xdp"
)

// TestTomcatMembership runs catherd against a real 3-node DeltaManager
// cluster's McastService heartbeats: it lists the members, drops a killed
// one within dropTime and sends it nothing new, lets a cleanly stopped one
// leave at once, takes a restarted one back as a new member, and its XDP
// filter keeps spoofed beacons from ever making a member.
func TestTomcatMembership(t *testing.T) {
	rig.Require(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	r := rig.Up(t, 3, true)

	pins := fmt.Sprintf("/sys/fs/bpf/catherd-mc-%d", os.Getpid())
	t.Cleanup(func() { xdp.Unload(pins) }) // runs after catherd has stopped
	listen, metricsAddr, adminAddr := tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)
	args := []string{"run", "--listen", listen, "--metrics", metricsAddr, "--admin", adminAddr, "--health-interval", "0",
		"--membership", "228.0.0.4:45564", "--membership-iface", "cth-br0", "--membership-drop-time", "3s",
		"--xdp-mode", "generic", "--xdp-pin-dir", pins}
	for _, n := range r.Nodes {
		args = append(args, "--backend", n.Name+"=http://"+n.HTTP)
	}
	logPath := filepath.Join(tmp, "catherd.log")
	start := time.Now()
	tcStartCatherd(t, bin, args, logPath, r.Dir)
	client := &http.Client{Timeout: 5 * time.Second}
	metrics := func() string { // "" until catherd answers
		_, body, _ := tcGet(client, "http://"+metricsAddr+"/metrics", "")
		return body
	}
	// waitFor polls the metrics until cond holds and returns when it did.
	waitFor := func(what string, limit time.Duration, cond func(m string) bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			m := metrics()
			if cond(m) {
				return time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v\n%s", what, limit, tcGrep(m, "catherd_member"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	members := func(n int) func(string) bool {
		return func(m string) bool { return metricValue(m, "catherd_membership_members") == n }
	}
	isolated := func(node string, want int) func(string) bool {
		return func(m string) bool {
			return metricValue(m, fmt.Sprintf(`catherd_member_state{member=%q,state="isolated"}`, node)) == want
		}
	}
	inGroup := func(m string) bool {
		return members(3)(m) && isolated("node1", 0)(m) && isolated("node2", 0)(m) && isolated("node3", 0)(m)
	}
	if at := waitFor("all three members in the group", 5*time.Second, inGroup); at.Sub(start) > 2*time.Second {
		t.Errorf("all members listed %v after start, want within 2s", at.Sub(start).Round(time.Millisecond))
	}

	// kill -9: out of the group within dropTime + 0.5 s, and no request
	// even tries it (health checks are off: only membership knows).
	killed := time.Now()
	if err := r.Kill("node2"); err != nil {
		t.Fatal(err)
	}
	left := waitFor("node2 out of the group", 6*time.Second, func(m string) bool { return members(2)(m) && isolated("node2", 1)(m) })
	if d := left.Sub(killed); d > 3500*time.Millisecond {
		t.Errorf("node2 left the group %v after kill -9, want within dropTime + 0.5s", d.Round(time.Millisecond))
	}
	out, err := exec.Command(bin, "status", "--admin", adminAddr).CombinedOutput()
	for _, want := range []string{`node2\s+node2\s+isolated`, "CLUSTER MEMBER", `10\.77\.0\.11 `, `10\.77\.0\.13 `, "pass_beacon"} {
		if err != nil || !regexp.MustCompile(want).Match(out) {
			t.Fatalf("catherd status lacks %q (%v):\n%s", want, err, out)
		}
	}
	if strings.Contains(string(out), "10.77.0.12 ") {
		t.Fatalf("catherd status still lists the killed node's member:\n%s", out)
	}
	errorsBefore := metricValue(metrics(), `catherd_backend_errors_total{kind="connect",member="node2"}`)
	for i := 0; i < 30; i++ {
		code, body, err := tcGet(client, "http://"+listen+"/counter.jsp", "")
		if err != nil || code != 200 || strings.Contains(body, "node=node2") {
			t.Fatalf("new session %d: %d %q %v", i, code, body, err)
		}
	}
	if after := metricValue(metrics(), `catherd_backend_errors_total{kind="connect",member="node2"}`); after != errorsBefore {
		t.Fatalf("catherd tried the dead node2 (%d connect errors) though it was out of the group", after-errorsBefore)
	}

	// A clean stop announces itself: the member leaves at once.
	if err := r.Stop("node3"); err != nil {
		t.Fatal(err)
	}
	waitFor("node3 left by its shutdown beacon", 500*time.Millisecond, func(m string) bool {
		return members(1)(m) && metricValue(m, `catherd_membership_events_total{event="leave"}`) == 1
	})

	// A restart is a new member (a new uniqueId), back in the group.
	joinsBefore := metricValue(metrics(), `catherd_membership_events_total{event="join"}`)
	if err := r.Start("node2"); err != nil {
		t.Fatal(err)
	}
	waitFor("restarted node2 back in the group", 10*time.Second, func(m string) bool {
		return members(2)(m) && isolated("node2", 0)(m) && metricValue(m, `catherd_membership_events_total{event="join"}`) == joinsBefore+1
	})

	// Spoofed beacons from a host on the segment: outside the allowed
	// prefix (and a 10k/s flood of them), or inside it with the wrong
	// domain. The XDP filter drops them all; none becomes a member.
	sp := bridgeHost(t, "cth-spoof", "cth-spoof0", "192.0.2.66/24", "10.77.0.66/24")
	fake := membership.Beacon{AliveMillis: 1, Port: 4000, SecurePort: -1, UDPPort: -1,
		Host: netip.MustParseAddr("10.77.0.99"), UniqueID: [16]byte{0xee}}
	valid := membership.Append(nil, &fake)
	wrongDomain := fake
	wrongDomain.Domain = []byte("other")
	st0 := xdpVerdicts(t, pins)
	sent := sp.flood(t, "192.0.2.66", valid, 10000, 2*time.Second)
	sp.flood(t, "10.77.0.66", membership.Append(nil, &wrongDomain), 20, time.Second)
	time.Sleep(300 * time.Millisecond)
	st1 := xdpVerdicts(t, pins)
	if got := st1["drop_beacon_source"] - st0["drop_beacon_source"]; got < uint64(sent)*9/10 {
		t.Errorf("drop_beacon_source rose by %d for %d spoofed beacons", got, sent)
	}
	if got := st1["drop_beacon_domain"] - st0["drop_beacon_domain"]; got < 18 {
		t.Errorf("drop_beacon_domain rose by %d for 20 beacons of another domain", got)
	}
	m := metrics()
	if members(2)(m) == false || metricValue(m, `catherd_membership_beacons_total{result="wrong_domain"}`) != 0 {
		t.Fatalf("spoofed beacons reached the member table:\n%s", tcGrep(m, "catherd_membership"))
	}
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "10.77.0.99") {
		t.Fatalf("the spoofed member 10.77.0.99 shows in catherd's log")
	}
	t.Logf("XDP filter: %d spoofed beacons sent, verdicts now %v", sent, st1)
}

func xdpVerdicts(t *testing.T, pins string) map[string]uint64 {
	t.Helper()
	st, err := xdp.ReadPinnedStats(pins)
	if err != nil {
		t.Fatal(err)
	}
	return st.Verdicts
}

// nsHost is a namespace on the rig's bridge, with its own addresses: a
// host that sends spoofed beacons, or a second edge host.
type nsHost struct{ name string }

// bridgeHost creates namespace name, plugged into the rig's bridge by a
// veth called vethName on the bridge side and eth0 inside, with addrs.
func bridgeHost(t *testing.T, name, vethName string, addrs ...string) *nsHost {
	t.Helper()
	if err := l4topo.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.DeleteNamed(name) })
	br, err := netlink.LinkByName("cth-br0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethName, MasterIndex: br.Attrs().Index}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(h)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	err = l4topo.DoIn(name, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(eth, addr); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return err
		}
		_, mc, _ := net.ParseCIDR("224.0.0.0/4")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: mc})
	})
	if err != nil {
		t.Fatal(err)
	}
	return &nsHost{name: name}
}

// flood sends payload from src to the membership group at rate per
// second for d, and returns how many it sent.
func (s *nsHost) flood(t *testing.T, src string, payload []byte, rate int, d time.Duration) int {
	t.Helper()
	var conn *net.UDPConn
	err := l4topo.DoIn(s.name, func() (err error) {
		conn, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP("228.0.0.4"), Port: 45564})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	gap := time.Second / time.Duration(rate)
	start := time.Now()
	for next := start; time.Since(start) < d; next = next.Add(gap) {
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		if _, err := conn.Write(payload); err == nil {
			sent++
		}
	}
	return sent
}
