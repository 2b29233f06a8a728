// Package cluster follows the backend cluster's own membership: it joins
// Tomcat's membership multicast group, feeds every beacon to a
// session/membership Table, drops members silent for the cluster's
// dropTime, and marks each balancer member isolated while its host is out
// of the group. A backend can answer on its port and still have fallen out
// of replication; only the group knows.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/session/membership"
	"github.com/catherd/catherd/userspace/balancer"
)

// Backend ties a balancer member to the host address it has in the
// cluster's beacons.
type Backend struct {
	Member *balancer.Member
	Host   netip.Addr
	// DomainFromGroup: the member's replication domain is the one its
	// heartbeats carry (followed when it changes).
	DomainFromGroup bool
}

// Options configure a Watcher.
type Options struct {
	Group    netip.AddrPort // Tomcat's default: 228.0.0.4:45564
	Iface    *net.Interface // where to join the group
	DropTime time.Duration  // the cluster's dropTime (default 3s)
	Domain   string         // the cluster's domain attribute ("" by default)
	// AnyDomain follows the members of every domain in the group.
	AnyDomain bool
}

// Watcher listens to the group and keeps members' isolation current.
type Watcher struct {
	conn      *net.UDPConn
	table     *membership.Table
	backends  []Backend
	log       *slog.Logger
	malformed atomic.Uint64
}

// Listen joins the group on the interface. Every backend starts isolated
// until its host is heard (the balancer still uses isolated members when
// none is in the group, so start-up serves).
func Listen(o Options, backends []Backend, log *slog.Logger) (*Watcher, error) {
	if !o.Group.Addr().IsMulticast() {
		return nil, fmt.Errorf("%s is not a multicast group", o.Group)
	}
	network := "udp4"
	if o.Group.Addr().Is6() {
		network = "udp6"
	}
	conn, err := net.ListenMulticastUDP(network, o.Iface, net.UDPAddrFromAddrPort(o.Group))
	if err != nil {
		return nil, fmt.Errorf("join %s on %s: %w", o.Group, o.Iface.Name, err)
	}
	w := &Watcher{conn: conn, backends: backends, log: log,
		table: membership.NewTable(membership.Config{DropTime: o.DropTime, Domain: o.Domain, AnyDomain: o.AnyDomain})}
	for _, b := range backends {
		b.Member.SetIsolated(true)
	}
	return w, nil
}

// Run reads beacons until ctx ends. Silent members are expired at least
// every tenth of a second, so a dead node is out within dropTime + 0.1 s.
// One goroutine does everything, so each change is seen and logged once.
func (w *Watcher) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.conn.Close()
	}()
	const tick = 100 * time.Millisecond
	buf := make([]byte, 65536)
	var b membership.Beacon
	lastExpire := time.Now()
	for {
		w.conn.SetReadDeadline(lastExpire.Add(tick))
		n, from, err := w.conn.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if now.Sub(lastExpire) >= tick {
			for _, m := range w.table.Expire(now) {
				w.log.Warn("cluster member dropped: silent for dropTime", "host", m.Host, "port", m.Port)
			}
			lastExpire = now
			w.update()
		}
		var timeout net.Error
		switch {
		case err == nil:
		case errors.As(err, &timeout) && timeout.Timeout():
			continue
		default:
			if ctx.Err() == nil {
				w.log.Error("membership listener failed", "err", err)
			}
			return
		}
		if err := membership.Decode(buf[:n], &b); err != nil {
			// The XDP filter drops these before they get here; count
			// what still arrives (the filter off, or a shape it passes).
			w.malformed.Add(1)
			continue
		}
		ev := w.table.Observe(&b, now)
		switch ev.Kind {
		case membership.Joined:
			w.log.Info("cluster member joined", "host", ev.Member.Host, "port", ev.Member.Port, "from", from.Addr())
		case membership.Restarted:
			w.log.Info("cluster member restarted (a new member)", "host", ev.Member.Host, "port", ev.Member.Port)
		case membership.Left:
			w.log.Info("cluster member left (shutdown)", "host", ev.Member.Host, "port", ev.Member.Port)
		default:
			continue
		}
		w.update()
	}
}

// update sets each backend's isolation, and domain if it follows the
// group's, from the table, logging changes.
func (w *Watcher) update() {
	for _, b := range w.backends {
		domain, in := w.table.DomainOf(b.Host)
		if in && b.DomainFromGroup && domain != b.Member.Domain() {
			w.log.Info("member's replication domain from its heartbeats", "member", b.Member.Name, "domain", domain,
				"was", b.Member.Domain())
			b.Member.SetDomain(domain)
		}
		if b.Member.Isolated() == !in {
			continue
		}
		b.Member.SetIsolated(!in)
		if in {
			w.log.Info("member in its replication group", "member", b.Member.Name, "host", b.Host)
		} else {
			w.log.Warn("member isolated: out of its replication group, no new sessions", "member", b.Member.Name, "host", b.Host)
		}
	}
}

// Members lists the group as last heard.
func (w *Watcher) Members() []membership.Member { return w.table.Members() }

// Stats are the table's counters and the malformed datagrams that reached
// the socket.
func (w *Watcher) Stats() (membership.Stats, uint64) { return w.table.Stats(), w.malformed.Load() }
