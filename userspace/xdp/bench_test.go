package xdp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/catherd/catherd/scripts/l4topo"
)

// BenchmarkPerPacket measures the program's cost per packet with
// BPF_PROG_TEST_RUN, beside a program that only returns XDP_PASS, in one
// run: established flows, non-VIP traffic and the trivial program repeat
// one packet a million times in the kernel (as Katran measures); new flows
// need a fresh packet each, so they are timed one run per packet over many
// clients, and established flows are timed the same way for comparison.
// The membership filter's cost is measured on a valid and a spoofed beacon.
// Rounds are interleaved and medians reported. Run it with -benchtime 1x
// (make bench-xdp); it ignores b.N.
func BenchmarkPerPacket(b *testing.B) {
	l4topo.Require(b)
	inNewNetns(b, func(egress *net.Interface) {
		d := testDatapath(b)
		if err := d.Sync([]L4Service{l4Service(egress)}); err != nil {
			b.Fatal(err)
		}
		pass, err := l4topo.PassProgram()
		if err != nil {
			b.Fatal(err)
		}
		defer pass.Close()

		established := tcp4("10.98.0.1", 40000).build(b)
		expectForward(b, d, established)
		other := tcp4("10.98.0.1", 40000)
		other.dst = netip.MustParseAddr("10.99.0.3")
		nonVIP := other.build(b) // to a service's port: the worst case
		other.dport = 22
		otherPort := other.build(b) // to a port no service uses

		// The membership filter: a valid beacon runs every check (and its
		// token bucket is refilled by a rate far above the test's); a
		// spoofed one stops at the source lookup.
		if err := d.SetMembership(MembershipFilter{Group: group, Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
			Rate: MaxBeaconRate, Burst: MaxBeaconRate}); err != nil {
			b.Fatal(err)
		}
		validBeacon := beaconFrame(b, "10.77.0.11", beacon("10.77.0.11", ""), nil)
		spoofedBeacon := beaconFrame(b, "192.0.2.66", beacon("192.0.2.66", ""), nil)

		const rounds, repeat = 7, 1_000_000
		const clients = 20000
		var fresh [][]byte
		for i := 0; i < clients; i++ {
			fresh = append(fresh, tcp4(fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256), 40000).build(b))
		}
		samples := map[string][]float64{}
		measure := func(name string, prog *ebpf.Program, frame []byte, n int) {
			_, per, err := prog.Benchmark(frame, n, nil)
			if err != nil {
				b.Fatal(err)
			}
			samples[name] = append(samples[name], float64(per.Nanoseconds()))
		}
		// one run per packet: the mean of many single-run timings
		single := func(name string, prog *ebpf.Program, frames [][]byte) {
			var total time.Duration
			for _, f := range frames {
				_, per, err := prog.Benchmark(f, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += per
			}
			samples[name] = append(samples[name], float64(total.Nanoseconds())/float64(len(frames)))
		}
		for r := 0; r < rounds; r++ {
			measure("pass", pass, established, repeat)
			measure("established", d.objs.CatherdXdp, established, repeat)
			measure("non-VIP", d.objs.CatherdXdp, nonVIP, repeat)
			measure("non-VIP-other-port", d.objs.CatherdXdp, otherPort, repeat)
			measure("beacon-valid", d.objs.CatherdXdp, validBeacon, repeat)
			measure("beacon-spoofed", d.objs.CatherdXdp, spoofedBeacon, repeat)
			if err := d.purgeFlows(allBackends(d)); err != nil {
				b.Fatal(err)
			}
			single("new-flow-1run", d.objs.CatherdXdp, fresh)
			single("established-1run", d.objs.CatherdXdp, fresh)
			single("pass-1run", pass, fresh)
		}
		med := map[string]float64{}
		for name, s := range samples {
			slices.Sort(s)
			med[name] = s[len(s)/2]
			b.ReportMetric(med[name], "ns/pkt:"+name)
		}
		b.ReportMetric(med["established"]/med["pass"], "x-pass:established")
		b.ReportMetric(med["non-VIP"]/med["pass"], "x-pass:non-VIP")
		b.ReportMetric(med["non-VIP-other-port"]/med["pass"], "x-pass:non-VIP-other-port")
		b.ReportMetric(med["new-flow-1run"]/med["pass-1run"], "x-pass:new-flow")
	})
}

// allBackends returns every backend index in use, to purge all flows.
func allBackends(d *Datapath) map[uint32]bool {
	all := map[uint32]bool{}
	for _, bi := range d.state.backends {
		all[bi] = true
	}
	return all
}
