package xdp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/catherd/catherd/scripts/l4topo"
)

// FuzzDatapath runs the program on arbitrary frames and checks what it may
// do with them: never abort; pass frames untouched; forward only TCP or UDP
// packets addressed to a declared service, changing nothing but the
// Ethernet addresses; drop only packets addressed to a VIP or to the
// membership group.
func FuzzDatapath(f *testing.F) {
	l4topo.Require(f)
	for _, p := range []pkt{
		tcp4("10.99.0.2", 40000),
		{src: netip.MustParseAddr("10.99.0.2"), dst: vip4, sport: 5353, dport: 53, proto: UDP},
		{src: netip.MustParseAddr("fd00:99::2"), dst: vip6, sport: 40000, dport: 443, proto: TCP},
		{src: netip.MustParseAddr("fd00:99::2"), dst: vip6, sport: 40000, dport: 443, proto: TCP, hopByHop: true},
		{src: netip.MustParseAddr("10.99.0.2"), dst: vip4, sport: 1, dport: 80, proto: TCP, moreFrags: true},
		{src: netip.MustParseAddr("10.99.0.2"), dst: vip4, sport: 1, dport: 80, proto: TCP, ipOptions: true},
	} {
		f.Add(p.build(f))
	}
	d := testDatapath(f)
	v6 := L4Service{VIP: vip6, Port: 443, Proto: TCP, Backends: []L4Backend{{Addr: netip.MustParseAddr("fd00:99::11"), Weight: 1, Usable: true,
		NextHop: NextHop{Ifindex: 1, SrcMAC: lbMAC, DstMAC: backendMAC(1)}}}}
	v4 := L4Service{VIP: vip4, Port: 80, Proto: TCP}
	for i := 1; i <= 2; i++ {
		v4.Backends = append(v4.Backends, L4Backend{Addr: netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}), Weight: 1, Usable: true,
			NextHop: NextHop{Ifindex: 1, SrcMAC: lbMAC, DstMAC: backendMAC(i)}})
	}
	udp := L4Service{VIP: vip4, Port: 53, Proto: UDP, HashPort: true, Backends: v4.Backends}
	if err := d.Sync([]L4Service{v4, v6, udp}); err != nil {
		f.Fatal(err)
	}
	if err := d.SetMembership(MembershipFilter{Group: group, Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
		Rate: 100, Burst: 100}); err != nil {
		f.Fatal(err)
	}
	f.Add(beaconFrame(f, "10.77.0.11", beacon("10.77.0.11", ""), nil))
	services := map[serviceKey]bool{{vip4, 80, TCP}: true, {vip6, 443, TCP}: true, {vip4, 53, UDP}: true}

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 1514 {
			return // prog.Run wants a whole Ethernet header; an MTU bounds the rest
		}
		ret, out := run(t, d, frame)
		dst, key, ok := destination(frame)
		switch ret {
		case xdpPass:
			if !bytes.Equal(out, frame) {
				t.Fatalf("passed frame modified:\n in %x\nout %x", frame, out)
			}
		case xdpDrop:
			if !ok || (dst != vip4 && dst != vip6 && dst != group.Addr()) {
				t.Fatalf("dropped a frame not addressed to a VIP or the membership group (to %v): %x", dst, frame)
			}
		case xdpTX:
			if !ok || !services[key] {
				t.Fatalf("forwarded a frame that is not for a service (%v): %x", key, frame)
			}
			if !bytes.Equal(out[12:], frame[12:]) {
				t.Fatalf("forwarded frame changed beyond its Ethernet addresses:\n in %x\nout %x", frame, out)
			}
		default:
			t.Fatalf("verdict %d for %x", ret, frame)
		}
	})
}

// destination reads a frame's destination address and, when the headers
// are there, its service key; an independent reading of the layouts.
func destination(frame []byte) (netip.Addr, serviceKey, bool) {
	etherType := binary.BigEndian.Uint16(frame[12:])
	l3 := frame[14:]
	var dst netip.Addr
	var proto Proto
	var l4 []byte
	switch {
	case etherType == 0x0800 && len(l3) >= 20:
		dst = netip.AddrFrom4([4]byte(l3[16:20]))
		proto = Proto(l3[9])
		if ihl := int(l3[0]&0xf) * 4; ihl >= 20 && len(l3) >= ihl {
			l4 = l3[ihl:]
		}
	case etherType == 0x86dd && len(l3) >= 40:
		dst = netip.AddrFrom16([16]byte(l3[24:40]))
		proto = Proto(l3[6])
		l4 = l3[40:]
	default:
		return netip.Addr{}, serviceKey{}, false
	}
	key := serviceKey{vip: dst, proto: proto}
	if len(l4) >= 4 {
		key.port = binary.BigEndian.Uint16(l4[2:])
	}
	return dst, key, true
}
