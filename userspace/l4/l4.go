// Package l4 is the control plane of catherd's L4 services: it keeps the
// XDP datapath's view of every backend current. A backend takes new flows
// when it passes its health checks, is not disabled or drained by an
// operator, and its next hop is known; the datapath then gets the changed
// Maglev slots only. Health state lives in balancer.Members, the one source
// of truth that L7 and L4 share.
package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/xdp"
)

// Datapath is what the controller drives: *xdp.Datapath.
type Datapath interface {
	Sync([]xdp.L4Service) error
}

// Resolver finds a backend's next hop (see NetlinkResolver).
type Resolver func(netip.Addr) (xdp.NextHop, error)

// Controller keeps the datapath in step with backend health.
type Controller struct {
	dp       Datapath
	resolve  Resolver
	services []xdp.L4Service      // as configured: addresses and weights
	members  [][]*balancer.Member // members[s][b] is services[s].Backends[b]
	hops     map[netip.Addr]xdp.NextHop
	changed  chan struct{}
	log      *slog.Logger
}

// New returns a controller for the configured services.
func New(dp Datapath, resolve Resolver, services []xdp.L4Service, log *slog.Logger) *Controller {
	c := &Controller{dp: dp, resolve: resolve, services: services, hops: map[netip.Addr]xdp.NextHop{},
		changed: make(chan struct{}, 1), log: log}
	for _, s := range services {
		ms := make([]*balancer.Member, len(s.Backends))
		for i, b := range s.Backends {
			ms[i] = balancer.NewMember(BackendName(s, b.Addr), "", int(b.Weight), 0)
		}
		c.members = append(c.members, ms)
	}
	return c
}

// BackendName names a backend of a service in logs: "10.0.0.11 of 10.0.0.1:80/tcp".
func BackendName(s xdp.L4Service, addr netip.Addr) string {
	return addr.String() + " of " + s.String()
}

// HealthTargets are every backend's member and its probe, a TCP connect,
// for the health checker.
func (c *Controller) HealthTargets() []health.Target {
	var targets []health.Target
	for si, s := range c.services {
		for bi, m := range c.members[si] {
			targets = append(targets, health.Target{Member: m, Probe: tcpProbe(s.Backends[bi].Addr, s.Port)})
		}
	}
	return targets
}

// tcpProbe passes when a TCP connection to addr:port opens. For UDP
// services it checks the same port over TCP, which is all a balancer can
// know without speaking the protocol.
func tcpProbe(addr netip.Addr, port uint16) health.Probe {
	target := net.JoinHostPort(addr.String(), strconv.Itoa(int(port)))
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// Changed tells the controller that member state changed; it resyncs at
// once. It never blocks, so the health checker can call it.
func (c *Controller) Changed() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Run syncs now, then whenever Changed is called and every interval (to
// follow next hops that move or expire), until ctx ends.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := c.Sync(ctx); err != nil {
			c.log.Error("L4 datapath update failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
		case <-t.C:
		}
	}
}

// Sync computes each backend's state and hands the result to the datapath.
func (c *Controller) Sync(ctx context.Context) error {
	now := time.Now()
	want := make([]xdp.L4Service, len(c.services))
	for si, s := range c.services {
		want[si] = s
		want[si].Backends = make([]xdp.L4Backend, len(s.Backends))
		for bi, b := range s.Backends {
			m := c.members[si][bi]
			hop, known := c.nextHop(ctx, b.Addr, s.Port)
			state := m.State(now)
			b.Usable = known && usable(state)
			b.NextHop = hop
			b.Weight = uint32(m.Weight())
			if state == balancer.StateDrain {
				b.Weight = 0 // keeps its flows, takes no new ones
			}
			want[si].Backends[bi] = b
		}
	}
	return c.dp.Sync(want)
}

// usable says whether a backend in state s may carry flows. A draining one
// keeps its flows (Sync gives it weight 0, so it takes no new ones).
func usable(s balancer.State) bool {
	return s == balancer.StateOK || s == balancer.StateDrain
}

// nextHop returns addr's next hop, resolving it again each time so that a
// changed route or neighbour is followed. An address whose neighbour entry
// is missing is probed once, which makes the kernel resolve it for the
// next round.
func (c *Controller) nextHop(ctx context.Context, addr netip.Addr, port uint16) (xdp.NextHop, bool) {
	hop, err := c.resolve(addr)
	if err == nil {
		if old, ok := c.hops[addr]; !ok || old.Ifindex != hop.Ifindex || old.DstMAC.String() != hop.DstMAC.String() {
			c.log.Info("L4 backend next hop", "backend", addr, "ifindex", hop.Ifindex, "mac", hop.DstMAC.String())
		}
		c.hops[addr] = hop
		return hop, true
	}
	if _, ok := c.hops[addr]; ok {
		c.log.Warn("L4 backend next hop lost", "backend", addr, "err", err)
		delete(c.hops, addr)
	}
	if errors.Is(err, errNoNeighbor) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		tcpProbe(addr, port)(pctx)
		cancel()
	}
	return xdp.NextHop{}, false
}

// errNoNeighbor means the kernel does not (yet) know the next hop's MAC.
var errNoNeighbor = errors.New("next hop's link-layer address unknown")
