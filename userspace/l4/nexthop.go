package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/userspace/xdp"
)

// NetlinkResolver finds a backend's next hop the way the kernel would route
// a packet to it: the route's output device and gateway, and the gateway's
// (or, on-link, the backend's own) MAC from the neighbour table. Backends
// must be reachable at L2 for direct server return, so on-link is the norm.
func NetlinkResolver(addr netip.Addr) (xdp.NextHop, error) {
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return xdp.NextHop{}, fmt.Errorf("no route to %s: %w", addr, err)
	}
	r := routes[0]
	if r.Type == unix.RTN_LOCAL {
		return xdp.NextHop{}, fmt.Errorf("%s is an address of this host, not a backend", addr)
	}
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		return xdp.NextHop{}, fmt.Errorf("route to %s: device %d: %w", addr, r.LinkIndex, err)
	}
	via := net.IP(addr.AsSlice())
	if r.Gw != nil {
		via = r.Gw
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(r.LinkIndex, family)
	if err != nil {
		return xdp.NextHop{}, fmt.Errorf("neighbours of %s: %w", link.Attrs().Name, err)
	}
	const valid = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
	for _, n := range neighs {
		if n.IP.Equal(via) && n.State&valid != 0 && len(n.HardwareAddr) == 6 {
			return xdp.NextHop{Ifindex: r.LinkIndex, SrcMAC: link.Attrs().HardwareAddr, DstMAC: n.HardwareAddr}, nil
		}
	}
	return xdp.NextHop{}, fmt.Errorf("%s via %s on %s: %w", addr, via, link.Attrs().Name, errNoNeighbor)
}

// CheckHost checks the services against this host before they are
// steered, and names the first service that cannot be: its VIP is not an
// address of this host, or one of its backends is (or has no route). A
// backend whose MAC is not known yet passes: the controller probes it.
func CheckHost(services []xdp.L4Service) error {
	if err := checkVIPs(services); err != nil {
		return err
	}
	for _, s := range services {
		for _, b := range s.Backends {
			if _, err := NetlinkResolver(b.Addr); err != nil && !errors.Is(err, errNoNeighbor) {
				return fmt.Errorf("%s: backend %v", s, err)
			}
		}
	}
	return nil
}

// checkVIPs returns an error naming the first VIP that is not an address
// of this host. For L2 direct server return the balancer must answer ARP
// (or neighbour discovery) for the VIP, so the VIP sits on one of its
// interfaces, typically the XDP one, while backends hold it on lo.
func checkVIPs(services []xdp.L4Service) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	local := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			local[ip.Unmap()] = true
		}
	}
	for _, s := range services {
		if !local[s.VIP] {
			return fmt.Errorf("%s: VIP %s is not an address of this host (add it to the interface clients reach, e.g. ip addr add %s/32 dev IFACE)", s, s.VIP, s.VIP)
		}
	}
	return nil
}
