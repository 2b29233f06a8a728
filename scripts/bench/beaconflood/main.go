// Command beaconflood is the membership part of `make bench-xdp`: catherd
// follows a membership group in the balancer namespace of an l4topo
// topology while the client namespace floods it with well-formed beacons
// at 10k/s, and catherd's own CPU time is measured with the XDP filter
// dropping the flood (source not allowed) and with it letting everything
// through (every source allowed, no rate limit), so catherd decodes them
// all. Rounds are interleaved; medians are printed.
//
//	go run ./scripts/bench/beaconflood -catherd bin/catherd [-rate 10000] [-seconds 5] [-rounds 3]
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/xdp"
)

var group = netip.MustParseAddrPort("228.0.0.4:45564")

func main() {
	bin := flag.String("catherd", "bin/catherd", "catherd binary")
	rate := flag.Int("rate", 10000, "beacons per second")
	seconds := flag.Int("seconds", 5, "flood duration per run")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	flag.Parse()
	if err := bench(*bin, *rate, time.Duration(*seconds)*time.Second, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "beaconflood:", err)
		os.Exit(1)
	}
}

func bench(bin string, rate int, d time.Duration, rounds int) error {
	topo, err := l4topo.Up("cf", 1, 1)
	if err != nil {
		return err
	}
	defer topo.Down()
	pins := "/sys/fs/bpf/catherd-bench-beacons"
	defer xdp.Unload(pins)
	if err := topo.Do(topo.ClientNS(), func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		_, mc, _ := net.ParseCIDR("224.0.0.0/4")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: mc})
	}); err != nil {
		return err
	}
	fake := membership.Beacon{AliveMillis: 1, Port: 4000, SecurePort: -1, UDPPort: -1,
		Host: topo.Sources[0], UniqueID: [16]byte{0xee}}
	payload := membership.Append(nil, &fake)

	modes := []struct {
		name string
		args []string
	}{
		{"XDP filter drops the flood (source not allowed)", []string{"--membership-allow", "10.99.0.11/32"}},
		{"XDP filter lets it through (all sources, no rate limit)", []string{"--membership-allow", "0.0.0.0/0",
			"--membership-rate", strconv.Itoa(xdp.MaxBeaconRate)}},
	}
	cpu := make([][]float64, len(modes))
	for r := 0; r < rounds; r++ {
		for i, m := range modes {
			args := append([]string{"--backend", "b1=http://10.99.0.11:8080", "--listen", "127.0.0.1:18099", "--metrics", "",
				"--health-interval", "0", "--membership", group.String(), "--membership-iface", "eth0"}, m.args...)
			c, err := l4run.Start(topo, bin, pins, io.Discard, args...)
			if err != nil {
				return err
			}
			time.Sleep(500 * time.Millisecond)
			before, err1 := cpuTime(c.Pid())
			sent, err2 := flood(topo, payload, rate, d)
			after, err3 := cpuTime(c.Pid())
			c.Stop(syscall.SIGTERM)
			xdp.Unload(pins)
			if err := firstErr(err1, err2, err3); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			used := after - before
			fmt.Fprintf(os.Stderr, "round %d %-58s %6d beacons, catherd CPU %v (%.1f%% of a core)\n", r+1, m.name, sent,
				used.Round(time.Millisecond), 100*used.Seconds()/d.Seconds())
			cpu[i] = append(cpu[i], used.Seconds())
		}
	}
	fmt.Printf("| catherd under a %d beacons/s flood for %v | catherd CPU (share of one core) |\n|---|---:|\n", rate, d)
	for i, m := range modes {
		slices.Sort(cpu[i])
		fmt.Printf("| %s | %.1f%% |\n", m.name, 100*cpu[i][len(cpu[i])/2]/d.Seconds())
	}
	fmt.Printf("\n(%d interleaved rounds, medians)\n", rounds)
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// flood sends payload to the group from the client namespace at rate per
// second for d.
func flood(topo *l4topo.Topo, payload []byte, rate int, d time.Duration) (int, error) {
	var conn *net.UDPConn
	err := topo.Do(topo.ClientNS(), func() (err error) {
		conn, err = net.DialUDP("udp4", &net.UDPAddr{IP: topo.Sources[0].AsSlice()}, net.UDPAddrFromAddrPort(group))
		return err
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sent, gap, start := 0, time.Second/time.Duration(rate), time.Now()
	for next := start; time.Since(start) < d; next = next.Add(gap) {
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		if _, err := conn.Write(payload); err == nil {
			sent++
		}
	}
	return sent, nil
}

// cpuTime is a process's user + system time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100), nil // USER_HZ
}
