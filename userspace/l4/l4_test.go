package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/xdp"
)

type recorder struct{ last []xdp.L4Service }

func (r *recorder) Sync(s []xdp.L4Service) error { r.last = s; return nil }

func TestSyncFollowsMemberState(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("10.0.0.13")
	svc := xdp.L4Service{VIP: netip.MustParseAddr("10.0.0.1"), Port: 80, Proto: xdp.TCP,
		Backends: []xdp.L4Backend{{Addr: a, Weight: 2}, {Addr: b, Weight: 1}, {Addr: c, Weight: 1}}}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	resolve := func(addr netip.Addr) (xdp.NextHop, error) {
		if addr == c {
			return xdp.NextHop{}, errors.New("no route")
		}
		return xdp.NextHop{Ifindex: 2, DstMAC: mac}, nil
	}
	dp := &recorder{}
	ctl := New(dp, resolve, []xdp.L4Service{svc}, slog.New(slog.DiscardHandler))
	if err := ctl.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := dp.last[0].Backends
	if !got[0].Usable || got[0].Weight != 2 || got[0].NextHop.Ifindex != 2 || !got[1].Usable || got[2].Usable {
		t.Fatalf("all healthy, c unroutable: %+v", got)
	}

	var ms []*balancer.Member
	for _, ht := range ctl.HealthTargets() {
		if ht.Probe != nil {
			ms = append(ms, ht.Member)
		}
	}
	if len(ms) != 3 || ms[0].Name != "10.0.0.11 of 10.0.0.1:80/tcp" {
		t.Fatalf("members %v", ms)
	}
	ms[0].SetDown(true)
	ms[1].SetFlags(balancer.Drain)
	ctl.Sync(context.Background())
	got = dp.last[0].Backends
	if got[0].Usable {
		t.Errorf("a down backend stayed usable")
	}
	if !got[1].Usable || got[1].Weight != 0 {
		t.Errorf("a draining backend should keep its flows (usable) and take no new ones (weight 0): %+v", got[1])
	}
	if svc.Backends[0].Usable || svc.Backends[1].Weight != 1 {
		t.Errorf("Sync changed the configured services")
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	if err := tcpProbe(ap.Addr(), ap.Port())(context.Background()); err != nil {
		t.Fatalf("open port: %v", err)
	}
	ln.Close()
	if err := tcpProbe(ap.Addr(), ap.Port())(context.Background()); err == nil {
		t.Fatal("closed port passed")
	}
}
