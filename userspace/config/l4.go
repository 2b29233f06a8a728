package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The XDP datapath's defaults and limits, which its flags are checked
// against here so that a bad value stops start-up naming its flag. They
// are the datapath's (userspace/xdp: MaxDomain, MaxBeaconRate); a test
// keeps the two equal, so that config need not load the datapath to know
// them.
const (
	// DefaultXDPPinDir is where the XDP link and maps are pinned, and
	// where catherd status and unload look for them.
	DefaultXDPPinDir = "/sys/fs/bpf/catherd"
	// DefaultConntrackSize is the connection table's default capacity.
	DefaultConntrackSize = 262144
	// maxMembershipDomain is the longest domain the XDP filter compares.
	maxMembershipDomain = 64
	// maxMembershipRate bounds the beacons per second the filter lets a
	// source send.
	maxMembershipRate = 1_000_000
)

// L4 is the XDP datapath's part of the configuration.
type L4 struct {
	Iface         string
	Mode          string // "native" or "generic"
	PinDir        string
	ConntrackSize uint32
	Services      []L4ServiceSpec
}

// L4ServiceSpec is one --l4 flag: a service steered in XDP, its backends'
// addresses and weights (the control plane finds health and next hops).
type L4ServiceSpec struct {
	VIP   netip.Addr
	Port  uint16
	Proto string // "tcp" or "udp"
	// HashPort keys flows by client address and port (--l4-hash ip+port).
	HashPort bool
	Backends []L4BackendSpec
}

// String names the service as --l4 does: "10.0.0.1:80/tcp".
func (s L4ServiceSpec) String() string {
	return netip.AddrPortFrom(s.VIP, s.Port).String() + "/" + s.Proto
}

// L4BackendSpec is one backend of an --l4 service.
type L4BackendSpec struct {
	Addr   netip.Addr
	Weight uint32
}

// parseL4Service reads one --l4 flag: VIP:PORT/PROTO=IP[:WEIGHT],...
// IPv6 addresses go in brackets: [2001:db8::1]:443/tcp=[2001:db8::10]:2.
func parseL4Service(spec string) (L4ServiceSpec, error) {
	front, list, ok := strings.Cut(spec, "=")
	if !ok || list == "" {
		return L4ServiceSpec{}, fmt.Errorf("want VIP:PORT/tcp=IP,IP[:WEIGHT],..., got %q", spec)
	}
	s, err := parseServiceName(front)
	if err != nil {
		return L4ServiceSpec{}, err
	}
	seen := map[netip.Addr]bool{}
	for _, item := range strings.Split(list, ",") {
		b, err := parseL4Backend(item)
		if err != nil {
			return L4ServiceSpec{}, fmt.Errorf("%s: %w", s, err)
		}
		if b.Addr.Is4() != s.VIP.Is4() {
			return L4ServiceSpec{}, fmt.Errorf("%s: backend %s is not of the VIP's address family", s, b.Addr)
		}
		if seen[b.Addr] {
			return L4ServiceSpec{}, fmt.Errorf("%s: backend %s listed twice", s, b.Addr)
		}
		seen[b.Addr] = true
		s.Backends = append(s.Backends, b)
	}
	return s, nil
}

// parseServiceName reads VIP:PORT/PROTO.
func parseServiceName(name string) (L4ServiceSpec, error) {
	hostPort, proto, ok := strings.Cut(name, "/")
	if !ok {
		return L4ServiceSpec{}, fmt.Errorf("%q: want VIP:PORT/tcp or VIP:PORT/udp", name)
	}
	ap, err := netip.ParseAddrPort(hostPort)
	if err != nil || ap.Port() == 0 {
		return L4ServiceSpec{}, fmt.Errorf("%q: want an IP address and a port, like 10.0.0.1:443 or [2001:db8::1]:443", hostPort)
	}
	if ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return L4ServiceSpec{}, fmt.Errorf("%q: want a plain IPv4 or IPv6 address", hostPort)
	}
	if proto != "tcp" && proto != "udp" {
		return L4ServiceSpec{}, fmt.Errorf("%q: protocol %q is not tcp or udp", name, proto)
	}
	return L4ServiceSpec{VIP: ap.Addr(), Port: ap.Port(), Proto: proto}, nil
}

// parseL4Backend reads IP, IP:WEIGHT, [IPv6] or [IPv6]:WEIGHT.
func parseL4Backend(item string) (L4BackendSpec, error) {
	host, weight := item, ""
	if strings.HasPrefix(item, "[") {
		end := strings.IndexByte(item, ']')
		if end < 0 {
			return L4BackendSpec{}, fmt.Errorf("backend %q: unclosed [", item)
		}
		host, weight = item[1:end], strings.TrimPrefix(item[end+1:], ":")
		if item[end+1:] != "" && !strings.HasPrefix(item[end+1:], ":") {
			return L4BackendSpec{}, fmt.Errorf("backend %q: want [IPv6] or [IPv6]:WEIGHT", item)
		}
	} else if i := strings.LastIndexByte(item, ':'); i >= 0 && strings.Count(item, ":") == 1 {
		host, weight = item[:i], item[i+1:]
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Zone() != "" || addr.Is4In6() {
		return L4BackendSpec{}, fmt.Errorf("backend %q: want IP[:WEIGHT] (IPv6 in brackets)", item)
	}
	b := L4BackendSpec{Addr: addr, Weight: 1}
	if weight != "" {
		w, err := strconv.Atoi(weight)
		if err != nil || w < 1 || w > 100 {
			return L4BackendSpec{}, fmt.Errorf("backend %s: weight must be 1..100, got %q", addr, weight)
		}
		b.Weight = uint32(w)
	}
	return b, nil
}

// applyL4Hash applies --l4-hash values: MODE for every service, or
// VIP:PORT/PROTO=MODE for one (later values win).
func applyL4Hash(values []string, services []L4ServiceSpec) error {
	for _, v := range values {
		name, mode, perService := strings.Cut(v, "=")
		if !perService {
			mode = v
		}
		var hashPort bool
		switch mode {
		case "ip":
		case "ip+port":
			hashPort = true
		default:
			return fmt.Errorf("%q: want ip or ip+port (or VIP:PORT/PROTO=ip|ip+port)", v)
		}
		if !perService {
			for i := range services {
				services[i].HashPort = hashPort
			}
			continue
		}
		want, err := parseServiceName(name)
		if err != nil {
			return err
		}
		found := false
		for i := range services {
			if services[i].String() == want.String() {
				services[i].HashPort, found = hashPort, true
			}
		}
		if !found {
			return fmt.Errorf("%s: no --l4 service by that name", want)
		}
	}
	return nil
}

// validateL4 checks the --l4 flags as a set.
func validateL4(l *L4) error {
	names := map[string]bool{}
	for _, s := range l.Services {
		if names[s.String()] {
			return &FlagError{Flag: "l4", Err: fmt.Errorf("%s declared twice", s)}
		}
		names[s.String()] = true
	}
	if len(l.Services) > 0 && l.Iface == "" {
		return &FlagError{Flag: "xdp-iface", Err: errors.New("--l4 services need the interface to attach XDP to")}
	}
	if l.Mode != "native" && l.Mode != "generic" {
		return &FlagError{Flag: "xdp-mode", Err: fmt.Errorf("want native or generic, got %q", l.Mode)}
	}
	if l.ConntrackSize < 1024 {
		return &FlagError{Flag: "conntrack-size", Err: errors.New("must be at least 1024")}
	}
	return nil
}

// parseMembership checks the --membership flags.
func parseMembership(m *Membership, group string, allow []string) error {
	if group == "" {
		if m.Iface != "" || len(allow) > 0 {
			return &FlagError{Flag: "membership", Err: errors.New("--membership-iface and --membership-allow need --membership GROUP:PORT")}
		}
		return nil
	}
	g, err := netip.ParseAddrPort(group)
	if err != nil || !g.Addr().IsMulticast() || g.Port() == 0 {
		return &FlagError{Flag: "membership", Err: fmt.Errorf("want a multicast GROUP:PORT like 228.0.0.4:45564, got %q", group)}
	}
	m.Group = g
	if m.Iface == "" {
		return &FlagError{Flag: "membership-iface", Err: errors.New("--membership needs the interface the heartbeats arrive on")}
	}
	for _, a := range allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return &FlagError{Flag: "membership-allow", Err: fmt.Errorf("want a CIDR prefix like 10.0.1.0/24, got %q", a)}
		}
		m.Allow = append(m.Allow, p.Masked())
	}
	if m.Domain == "*" {
		m.Domain, m.AnyDomain = "", true
	}
	if len(m.Domain) > maxMembershipDomain {
		return &FlagError{Flag: "membership-domain", Err: fmt.Errorf("at most %d bytes", maxMembershipDomain)}
	}
	if m.DropTime <= 0 {
		return &FlagError{Flag: "membership-drop-time", Err: errors.New("must be positive")}
	}
	if m.Rate == 0 {
		m.Rate = 10
	}
	if m.Rate > maxMembershipRate {
		return &FlagError{Flag: "membership-rate", Err: fmt.Errorf("at most %d", maxMembershipRate)}
	}
	return nil
}
