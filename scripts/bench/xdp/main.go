// Command xdp is the namespace half of `make bench-xdp`: it sends the same
// UDP flood (many client addresses to VIP:9) through the balancer namespace
// of an l4topo topology, steered in turn by catherd's XDP datapath and by
// nftables DNAT (jhash of the client address, as ip_hash), and also straight
// to a backend with no balancer at all. The machine is shared by sender,
// balancer and backends, so the steady figure is CPU per packet: the
// balancer's share is a mode's CPU per packet minus the direct mode's.
// Rounds are interleaved; medians are printed as a Markdown table.
//
//	go run ./scripts/bench/xdp -catherd bin/catherd [-packets 2000000] [-rounds 3]
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/xdp"
)

const port = 9

func main() {
	bin := flag.String("catherd", "bin/catherd", "catherd binary")
	packets := flag.Int("packets", 2_000_000, "packets per run")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	flag.Parse()
	if err := bench(*bin, *packets, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-xdp:", err)
		os.Exit(1)
	}
}

type result struct {
	pps       float64 // packets delivered to backends per second
	cpuPerPkt float64 // ns of busy CPU (all cores) per delivered packet
	lost      float64 // share of sent packets not delivered
}

func bench(bin string, packets, rounds int) error {
	topo, err := l4topo.Up("cb", 3, 200)
	if err != nil {
		return err
	}
	defer topo.Down()
	pins := "/sys/fs/bpf/catherd-bench-xdp"
	defer xdp.Unload(pins)

	// Backends drop the flood as early as their stack allows, the same in
	// every mode.
	for i := range topo.Backends {
		if err := nft(topo.BackendNS(i+1), "add table inet sink",
			"add chain inet sink pre { type filter hook prerouting priority -300; }",
			fmt.Sprintf("add rule inet sink pre udp dport %d drop", port)); err != nil {
			return err
		}
	}
	// Each backend says something, so the bridge learns where its MAC is
	// and no frame is flooded to every port.
	for i := range topo.Backends {
		if err := topo.Do(topo.BackendNS(i+1), func() error {
			c, err := net.Dial("udp", netip.AddrPortFrom(l4topo.Client, port).String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("hello"))
			return err
		}); err != nil {
			return err
		}
	}
	lbMAC, err := macOf(topo, topo.BalancerNS())
	if err != nil {
		return err
	}
	b1MAC, err := macOf(topo, topo.BackendNS(1))
	if err != nil {
		return err
	}
	viaLB, err := frames(topo.Sources, lbMAC)
	if err != nil {
		return err
	}
	direct, err := frames(topo.Sources, b1MAC)
	if err != nil {
		return err
	}

	modes := []struct {
		name       string
		setup      func() (stop func(), err error)
		frames     [][]byte
		balancerNS bool
	}{
		{"direct to a backend (no balancer)", func() (func(), error) { return func() {}, nil }, direct, false},
		{"catherd XDP (native, L2 DSR)", func() (func(), error) { return startCatherd(bin, topo, pins, xdp.Native) }, viaLB, true},
		{"catherd XDP (generic, L2 DSR)", func() (func(), error) { return startCatherd(bin, topo, pins, xdp.Generic) }, viaLB, true},
		{"nftables DNAT (jhash ip saddr)", func() (func(), error) { return startNftables(topo) }, viaLB, true},
	}
	results := make([][]result, len(modes))
	for r := 0; r < rounds; r++ {
		for i, m := range modes {
			stop, err := m.setup()
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			res, err := flood(topo, m.frames, packets)
			stop()
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-36s %8.0f pkt/s %7.0f ns CPU/pkt, %.1f%% lost\n", r+1, m.name, res.pps, res.cpuPerPkt, 100*res.lost)
			results[i] = append(results[i], res)
		}
	}

	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	base := med(results[0], func(r result) float64 { return r.cpuPerPkt })
	fmt.Printf("| path | delivered pkt/s | CPU ns/pkt (all cores) | balancer's CPU ns/pkt | lost |\n|---|---|---|---|---|\n")
	share := map[int]float64{}
	for i, m := range modes {
		cpu := med(results[i], func(r result) float64 { return r.cpuPerPkt })
		lb := "-"
		if m.balancerNS {
			share[i] = cpu - base
			lb = fmt.Sprintf("%.0f", share[i])
		}
		fmt.Printf("| %s | %.0f | %.0f | %s | %.1f%% |\n", m.name, med(results[i], func(r result) float64 { return r.pps }), cpu, lb,
			100*med(results[i], func(r result) float64 { return r.lost }))
	}
	nft := len(modes) - 1
	nftPPS := med(results[nft], func(r result) float64 { return r.pps })
	fmt.Println()
	for i := 1; i < nft; i++ {
		fmt.Printf("%s vs nftables: %.2fx the packet rate, %.2fx the balancer's CPU per packet\n", modes[i].name,
			med(results[i], func(r result) float64 { return r.pps })/nftPPS, share[i]/share[nft])
	}
	fmt.Printf("(%d packets a run, %d interleaved rounds, medians)\n", packets, rounds)
	return nil
}

// startCatherd steers VIP:9/udp to the three backends in XDP.
func startCatherd(bin string, topo *l4topo.Topo, pins string, mode xdp.Mode) (func(), error) {
	logf, err := os.CreateTemp("", "catherd-bench-xdp-*.log")
	if err != nil {
		return nil, err
	}
	c, err := l4run.Start(topo, bin, pins, logf, "--xdp-mode", string(mode), "--metrics", "", "--health-interval", "0",
		"--l4", l4run.L4Flag(port, "udp", topo.Backends))
	stop := func() {
		if c != nil {
			c.Stop(unix.SIGTERM)
		}
		logf.Close()
		os.Remove(logf.Name())
		xdp.Unload(pins)
	}
	if err == nil {
		err = l4run.WaitUsable(pins, topo.Backends...)
	}
	if err != nil {
		log, _ := os.ReadFile(logf.Name())
		stop()
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return stop, nil
}

// startNftables makes the balancer namespace a router that DNATs the VIP
// to a backend chosen by a hash of the client address.
func startNftables(topo *l4topo.Topo) (func(), error) {
	ns := topo.BalancerNS()
	for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/ipv4/conf/all/send_redirects", "0"}, {"net/ipv4/conf/eth0/send_redirects", "0"}} {
		if err := topo.Do(ns, func() error { return os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0) }); err != nil {
			return nil, err
		}
	}
	var m []string
	for i, b := range topo.Backends {
		m = append(m, fmt.Sprintf("%d : %s", i, b))
	}
	err := nft(ns, "add table ip lb",
		"add chain ip lb pre { type nat hook prerouting priority dstnat; }",
		fmt.Sprintf("add rule ip lb pre ip daddr %s udp dport %d dnat to jhash ip saddr mod %d map { %s }", l4topo.VIP, port, len(m), strings.Join(m, ", ")))
	if err != nil {
		return nil, err
	}
	return func() { nft(ns, "delete table ip lb") }, nil
}

func nft(ns string, cmds ...string) error {
	for _, c := range cmds {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, strings.Fields(c)...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("nft %s in %s: %v: %s", c, ns, err, out)
		}
	}
	return nil
}

func macOf(topo *l4topo.Topo, ns string) (mac net.HardwareAddr, err error) {
	err = topo.Do(ns, func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	return mac, err
}

// frames builds one 64-byte UDP frame per client source address and source
// port (a flow each), addressed at L2 to dst.
func frames(sources []netip.Addr, dst net.HardwareAddr) ([][]byte, error) {
	var out [][]byte
	for _, src := range sources {
		for sport := 10000; sport < 10004; sport++ {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: l4topo.VIP.AsSlice()}
			udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: port}
			udp.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				eth, ip, udp, gopacket.Payload(make([]byte, 18))); err != nil {
				return nil, err
			}
			out = append(out, buf.Bytes())
		}
	}
	return out, nil
}

// flood sends n frames from the client's eth0 with sendmmsg on a packet
// socket and measures delivery at the backends and busy CPU.
func flood(topo *l4topo.Topo, frames [][]byte, n int) (result, error) {
	var fd int
	var ifindex int
	err := topo.Do(topo.ClientNS(), func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(unix.ETH_P_IP)})
	})
	if err != nil {
		return result{}, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)

	const batch = 64
	type mmsghdr struct {
		hdr unix.Msghdr
		len uint32
		_   [4]byte
	}
	iovs := make([]unix.Iovec, len(frames))
	for i, f := range frames {
		iovs[i].Base = &f[0]
		iovs[i].SetLen(len(f))
	}
	msgs := make([]mmsghdr, batch)

	before, err := delivered(topo)
	if err != nil {
		return result{}, err
	}
	cpu0, err := busyNanos()
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	sent, next := 0, 0
	for sent < n && time.Now().Before(deadline) {
		k := min(batch, n-sent)
		for i := 0; i < k; i++ {
			msgs[i].hdr.Iov = &iovs[next]
			msgs[i].hdr.SetIovlen(1)
			next = (next + 1) % len(frames)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(k), 0, 0, 0)
		if errno != 0 && errno != unix.ENOBUFS && errno != unix.EAGAIN {
			return result{}, fmt.Errorf("sendmmsg: %w", errno)
		}
		sent += int(r)
	}
	time.Sleep(200 * time.Millisecond) // let queues drain
	elapsed := time.Since(start)
	cpu1, err := busyNanos()
	if err != nil {
		return result{}, err
	}
	after, err := delivered(topo)
	if err != nil {
		return result{}, err
	}
	got := after - before
	if got == 0 {
		return result{}, errors.New("no packet reached a backend")
	}
	return result{pps: float64(got) / elapsed.Seconds(), cpuPerPkt: float64(cpu1-cpu0) / float64(got),
		lost: 1 - float64(got)/float64(sent)}, nil
}

// delivered sums the backends' received packets.
func delivered(topo *l4topo.Topo) (uint64, error) {
	var total uint64
	for i := range topo.Backends {
		err := topo.Do(topo.BackendNS(i+1), func() error {
			l, err := netlink.LinkByName("eth0")
			if err == nil {
				total += l.Attrs().Statistics.RxPackets
			}
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

// busyNanos reads the machine's non-idle CPU time from /proc/stat.
func busyNanos() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)[1:]
	var busy uint64
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, err
		}
		switch i {
		case 0, 1, 2, 5, 6: // user, nice, system, irq, softirq (not idle, iowait, steal, guest)
			busy += v
		}
	}
	return busy * uint64(time.Second/100), nil // USER_HZ is 100
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return *(*uint16)(unsafe.Pointer(&b[0]))
}
