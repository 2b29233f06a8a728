package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Options configure a Watcher: where to listen, and the member table's
// Config (the cluster's dropTime and domain).
type Options struct {
	Group netip.AddrPort // Tomcat's default: 228.0.0.4:45564
	Iface *net.Interface // where to join the group
	Config
}

// AllowedSources are the source prefixes whose beacons catherd accepts
// (the XDP filter drops the others): allow, or when it is empty the
// prefixes of the addresses of iface, the interface the heartbeats arrive
// on: the cluster's own network.
func AllowedSources(allow []netip.Prefix, iface *net.Interface) []netip.Prefix {
	if len(allow) > 0 || iface == nil {
		return allow
	}
	addrs, _ := iface.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				allow = append(allow, netip.PrefixFrom(p.Unmap(), ones).Masked())
			}
		}
	}
	return allow
}

// Watcher is the socket side of the membership: it joins Tomcat's
// multicast group, feeds every beacon to a Table, drops members silent for
// the cluster's dropTime, and marks each balancer member it watches
// isolated while its host is out of the group. A backend can answer on its
// port and still have fallen out of replication; only the group knows.
type Watcher struct {
	conn      *net.UDPConn
	table     *Table
	log       *slog.Logger
	malformed atomic.Uint64

	mu      sync.Mutex
	watched []watched
}

// watched is a balancer member and the host address it has in the
// cluster's beacons.
type watched struct {
	member *balancer.Member
	host   netip.Addr
	// domainFromGroup: the member's replication domain is the one its
	// heartbeats carry (followed when it changes).
	domainFromGroup bool
}

// Listen joins the group on the interface.
func Listen(o Options, log *slog.Logger) (*Watcher, error) {
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
	return &Watcher{conn: conn, log: log, table: NewTable(o.Config)}, nil
}

// Watch has the watcher follow m, whose host the cluster's beacons name
// host: m is isolated while host is out of the group, and with
// domainFromGroup its replication domain is the one its heartbeats carry.
// m starts isolated until its host is heard (the balancer still uses
// isolated members when none is in the group, so start-up serves).
func (w *Watcher) Watch(m *balancer.Member, host netip.Addr, domainFromGroup bool) {
	m.SetIsolated(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watched = append(w.watched, watched{member: m, host: host, domainFromGroup: domainFromGroup})
}

// Unwatch stops following m (a member removed at run time).
func (w *Watcher) Unwatch(m *balancer.Member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watched = slices.DeleteFunc(w.watched, func(b watched) bool { return b.member == m })
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
	var b Beacon
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
		if err := Decode(buf[:n], &b); err != nil {
			// The XDP filter drops these before they get here; count
			// what still arrives (the filter off, or a shape it passes).
			w.malformed.Add(1)
			continue
		}
		ev := w.table.Observe(&b, now)
		switch ev.Kind {
		case Joined:
			w.log.Info("cluster member joined", "host", ev.Member.Host, "port", ev.Member.Port, "from", from.Addr())
		case Restarted:
			w.log.Info("cluster member restarted (a new member)", "host", ev.Member.Host, "port", ev.Member.Port)
		case Left:
			w.log.Info("cluster member left (shutdown)", "host", ev.Member.Host, "port", ev.Member.Port)
		default:
			continue
		}
		w.update()
	}
}

// update sets each watched member's isolation, and domain if it follows
// the group's, from the table, logging changes.
func (w *Watcher) update() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.watched {
		m := b.member
		domain, in := w.table.DomainOf(b.host)
		if in && b.domainFromGroup && domain != m.Domain() {
			w.log.Info("member's replication domain from its heartbeats", "member", m.Name, "domain", domain, "was", m.Domain())
			m.SetDomain(domain)
		}
		if m.Isolated() == !in {
			continue
		}
		m.SetIsolated(!in)
		if in {
			w.log.Info("member in its replication group", "member", m.Name, "host", b.host)
		} else {
			w.log.Warn("member isolated: out of its replication group, no new sessions", "member", m.Name, "host", b.host)
		}
	}
}

// Members lists the group as last heard.
func (w *Watcher) Members() []Member { return w.table.Members() }

// Stats are the table's counters and the malformed datagrams that reached
// the socket.
func (w *Watcher) Stats() (Stats, uint64) { return w.table.Stats(), w.malformed.Load() }
