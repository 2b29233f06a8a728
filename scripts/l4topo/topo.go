// Package l4topo builds the network that catherd's L4 tests and benchmarks
// run in: a client, a balancer and backends on one Ethernet segment, each
// in a network namespace of its own, wired for L2 direct server return:
//
//	client (10.99.0.2 + sources 10.99.1.x) --+
//	balancer (10.99.0.3, VIP 10.99.0.250) ---+-- bridge (namespace "sw")
//	backend i (10.99.0.1i, VIP on lo) -------+
//
// The balancer answers ARP for the VIP; backends hold it on lo and ignore
// ARP for it, and answer clients directly. Down removes everything.
//
// The tests of a tier use two balancers on the same segment, the second
// at 10.99.0.4, reached by VRRP (keepalived moves the VIP between them) or
// by ECMP (a router at 10.99.0.1 spreads the VIP over both): see Front.
package l4topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Fixed addresses of the topology (a /16, all on one segment).
var (
	VIP       = netip.MustParseAddr("10.99.0.250")
	Balancer  = netip.MustParseAddr("10.99.0.3")
	Balancer2 = netip.MustParseAddr("10.99.0.4") // VRRP and ECMP only
	Router    = netip.MustParseAddr("10.99.0.1") // ECMP only
	Client    = netip.MustParseAddr("10.99.0.2")
)

// Front is how clients reach the balancers of a topology.
type Front int

const (
	// Single: one balancer, which holds the VIP on eth0 and answers ARP
	// for it.
	Single Front = iota
	// VRRP: two balancers, neither holding the VIP: whoever plays VRRP
	// (keepalived) puts it on eth0 of the master, which then answers ARP
	// for it.
	VRRP
	// ECMP: two balancers hold the VIP on lo and answer no ARP for it, as
	// backends do; a router routes the VIP to both (SetNextHops), hashing
	// each connection's addresses and ports to pick one, and the client
	// sends the VIP's traffic through the router.
	ECMP
)

// Topo is a running topology.
type Topo struct {
	prefix   string
	Backends []netip.Addr // 10.99.0.11, 10.99.0.12, ...
	Sources  []netip.Addr // extra client addresses 10.99.1.1, ...
	made     []string     // namespaces created, for Down
}

// Namespace names: the client, the balancer(s), the router, backend i
// (1-based) and the switch.
func (t *Topo) ClientNS() string       { return t.prefix + "cli" }
func (t *Topo) BalancerNS() string     { return t.prefix + "lb" }
func (t *Topo) Balancer2NS() string    { return t.prefix + "lb2" }
func (t *Topo) RouterNS() string       { return t.prefix + "rt" }
func (t *Topo) BackendNS(i int) string { return fmt.Sprintf("%sb%d", t.prefix, i) }
func (t *Topo) switchNS() string       { return t.prefix + "sw" }

// NetnsPath is where ip netns (and nsenter --net=) finds a namespace.
func NetnsPath(name string) string { return "/run/netns/" + name }

// Up builds a topology with one balancer whose namespace names start with
// prefix (keep it short: interface names derive from it), with the given
// numbers of backends and extra client source addresses.
func Up(prefix string, backends, sources int) (*Topo, error) {
	return UpFront(prefix, backends, sources, Single)
}

// UpFront is Up with the balancers and the way to them that front says.
func UpFront(prefix string, backends, sources int, front Front) (t *Topo, err error) {
	if backends > 9 || sources > 200*200 {
		return nil, errors.New("l4topo: at most 9 backends and 40000 sources")
	}
	t = &Topo{prefix: prefix}
	for i := 1; i <= backends; i++ {
		t.Backends = append(t.Backends, netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}))
	}
	for i := 0; i < sources; i++ {
		t.Sources = append(t.Sources, netip.AddrFrom4([4]byte{10, 99, byte(1 + i/200), byte(1 + i%200)}))
	}
	defer func() {
		if err != nil {
			t.Down()
		}
	}()
	nodes := []string{"cli", "lb"}
	switch front {
	case VRRP:
		nodes = append(nodes, "lb2")
	case ECMP:
		nodes = append(nodes, "lb2", "rt")
	}
	for i := 1; i <= backends; i++ {
		nodes = append(nodes, fmt.Sprintf("b%d", i))
	}
	for _, n := range append([]string{"sw"}, nodes...) {
		if err := t.create(t.prefix + n); err != nil {
			return nil, err
		}
	}
	if err := t.Do(t.switchNS(), func() error { return bridge(nodes, t.prefix) }); err != nil {
		return nil, fmt.Errorf("switch: %w", err)
	}
	if err := t.Do(t.ClientNS(), func() error {
		if err := node("10.99.0.2/16", t.Sources, nil, false); err != nil || front != ECMP {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{Dst: hostPrefix(VIP), Gw: Router.AsSlice()})
	}); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	// Frames the client's stack sends over veth carry partial checksums,
	// which XDP_TX would forward unfinished: make the stack finish them.
	if out, err := exec.Command("ip", "netns", "exec", t.ClientNS(), "ethtool", "-K", "eth0", "tx", "off").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("client: ethtool -K eth0 tx off: %v: %s", err, out)
	}
	if err := t.balancers(front); err != nil {
		return nil, err
	}
	for i, b := range t.Backends {
		if err := t.Do(t.BackendNS(i+1), func() error {
			return node(b.String()+"/16", nil, []netip.Addr{VIP}, true)
		}); err != nil {
			return nil, fmt.Errorf("backend %d: %w", i+1, err)
		}
	}
	return t, nil
}

// balancers sets up the balancers' namespaces, and the router's, for front.
func (t *Topo) balancers(front Front) error {
	ns, addrs := []string{t.BalancerNS()}, []netip.Addr{Balancer}
	if front != Single {
		ns, addrs = append(ns, t.Balancer2NS()), append(addrs, Balancer2)
	}
	var onEth, onLo []netip.Addr
	switch front {
	case Single:
		onEth = []netip.Addr{VIP}
	case ECMP:
		onLo = []netip.Addr{VIP}
	}
	for i := range ns {
		if err := t.Do(ns[i], func() error { return node(addrs[i].String()+"/16", onEth, onLo, front == ECMP) }); err != nil {
			return fmt.Errorf("balancer %s: %w", addrs[i], err)
		}
	}
	if front != ECMP {
		return nil
	}
	// A one-armed router: it forwards out of the interface the packet
	// came in on, so it must not tell the client to go to the balancer
	// directly (an ICMP redirect). Policy 1 hashes ports as well as
	// addresses, so one client's connections spread over both balancers.
	if err := t.Do(t.RouterNS(), func() error {
		if err := node(Router.String()+"/16", nil, nil, false); err != nil {
			return err
		}
		return sysctls([][2]string{{"ip_forward", "1"}, {"conf/all/send_redirects", "0"}, {"conf/eth0/send_redirects", "0"},
			{"fib_multipath_hash_policy", "1"}})
	}); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return t.SetNextHops(Balancer, Balancer2)
}

// SetNextHops makes the router's route to the VIP lead to the given
// balancers (an ECMP route when there are several), replacing the route
// it had: what a routing daemon does when a balancer announces the VIP or
// withdraws it.
func (t *Topo) SetNextHops(hops ...netip.Addr) error {
	return t.Do(t.RouterNS(), func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		r := &netlink.Route{Dst: hostPrefix(VIP)}
		for _, h := range hops {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: eth.Attrs().Index, Gw: h.AsSlice()})
		}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("router: route to %s via %v: %w", VIP, hops, err)
		}
		return nil
	})
}

// hostPrefix is the /32 (or /128) holding a alone.
func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// Do runs f on an OS thread inside namespace ns. Sockets f opens stay in
// ns after it returns, whatever goroutine uses them.
func (t *Topo) Do(ns string, f func() error) error { return DoIn(ns, f) }

// DoIn runs f on an OS thread inside the named namespace ns.
func DoIn(ns string, f func() error) error {
	return onThread(func() (netns.NsHandle, error) {
		h, err := netns.GetFromName(ns)
		if err != nil {
			return h, fmt.Errorf("namespace %s: %w", ns, err)
		}
		if err := netns.Set(h); err != nil {
			h.Close()
			return h, err
		}
		return h, nil
	}, f)
}

func (t *Topo) create(name string) error {
	if err := Create(name); err != nil {
		return err
	}
	t.made = append(t.made, name)
	return nil
}

// Create makes a named network namespace (as ip netns add does); remove
// it with netns.DeleteNamed.
func Create(name string) error {
	if _, err := os.Stat(NetnsPath(name)); err == nil {
		return fmt.Errorf("namespace %s exists (left by a crashed run? ip netns del %s)", name, name)
	}
	return onThread(func() (netns.NsHandle, error) {
		h, err := netns.NewNamed(name)
		if err != nil {
			return h, fmt.Errorf("create namespace %s: %w", name, err)
		}
		return h, nil
	}, func() error { return nil })
}

// onThread runs f on a locked OS thread that enter has moved into a
// namespace, then moves the thread back. A thread that cannot be moved
// back is never unlocked, so it dies with its goroutine instead of
// carrying the wrong namespace into other code.
func onThread(enter func() (netns.NsHandle, error), f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := enter()
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Require skips a test that needs root (XDP, namespaces), except under
// CI=true, where a missing privilege is a failure: these tests must run.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (CAP_BPF, CAP_NET_ADMIN); under CI=true that is a failure")
	}
	t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN)")
}

// bridge runs in the switch namespace: a bridge, and per node a veth pair
// whose far end moves into the node's namespace as "eth0".
func bridge(nodes []string, prefix string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return err
	}
	for _, n := range nodes {
		h, err := netns.GetFromName(prefix + n)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n, MasterIndex: br.Index}, PeerName: "eth0",
			PeerNamespace: netlink.NsFd(h)}
		err = netlink.LinkAdd(veth)
		h.Close()
		if err != nil {
			return fmt.Errorf("veth for %s: %w", n, err)
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			return err
		}
		// A frame that XDP sends (XDP_TX or a redirect) into a veth is
		// delivered only if the receiving end has an XDP program: a
		// balancer's XDP_TX lands on its port of the bridge.
		if strings.HasPrefix(n, "lb") {
			if err := attachPass(veth); err != nil {
				return fmt.Errorf("XDP_PASS program on %s: %w", n, err)
			}
		}
	}
	return nil
}

// PassProgram returns a program that passes every frame: what the far end
// of a veth needs to receive frames sent by XDP, and the baseline that
// catherd's datapath is benchmarked against.
func PassProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
}

// attachPass attaches PassProgram through netlink, which (unlike a bpf_link)
// stays attached after this process lets go of it.
func attachPass(l netlink.Link) error {
	prog, err := PassProgram()
	if err != nil {
		return err
	}
	defer prog.Close()
	return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), int(link.XDPDriverMode))
}

// node runs in a node's namespace: lo and eth0 up, addresses on eth0 and
// on lo; a backend (dsr) also ignores ARP for addresses that are not on
// the interface asked, so the VIP on its lo stays the balancer's.
func node(primary string, extra, onLo []netip.Addr, dsr bool) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	eth, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	if dsr {
		if err := sysctls([][2]string{{"conf/all/arp_ignore", "1"}, {"conf/all/arp_announce", "2"},
			{"conf/eth0/arp_ignore", "1"}, {"conf/eth0/arp_announce", "2"}}); err != nil {
			return err
		}
	}
	addr, err := netlink.ParseAddr(primary)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s: %w", primary, err)
	}
	for _, a := range extra {
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(16, 32)}}); err != nil {
			return fmt.Errorf("address %s: %w", a, err)
		}
	}
	for _, a := range onLo {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return fmt.Errorf("address %s on lo: %w", a, err)
		}
	}
	for _, l := range []netlink.Link{lo, eth} {
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

// sysctls sets net.ipv4 settings (name under /proc/sys/net/ipv4, value)
// in the namespace of the calling thread.
func sysctls(kvs [][2]string) error {
	for _, kv := range kvs {
		if err := os.WriteFile("/proc/sys/net/ipv4/"+kv[0], []byte(kv[1]), 0); err != nil {
			return fmt.Errorf("sysctl net.ipv4.%s=%s: %w", strings.ReplaceAll(kv[0], "/", "."), kv[1], err)
		}
	}
	return nil
}

// Down deletes every namespace the topology made, and with them its links.
func (t *Topo) Down() error {
	var errs []error
	for _, name := range t.made {
		if err := netns.DeleteNamed(name); err != nil {
			errs = append(errs, err)
		}
	}
	t.made = nil
	return errors.Join(errs...)
}
