package xdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/catherd/catherd/scripts/l4topo"
)

// inNewNetns runs f on a thread inside a fresh network namespace, which
// holds lo (ifindex 1, the ingress device of prog.Run) and a veth device
// "egress0" to redirect to (this kernel has no dummy driver). Everything is gone when f returns.
func inNewNetns(t testing.TB, f func(egress *net.Interface)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its netns
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		la := netlink.NewLinkAttrs()
		la.Name = "egress0"
		la.HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, 0xee, 0x01}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "egress1"}); err != nil {
			t.Error(err)
			return
		}
		egress, err := net.InterfaceByName("egress0")
		if err != nil {
			t.Error(err)
			return
		}
		f(egress)
	}()
	<-done
}

// testDatapath loads the program with maps pinned in a fresh directory,
// unattached, for prog.Run.
func testDatapath(t testing.TB) *Datapath {
	t.Helper()
	pin := pinDirOf(t)
	t.Cleanup(func() { Unload(pin) })
	d, err := load(Options{Ifaces: []string{"lo"}, PinDir: pin, ConntrackSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0xcc, 0x01}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0x1b, 0x01}
	vip4      = netip.MustParseAddr("10.99.0.250")
	vip6      = netip.MustParseAddr("fd00:99::250")
)

func backendMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0xbe, byte(i)} }

// pkt describes a test packet; build turns it into frame bytes.
type pkt struct {
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	proto      Proto
	ipOptions  bool
	moreFrags  bool
	fragOffset uint16
	hopByHop   bool
	payload    []byte // UDP only; "hello" when nil
}

func (p pkt) build(t testing.TB) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC}
	var net gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	proto := layers.IPProtocolTCP
	if p.proto == UDP {
		proto = layers.IPProtocolUDP
	}
	if p.src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), FragOffset: p.fragOffset}
		if p.moreFrags {
			ip.Flags = layers.IPv4MoreFragments
		}
		if p.ipOptions {
			ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}
		}
		net, ls = ip, []gopacket.SerializableLayer{eth, ip}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice()}
		ls = []gopacket.SerializableLayer{eth, ip}
		if p.hopByHop {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			hbh := &layers.IPv6HopByHop{}
			hbh.NextHeader = proto
			hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
			ls = append(ls, hbh)
		}
		net = ip
	}
	if p.proto == UDP {
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		udp.SetNetworkLayerForChecksum(net)
		payload := p.payload
		if payload == nil {
			payload = []byte("hello")
		}
		ls = append(ls, udp, gopacket.Payload(payload))
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), SYN: true, Window: 1024, Seq: 1}
		tcp.SetNetworkLayerForChecksum(net)
		ls = append(ls, tcp)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tcp4(src string, sport uint16) pkt {
	return pkt{src: netip.MustParseAddr(src), dst: vip4, sport: sport, dport: 80, proto: TCP}
}

// run runs the program on frame and returns the verdict and output bytes.
func run(t testing.TB, d *Datapath, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	ret, err := d.objs.CatherdXdp.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	return ret, out[:len(frame)]
}

const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// l4Service is the fixtures' TCP service: three backends, the first two
// behind the ingress device (XDP_TX), the third behind egress.
func l4Service(egress *net.Interface, usable ...bool) L4Service {
	s := L4Service{VIP: vip4, Port: 80, Proto: TCP}
	for i := 1; i <= 3; i++ {
		hop := NextHop{Ifindex: 1, SrcMAC: lbMAC, DstMAC: backendMAC(i)}
		if i == 3 {
			hop = NextHop{Ifindex: egress.Index, SrcMAC: egress.HardwareAddr, DstMAC: backendMAC(i)}
		}
		u := true
		if len(usable) >= i {
			u = usable[i-1]
		}
		s.Backends = append(s.Backends, L4Backend{Addr: netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}), Weight: 1, Usable: u, NextHop: hop})
	}
	return s
}

// expectForward checks that frame was steered: verdict, rewritten MACs,
// and the IP packet untouched. It returns the backend's number (1-3).
func expectForward(t testing.TB, d *Datapath, frame []byte) int {
	t.Helper()
	ret, out := run(t, d, frame)
	if ret != xdpTX && ret != xdpRedirect {
		t.Fatalf("verdict %d, want XDP_TX or XDP_REDIRECT", ret)
	}
	if !bytes.Equal(out[12:], frame[12:]) {
		t.Fatalf("packet changed beyond the Ethernet addresses:\n in %x\nout %x", frame, out)
	}
	n := int(out[5])
	if !bytes.Equal(out[0:6], backendMAC(n)) {
		t.Fatalf("destination MAC %x is no backend's", out[0:6])
	}
	wantSrc, wantRet := lbMAC, uint32(xdpTX)
	if n == 3 {
		wantSrc, wantRet = net.HardwareAddr{0x02, 0, 0, 0, 0xee, 0x01}, xdpRedirect
	}
	if !bytes.Equal(out[6:12], wantSrc) || ret != wantRet {
		t.Fatalf("backend %d: source MAC %x verdict %d, want %x and %d", n, out[6:12], ret, wantSrc, wantRet)
	}
	return n
}

func expectVerdict(t *testing.T, d *Datapath, frame []byte, want uint32, reason string) {
	t.Helper()
	before := verdictCount(t, d, reason)
	ret, out := run(t, d, frame)
	if ret != want {
		t.Fatalf("verdict %d, want %d (%s)", ret, want, reason)
	}
	if want == xdpPass && !bytes.Equal(out, frame) {
		t.Fatalf("a passed frame was modified:\n in %x\nout %x", frame, out)
	}
	if got := verdictCount(t, d, reason); got != before+1 {
		t.Fatalf("counter %s went %d -> %d, want +1", reason, before, got)
	}
}

func verdictCount(t testing.TB, d *Datapath, reason string) uint64 {
	t.Helper()
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Verdicts[reason]
}

func TestFixtures(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(egress *net.Interface) {
		d := testDatapath(t)
		v6 := L4Service{VIP: vip6, Port: 443, Proto: TCP, Backends: []L4Backend{{Addr: netip.MustParseAddr("fd00:99::11"), Weight: 1, Usable: true,
			NextHop: NextHop{Ifindex: 1, SrcMAC: lbMAC, DstMAC: backendMAC(1)}}}}
		udp := L4Service{VIP: vip4, Port: 53, Proto: UDP, HashPort: true, Backends: l4Service(egress).Backends}
		if err := d.Sync([]L4Service{l4Service(egress), v6, udp}); err != nil {
			t.Fatal(err)
		}

		t.Run("non-IP frames pass untouched", func(t *testing.T) {
			arp := append(append(append([]byte{}, lbMAC...), clientMAC...), 0x08, 0x06)
			arp = append(arp, make([]byte, 28)...)
			expectVerdict(t, d, arp, xdpPass, "pass_not_ip")
		})
		t.Run("truncated IP header passes to the kernel", func(t *testing.T) {
			frame := tcp4("10.99.0.2", 40000).build(t)
			expectVerdict(t, d, frame[:14+12], xdpPass, "pass_truncated")
			frame6 := pkt{src: netip.MustParseAddr("fd00:99::2"), dst: vip6, sport: 1, dport: 443, proto: TCP}.build(t)
			expectVerdict(t, d, frame6[:14+30], xdpPass, "pass_truncated")
		})
		t.Run("traffic for others passes untouched", func(t *testing.T) {
			p := tcp4("10.99.0.2", 40000)
			p.dst = netip.MustParseAddr("10.99.0.3")
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
			p = tcp4("10.99.0.2", 40000)
			p.dport = 81
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
			p.proto, p.dport = UDP, 80
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
		})
		t.Run("ICMP to a VIP goes to the kernel", func(t *testing.T) {
			frame := tcp4("10.99.0.2", 1).build(t)
			frame[14+9] = 1 // protocol ICMP
			expectVerdict(t, d, frame, xdpPass, "pass_not_service")
		})
		t.Run("a new flow is steered by Maglev and recorded", func(t *testing.T) {
			frame := tcp4("10.99.0.2", 40000).build(t)
			n := expectForward(t, d, frame)
			if want := maglevPick(t, d, tcp4("10.99.0.2", 0)); want != n {
				t.Fatalf("steered to backend %d, the Go twin of the hash says %d", n, want)
			}
			var f catherdFlow
			if err := d.objs.Conntrack.Lookup(flowKey(tcp4("10.99.0.2", 0)), &f); err != nil {
				t.Fatalf("flow not recorded: %v", err)
			}
		})
		t.Run("every connection of a client meets the same backend", func(t *testing.T) {
			first := expectForward(t, d, tcp4("10.99.0.7", 1000).build(t))
			for port := uint16(1001); port < 1020; port++ {
				if n := expectForward(t, d, tcp4("10.99.0.7", port).build(t)); n != first {
					t.Fatalf("port %d went to backend %d, port 1000 to %d", port, n, first)
				}
			}
		})
		t.Run("IP options are forwarded as they are", func(t *testing.T) {
			p := tcp4("10.99.0.2", 40001)
			p.ipOptions = true
			expectForward(t, d, p.build(t))
		})
		t.Run("fragments for a VIP are dropped, others pass", func(t *testing.T) {
			p := tcp4("10.99.0.2", 40002)
			p.moreFrags = true
			expectVerdict(t, d, p.build(t), xdpDrop, "drop_fragment")
			p.moreFrags, p.fragOffset = false, 100
			expectVerdict(t, d, p.build(t), xdpDrop, "drop_fragment")
			p.dst = netip.MustParseAddr("10.99.0.3")
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
		})
		t.Run("bogus lengths for a VIP are dropped", func(t *testing.T) {
			mutate := func(f func(b []byte)) []byte {
				b := tcp4("10.99.0.2", 40003).build(t)
				f(b)
				return b
			}
			ip := 14
			cases := map[string][]byte{
				"total length past the frame":     mutate(func(b []byte) { binary.BigEndian.PutUint16(b[ip+2:], 1500) }),
				"total length under the header":   mutate(func(b []byte) { binary.BigEndian.PutUint16(b[ip+2:], 19) }),
				"header length under 20":          mutate(func(b []byte) { b[ip] = 0x44 }),
				"version not 4":                   mutate(func(b []byte) { b[ip] = 0x65 }),
				"TCP data offset under 5":         mutate(func(b []byte) { b[ip+20+12] = 0x40 }),
				"TCP data offset past the packet": mutate(func(b []byte) { b[ip+20+12] = 0xf0 }),
				"truncated TCP header":            tcp4("10.99.0.2", 40003).build(t)[:14+20+10],
			}
			for name, frame := range cases {
				t.Run(name, func(t *testing.T) { expectVerdict(t, d, frame, xdpDrop, "drop_malformed") })
			}
			u := pkt{src: netip.MustParseAddr("10.99.0.2"), dst: vip4, sport: 5353, dport: 53, proto: UDP}.build(t)
			binary.BigEndian.PutUint16(u[14+20+4:], 200) // UDP length past the packet
			expectVerdict(t, d, u, xdpDrop, "drop_malformed")
		})
		t.Run("IPv6 is steered; extension headers and fragments for a VIP are dropped", func(t *testing.T) {
			p := pkt{src: netip.MustParseAddr("fd00:99::2"), dst: vip6, sport: 40000, dport: 443, proto: TCP}
			if n := expectForward(t, d, p.build(t)); n != 1 {
				t.Fatalf("went to backend %d, the service has only backend 1", n)
			}
			p.hopByHop = true
			expectVerdict(t, d, p.build(t), xdpDrop, "drop_unsupported")
			frag := p.build(t)
			frag[14+6] = 44 // next header: fragment
			expectVerdict(t, d, frag, xdpDrop, "drop_fragment")
			p.dst = netip.MustParseAddr("fd00:99::3")
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
		})
		t.Run("services keyed by port spread one client's flows", func(t *testing.T) {
			seen := map[int]bool{}
			for port := uint16(2000); port < 2040; port++ {
				p := pkt{src: netip.MustParseAddr("10.99.0.9"), dst: vip4, sport: port, dport: 53, proto: UDP}
				seen[expectForward(t, d, p.build(t))] = true
				var f catherdFlow
				if err := d.objs.Conntrack.Lookup(flowKey(p), &f); err != nil {
					t.Fatalf("flow with its port not recorded: %v", err)
				}
			}
			if len(seen) < 2 {
				t.Fatalf("40 source ports of one client all went to one backend")
			}
		})
	})
}

// flowKey is the connection table key the program makes for p (ports
// zeroed as the program does for services keyed by address).
func flowKey(p pkt) *catherdFlowKey {
	k := &catherdFlowKey{Sport: htons(p.sport), Dport: htons(p.dport), Proto: uint8(p.proto), Family: uint8(family(p.src))}
	k.Src.Bytes = addrBytes(p.src)
	k.Dst.Bytes = addrBytes(p.dst)
	return k
}

// flowHash is the Go twin of flow_hash in bpf/hash.h.
func flowHash(k *catherdFlowKey) uint32 {
	mix := func(h uint32) uint32 {
		h ^= h >> 16
		h *= 0x85ebca6b
		h ^= h >> 13
		h *= 0xc2b2ae35
		h ^= h >> 16
		return h
	}
	h := mix(0x9e3779b9 ^ uint32(k.Dport) ^ uint32(k.Proto)<<16)
	for _, addr := range [][16]byte{k.Dst.Bytes, k.Src.Bytes} {
		for i := 0; i < 16; i += 4 {
			h = mix(h ^ binary.LittleEndian.Uint32(addr[i:]))
		}
	}
	return mix(h ^ uint32(k.Sport))
}

// maglevPick predicts the backend (1-3) Maglev gives p, from the Go twin of
// the hash and the table as written to the map.
func maglevPick(t *testing.T, d *Datapath, p pkt) int {
	t.Helper()
	svc := d.state.services[serviceKey{p.dst, p.dport, p.proto}]
	k := flowKey(p)
	slot := svc.RingBase + flowHash(k)%svc.RingSize
	var bi uint32
	if err := d.objs.Maglev.Lookup(slot, &bi); err != nil {
		t.Fatal(err)
	}
	return int(d.state.entries[bi].Dmac[5])
}
