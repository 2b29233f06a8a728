package xdp

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/catherd/catherd/scripts/l4topo"
)

// clients returns n client addresses starting at 10.98.first.1.
func clients(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.98.%d.%d", first+i/200, 1+i%200)
	}
	return out
}

// steerAll sends one new connection from each client and returns the
// backend (1-3) each met.
func steerAll(t *testing.T, d *Datapath, cs []string, port uint16) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, c := range cs {
		got[c] = expectForward(t, d, tcp4(c, port).build(t))
	}
	return got
}

// stayed fails t unless every client of before meets the same backend in after.
func stayed(t testing.TB, before, after map[string]int, when string) {
	t.Helper()
	for c, n := range before {
		if after[c] != n {
			t.Fatalf("client %s moved from backend %d to %d %s", c, n, after[c], when)
		}
	}
}

// syncFirstTwo syncs the fixtures' service with its first two backends.
func syncFirstTwo(t *testing.T, d *Datapath, egress *net.Interface) {
	t.Helper()
	two := l4Service(egress)
	two.Backends = two.Backends[:2]
	if err := d.Sync([]L4Service{two}); err != nil {
		t.Fatal(err)
	}
}

func TestFlowsStayWhenBackendsChange(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		syncFirstTwo(t, d, egress)
		old := clients(0, 200)
		before := steerAll(t, d, old, 1000)

		// A backend is added: established flows stay put, new clients
		// reach the newcomer too.
		if err := d.Sync([]L4Service{l4Service(egress)}); err != nil {
			t.Fatal(err)
		}
		stayed(t, before, steerAll(t, d, old, 1001), "when a backend was added")
		fresh := steerAll(t, d, clients(5, 300), 1000)
		share := 0
		for _, n := range fresh {
			if n == 3 {
				share++
			}
		}
		if share < 60 || share > 140 {
			t.Fatalf("the added backend took %d of 300 new clients, want about 100", share)
		}

		// Backend 1 goes down: its clients move, nobody else does; when it
		// returns, the moved clients stay where they went (no flap-back).
		if err := d.Sync([]L4Service{l4Service(egress, false, true, true)}); err != nil {
			t.Fatal(err)
		}
		down := steerAll(t, d, old, 1002)
		for c, n := range before {
			switch {
			case n == 1 && down[c] == 1:
				t.Fatalf("client %s still sent to the unusable backend", c)
			case n != 1 && down[c] != n:
				t.Fatalf("client %s of backend %d moved to %d when backend 1 went down", c, n, down[c])
			}
		}
		if err := d.Sync([]L4Service{l4Service(egress)}); err != nil {
			t.Fatal(err)
		}
		stayed(t, down, steerAll(t, d, old, 1003), "(flap-back) when backend 1 returned")
	})
}

func TestNoUsableBackendDrops(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		if err := d.Sync([]L4Service{l4Service(egress, false, false, false)}); err != nil {
			t.Fatal(err)
		}
		expectVerdict(t, d, tcp4("10.99.0.2", 1).build(t), xdpDrop, "drop_no_backend")
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Services[0]; s.NoBackend != 1 || s.Packets != 1 || s.ConnMisses != 1 {
			t.Fatalf("service counters %+v, want 1 packet, 1 miss, 1 no-backend", s)
		}
	})
}

func TestMissingEgressDeviceDrops(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		only3 := l4Service(egress)
		only3.Backends = only3.Backends[2:]
		if err := d.Sync([]L4Service{only3}); err != nil {
			t.Fatal(err)
		}
		if err := d.objs.Egress.Delete(uint32(egress.Index)); err != nil {
			t.Fatal(err)
		}
		expectVerdict(t, d, tcp4("10.99.0.2", 1).build(t), xdpDrop, "drop_no_egress")
	})
}

// A restarted catherd reopens the pinned maps: backends keep their indexes
// and the connection table keeps every flow.
func TestRestartKeepsFlows(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		syncFirstTwo(t, d, egress)
		cs := clients(0, 100)
		before := steerAll(t, d, cs, 1000)
		indexes := d.state.backends
		d.Close()

		d2, err := load(Options{Ifaces: []string{"lo"}, PinDir: pinDirOf(t), ConntrackSize: 65536})
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		if err := d2.Sync([]L4Service{l4Service(egress)}); err != nil {
			t.Fatal(err)
		}
		for k, bi := range indexes {
			if d2.state.backends[k] != bi {
				t.Fatalf("backend %s had index %d, now %d", k.addr, bi, d2.state.backends[k])
			}
		}
		stayed(t, before, steerAll(t, d2, cs, 1001), "across a restart")
	})
}

// A removed backend's flows leave the connection table with it, so a
// backend that later gets its index does not inherit them.
func TestRemovedBackendFlowsArePurged(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		if err := d.Sync([]L4Service{l4Service(egress)}); err != nil {
			t.Fatal(err)
		}
		steerAll(t, d, clients(0, 100), 1000)
		gone := d.state.backends[backendKey{0, netip.MustParseAddr("10.99.0.11")}]
		rest := l4Service(egress)
		rest.Backends = rest.Backends[1:]
		if err := d.Sync([]L4Service{rest}); err != nil {
			t.Fatal(err)
		}
		var k catherdFlowKey
		var f catherdFlow
		flows := 0
		for it := d.objs.Conntrack.Iterate(); it.Next(&k, &f); {
			flows++
			if f.Backend == gone {
				t.Fatalf("a flow still points at removed backend index %d", gone)
			}
		}
		if flows == 0 || flows == 100 {
			t.Fatalf("%d flows left of 100: the removed backend's should go, the others stay", flows)
		}
		if err := d.Sync(nil); err != nil {
			t.Fatal(err)
		}
		expectVerdict(t, d, tcp4("10.99.0.2", 1).build(t), xdpPass, "pass_not_service")
		var va catherdVipAddr
		var one uint32
		if d.objs.VipAddrs.Iterate().Next(&va, &one) {
			t.Fatalf("vip_addrs still holds %v after every service went", va)
		}
		var bits uint32
		if err := d.objs.ServicePorts.Lookup(uint32(80), &bits); err != nil || bits != 0 || len(d.state.ports) != 0 {
			t.Fatalf("service_ports[80] = %d (%v) after every service went", bits, err)
		}
	})
}

func TestSyncRejects(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		s := l4Service(egress)
		if err := d.Sync([]L4Service{s, s}); err == nil || !strings.Contains(err.Error(), "declared twice") {
			t.Fatalf("a service twice: %v", err)
		}
		s.Backends = append(s.Backends, s.Backends[0])
		if err := d.Sync([]L4Service{s}); err == nil || !strings.Contains(err.Error(), "listed twice") {
			t.Fatalf("a backend twice: %v", err)
		}
		var many []L4Service
		for i := 0; i <= int(d.maxServices); i++ {
			many = append(many, L4Service{VIP: vip4, Port: uint16(1000 + i), Proto: TCP})
		}
		if err := d.Sync(many); err == nil || !strings.Contains(err.Error(), "at most") {
			t.Fatalf("too many services: %v", err)
		}
	})
}

// TestConstantsMatchC checks the Go mirrors of bpf/consts.h.
func TestConstantsMatchC(t *testing.T) {
	f, err := os.Open("../../bpf/consts.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	define := regexp.MustCompile(`^#define (\w+) (.+?)\s*(/\*.*)?$`)
	reason := regexp.MustCompile(`^\s*REASON_(\w+?)( = 0)?,`)
	defines := map[string]string{}
	var reasons []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if m := define.FindStringSubmatch(sc.Text()); m != nil {
			defines[m[1]] = m[2]
		}
		if m := reason.FindStringSubmatch(sc.Text()); m != nil && m[1] != "COUNT" {
			reasons = append(reasons, strings.ToLower(m[1]))
		}
	}
	for name, want := range map[string]string{
		"FAMILY_IPV4":           fmt.Sprint(familyIPv4),
		"FAMILY_IPV6":           fmt.Sprint(familyIPv6),
		"SERVICE_HASH_PORT":     "(1u << 0)",
		"BACKEND_USABLE":        "(1u << 0)",
		"PORT_TCP":              "(1u << 0)",
		"PORT_UDP":              "(1u << 1)",
		"NO_BACKEND":            fmt.Sprintf("0x%xu", noBackend),
		"MEMBERSHIP_ANY_DOMAIN": "(1u << 0)",
	} {
		if defines[name] != want {
			t.Errorf("%s is %q in consts.h, Go assumes %q", name, defines[name], want)
		}
	}
	if serviceHashPort != 1 || backendUsable != 1 || portTCP != 1 || portUDP != 2 || membershipAnyDomain != 1 {
		t.Errorf("flag bits changed in Go")
	}
	if strings.Join(reasons, ",") != strings.Join(Reasons, ",") {
		t.Errorf("reasons in consts.h:\n%v\nin Go:\n%v", reasons, Reasons)
	}
}

// pinDirOf is the pin directory testDatapath chose for t.
func pinDirOf(t testing.TB) string {
	return fmt.Sprintf("%s/catherd-test-%d-%s", bpffsRoot, os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
}

// Attaching: native mode on a device without it fails with a line that
// says what to do; a second catherd updates the pinned link in place (one
// link, never a moment without a program); Unload detaches.
func TestAttachAndReplace(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(*net.Interface) {
		pins := pinDirOf(t)
		t.Cleanup(func() { Unload(pins) })
		_, err := Open(Options{Ifaces: []string{"lo"}, Mode: Native, PinDir: pins})
		if err == nil || !strings.Contains(err.Error(), "no native XDP (use --xdp-mode generic)") {
			t.Fatalf("native XDP on lo: %v", err)
		}
		first, err := Open(Options{Ifaces: []string{"lo"}, Mode: Generic, PinDir: pins})
		if err != nil {
			t.Fatal(err)
		}
		info, err := first.links[0].Info()
		if err != nil {
			t.Fatal(err)
		}
		first.Close()
		second, err := Open(Options{Ifaces: []string{"lo"}, Mode: Generic, PinDir: pins})
		if err != nil {
			t.Fatal(err)
		}
		info2, err := second.links[0].Info()
		if err != nil {
			t.Fatal(err)
		}
		if info2.ID != info.ID {
			t.Fatalf("the second Open made link %d instead of updating link %d", info2.ID, info.ID)
		}
		progInfo, _ := second.objs.CatherdXdp.Info()
		progID, _ := progInfo.ID()
		if info2.Program != progID {
			t.Fatalf("link runs program %d, the new one is %d", info2.Program, progID)
		}
		second.Close()
		if err := Unload(pins); err != nil {
			t.Fatal(err)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if x := lo.Attrs().Xdp; x != nil && x.Attached {
			t.Fatalf("a program is still attached to lo after Unload: %+v", x)
		}
		if _, err := os.Stat(pins); !os.IsNotExist(err) {
			t.Fatalf("pin directory left behind: %v", err)
		}
	})
}

// One program on two devices (the L4 NIC and the membership NIC); a device
// the next catherd does not want is given back.
func TestAttachToSeveralDevices(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		pins := pinDirOf(t)
		t.Cleanup(func() { Unload(pins) })
		attached := func(name string) bool {
			l, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		}
		both, err := Open(Options{Ifaces: []string{"lo", egress.Name}, Mode: Generic, PinDir: pins})
		if err != nil {
			t.Fatal(err)
		}
		if !attached("lo") || !attached(egress.Name) || len(both.links) != 2 {
			t.Fatalf("not attached to both devices")
		}
		both.Close()
		one, err := Open(Options{Ifaces: []string{"lo"}, Mode: Generic, PinDir: pins})
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		if !attached("lo") || attached(egress.Name) {
			t.Fatalf("lo attached %v, %s attached %v; want only lo", attached("lo"), egress.Name, attached(egress.Name))
		}
	})
}
