package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/xdp"
)

func TestParseL4(t *testing.T) {
	c, err := Parse([]string{"--xdp-iface", "eth0",
		"--l4", "10.0.0.1:443/tcp=10.0.0.11,10.0.0.12:3",
		"--l4", "[2001:db8::1]:53/udp=[2001:db8::11],[2001:db8::12]:2",
		"--l4-hash", "[2001:db8::1]:53/udp=ip+port"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 0 || len(c.Members) != 0 {
		t.Errorf("an L4-only instance got HTTP listeners %v", c.Listen)
	}
	l := c.L4
	if l.Iface != "eth0" || l.Mode != "native" || l.PinDir != DefaultXDPPinDir || l.ConntrackSize != DefaultConntrackSize {
		t.Errorf("defaults: %+v", l)
	}
	if len(l.Services) != 2 {
		t.Fatalf("services: %+v", l.Services)
	}
	tcp, udp := l.Services[0], l.Services[1]
	if tcp.String() != "10.0.0.1:443/tcp" || tcp.HashPort || len(tcp.Backends) != 2 ||
		tcp.Backends[0].Addr != netip.MustParseAddr("10.0.0.11") || tcp.Backends[0].Weight != 1 ||
		tcp.Backends[1].Addr != netip.MustParseAddr("10.0.0.12") || tcp.Backends[1].Weight != 3 {
		t.Errorf("tcp service: %+v", tcp)
	}
	if udp.String() != "[2001:db8::1]:53/udp" || !udp.HashPort || udp.Backends[1].Weight != 2 {
		t.Errorf("udp service: %+v", udp)
	}

	c, err = Parse([]string{"--xdp-iface", "eth0", "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--l4-hash", "ip+port",
		"--backend", "n1=http://10.0.0.21:8080", "--xdp-mode", "generic", "--conntrack-size", "5000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.L4.Services[0].HashPort || c.L4.Mode != "generic" || c.L4.ConntrackSize != 5000 || len(c.Listen) != 1 {
		t.Errorf("L4 with L7: %+v, listen %v", c.L4, c.Listen)
	}
}

func TestParseL4Errors(t *testing.T) {
	base := []string{"--xdp-iface", "eth0"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--l4", "10.0.0.1:80/tcp=10.0.0.11"}, "--xdp-iface"},
		{append(base, "--l4", "10.0.0.1:80=10.0.0.11"), "--l4"},
		{append(base, "--l4", "10.0.0.1:80/sctp=10.0.0.11"), "sctp"},
		{append(base, "--l4", "10.0.0.1/tcp=10.0.0.11"), "port"},
		{append(base, "--l4", "10.0.0.1:80/tcp"), "VIP:PORT/tcp"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11:0"), "weight"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11,10.0.0.11"), "twice"},
		{append(base, "--l4", "10.0.0.1:80/tcp=[2001:db8::11]"), "family"},
		{append(base, "--l4", "10.0.0.1:80/tcp=host.example"), "IP[:WEIGHT]"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--l4", "10.0.0.1:80/tcp=10.0.0.12"), "declared twice"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--l4-hash", "port"), "--l4-hash"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--l4-hash", "10.0.0.2:80/tcp=ip"), "no --l4 service"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--xdp-mode", "skb"), "--xdp-mode"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--conntrack-size", "10"), "--conntrack-size"},
		{append(base, "--l4", "10.0.0.1:80/tcp=10.0.0.11", "--listen", ":80"), "--listen"},
	} {
		_, err := Parse(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}

func TestParseMembership(t *testing.T) {
	c, err := Parse([]string{"--backend", "n1=http://10.77.0.11:8080", "--backend", "n2=http://tc2.example:8080,member=10.77.0.12",
		"--membership", "228.0.0.4:45564", "--membership-iface", "cth-br0", "--membership-allow", "10.77.0.5/24",
		"--membership-domain", "cluster-a", "--membership-drop-time", "5s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Membership
	if m.Group != netip.MustParseAddrPort("228.0.0.4:45564") || m.Iface != "cth-br0" || m.Domain != "cluster-a" ||
		m.DropTime != 5*time.Second || m.Rate != 10 || len(m.Allow) != 1 || m.Allow[0] != netip.MustParsePrefix("10.77.0.0/24") {
		t.Errorf("membership %+v", m)
	}
	if c.Members[0].ClusterHost != netip.MustParseAddr("10.77.0.11") || c.Members[1].ClusterHost != netip.MustParseAddr("10.77.0.12") {
		t.Errorf("cluster hosts %v %v", c.Members[0].ClusterHost, c.Members[1].ClusterHost)
	}
	any, err := Parse([]string{"--backend", "n1=http://10.77.0.11:8080", "--backend", "n2=http://10.77.0.12:8080,domain=west",
		"--membership", "228.0.0.4:45564", "--membership-iface", "cth-br0", "--membership-domain", "*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !any.Membership.AnyDomain || any.Membership.Domain != "" || any.Members[0].DomainSet || !any.Members[1].DomainSet {
		t.Errorf("--membership-domain '*': %+v, backends %+v", any.Membership, any.Members)
	}
	base := []string{"--backend", "n1=http://10.77.0.11:8080"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{append(base, "--membership", "10.0.0.1:45564", "--membership-iface", "eth0"), "multicast"},
		{append(base, "--membership", "228.0.0.4:45564"), "--membership-iface"},
		{append(base, "--membership-iface", "eth0"), "need --membership"},
		{append(base, "--membership", "228.0.0.4:45564", "--membership-iface", "eth0", "--membership-allow", "10.0.0.0"), "CIDR"},
		{[]string{"--backend", "n1=http://tc1.example:8080", "--membership", "228.0.0.4:45564", "--membership-iface", "eth0"}, "member=IP"},
		{append(base, "--membership", "228.0.0.4:45564", "--membership-iface", "eth0", "--membership-drop-time", "0s"), "--membership-drop-time"},
	} {
		if _, err := Parse(tt.args, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}

func TestParseFailoverFlags(t *testing.T) {
	c, err := Parse([]string{"--backend", "a=http://10.0.0.1:8080,domain=dc1", "--failover-scope", "any",
		"--session-ttl", "10m", "--session-table-size", "1000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Members[0].Domain != "dc1" || !c.AnyDomain || c.SessionTTL != 10*time.Minute || c.SessionTableSize != 1000 {
		t.Errorf("parsed %+v, any %v, ttl %v, size %d", c.Members[0], c.AnyDomain, c.SessionTTL, c.SessionTableSize)
	}
	c, _ = Parse([]string{"--backend", "a=http://10.0.0.1:8080"}, nil)
	if c.AnyDomain || c.SessionTTL != 30*time.Minute {
		t.Errorf("defaults: any %v, ttl %v", c.AnyDomain, c.SessionTTL)
	}
	for _, args := range [][]string{{"--failover-scope", "cluster"}, {"--session-ttl", "0s"}, {"--session-table-size", "0"}} {
		if _, err := Parse(append([]string{"--backend", "a=http://10.0.0.1:8080"}, args...), nil); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// The limits config checks the XDP flags against are the datapath's.
func TestLimitsMatchDatapath(t *testing.T) {
	if maxMembershipDomain != xdp.MaxDomain || maxMembershipRate != xdp.MaxBeaconRate {
		t.Errorf("config's limits (%d, %d) are not the datapath's (%d, %d)", maxMembershipDomain, maxMembershipRate, xdp.MaxDomain, xdp.MaxBeaconRate)
	}
	if xdp.Mode("native") != xdp.Native || xdp.Mode("generic") != xdp.Generic {
		t.Error("--xdp-mode values are not the datapath's modes")
	}
}
