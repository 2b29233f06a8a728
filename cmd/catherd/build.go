package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/handoff"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/l4"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/proxy"
	"github.com/catherd/catherd/userspace/statefile"
	"github.com/catherd/catherd/userspace/tier"
	"github.com/catherd/catherd/userspace/version"
	"github.com/catherd/catherd/userspace/xdp"
)

// instance is a catherd being run: the parts build makes from the
// configuration, serve starts and stop winds down. A part the flags do
// not ask for is nil: the HTTP side (pool, proxy) without --backend, the
// datapath without --xdp-iface or --membership, and so on.
type instance struct {
	cfg        *config.Config
	log        *slog.Logger
	version    version.Info
	started    time.Time
	adminToken string

	// The listening sockets, and the hand-off socket a successor takes
	// them over on (sockets.go).
	succ          *handoff.Successor // the predecessor, while taking over from it
	pred          *handoff.Successor // the predecessor once taken over from, until told this process serves
	handoffSrv    *handoff.Server
	relay         *handoff.Relay          // what this process moves while it drains, for its successor
	listeners     []net.Listener          // every listening socket
	sockets       map[string]net.Listener // the same, by "--flag addr", as a successor asks for them
	plain, secure []net.Listener          // --listen, --tls-listen
	adminLn       net.Listener
	metricsLn     net.Listener

	metrics   *metrics.Metrics
	upstreams []*proxy.Upstream // one per --backend
	members   *roster           // the members, as configured and changed at run time (members.go)
	pool      *balancer.Pool
	moved     *moved.Table
	px        *proxy.Proxy
	accessLog *accesslog.Log
	certs     *certs.Store
	watcher   *membership.Watcher
	dp        *xdp.Datapath
	ctl       *l4.Controller
	stopCtl   func() // stops ctl's writes (runDatapath)
	checker   *health.Checker
	tier      *tier.Tier // this instance's place in a tier (--peer-listen)

	// --state-file: what it held at start, and what keeps it (state.go).
	savedState *balancer.Snapshot
	keeper     *statefile.Keeper
	stopKeeper context.CancelFunc

	ctx                  context.Context // ends when catherd stops
	cancel               context.CancelFunc
	serving              atomic.Bool // accepting clients: /readyz
	errc                 chan error  // a listener that stopped
	adminSrv, metricsSrv *http.Server
}

// build makes every part the configuration asks for, binding every address
// and attaching the datapath before anything serves, so that a bad flag
// stops start-up with nothing half-running: on an error, what was made is
// closed again. Each error names the flag it is about.
func build(cfg *config.Config, adminToken string, started time.Time, log *slog.Logger) (*instance, error) {
	c := &instance{cfg: cfg, log: log, version: version.Get(), started: started, adminToken: adminToken,
		sockets: map[string]net.Listener{}, metrics: newMetrics()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, step := range []func() error{
		c.claimHandoff,      // sockets.go
		c.buildMembers,      // the pool and the L7 proxy
		c.readStateFile,     // state.go
		c.loadCerts,         // --tls-cert
		c.bindListeners,     // sockets.go
		c.followMembership,  // datapath.go
		c.attachDatapath,    // datapath.go
		c.buildHealthChecks, // every member's and L4 backend's
		c.joinTier,          // tier.go: bound here, joined in takeOver
	} {
		if err := step(); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// buildMembers makes the --backend members (one upstream each), their
// pool, and the L7 proxy that serves them, with the access log.
func (c *instance) buildMembers() error {
	cfg := c.cfg
	c.moved = moved.New(cfg.SessionTTL, cfg.SessionTableSize)
	if len(cfg.Members) == 0 {
		return nil // L4 services only
	}
	c.upstreams = newUpstreams(cfg.Members)
	var err error
	c.pool, err = balancer.NewPool(poolMembers(c.upstreams), cfg.LBMethod, balancer.Options{Retry: cfg.Retry,
		NoFailover: cfg.NoFailover, AnyDomain: cfg.AnyDomain, Moved: c.moved, RejoinSettle: cfg.RejoinSettle, SlowStart: cfg.SlowStart})
	if err != nil {
		return fmt.Errorf("--backend: %v", err)
	}
	c.metrics.Members(names(balancer.States), memberSeries(c.pool))
	c.metrics.MovedSessions(names(moved.Reasons), movedSeries(c.moved))
	if cfg.AccessLog != "" {
		if c.accessLog, err = accesslog.Open(cfg.AccessLog, cfg.AccessLogFormat); err != nil {
			return fmt.Errorf("--access-log: %v", err)
		}
		c.metrics.AccessLog(c.accessLog.Written.Load, c.accessLog.Dropped.Load)
	}
	c.px = proxy.New(c.pool, c.upstreams, c.metrics, proxyOptions(cfg.Proxy, c.accessLog), c.log)
	c.metrics.ClientConns(c.px.ClientConns)
	c.members = newRoster(c)
	return nil
}

// newUpstreams builds what serves each --backend, once: its balancer
// member and how the proxy reaches it (proxy.Upstream). The pool, the
// proxy, the health checker and the admin API take each member from its
// upstream; the membership watcher finds it in the pool by name.
func newUpstreams(specs []config.MemberSpec) []*proxy.Upstream {
	ups := make([]*proxy.Upstream, len(specs))
	for i, s := range specs {
		m := balancer.NewMember(s.Name, s.Route, s.Weight, s.Flags)
		m.SetDomain(s.Domain)
		ups[i] = proxy.NewUpstream(m, target(s))
	}
	return ups
}

// poolMembers are the upstreams' members, for the pool.
func poolMembers(ups []*proxy.Upstream) []*balancer.Member {
	ms := make([]*balancer.Member, len(ups))
	for i, u := range ups {
		ms[i] = u.Member()
	}
	return ms
}

// loadCerts reads the TLS certificates.
func (c *instance) loadCerts() error {
	if len(c.cfg.TLSCerts) == 0 {
		return nil
	}
	var err error
	if c.certs, err = certs.Load(certPairs(c.cfg.TLSCerts)); err != nil {
		return fmt.Errorf("--tls-cert: %v", err)
	}
	c.metrics.TLS(tlsSeries(c.certs))
	return nil
}

// buildHealthChecks makes the checker of every member and L4 backend, each
// probed over its own protocol; none with --health-interval 0.
func (c *instance) buildHealthChecks() error {
	var targets []health.Target
	for _, u := range c.upstreams {
		targets = append(targets, health.Target{Member: u.Member(), Probe: u.Probe(c.cfg.HealthURI)})
	}
	if c.ctl != nil {
		targets = append(targets, c.ctl.HealthTargets()...)
	}
	if c.cfg.HealthInterval <= 0 || len(targets) == 0 {
		return nil
	}
	opts := health.Options{Interval: c.cfg.HealthInterval, FastInterval: c.cfg.HealthFastInterval, Timeout: c.cfg.HealthTimeout,
		Fall: c.cfg.HealthFall, Rise: c.cfg.HealthRise,
		Observe: func(mem *balancer.Member, r health.Result) { c.metrics.HealthCheck(mem.Name, r.Err == nil, r.Duration) }}
	if c.ctl != nil {
		opts.OnChange = c.ctl.Changed
	}
	c.checker = health.New(targets, opts, c.log)
	return nil
}

// ready says whether this process takes requests (/readyz): not before
// every listener runs, nor once it hands over or stops, nor while no
// member can take a request.
func (c *instance) ready() error {
	switch {
	case !c.serving.Load():
		return errors.New("not accepting clients (starting, or handed over to a successor)")
	case c.pool != nil && !c.pool.Usable():
		return errors.New("no member can take a request")
	}
	return nil
}

// close releases what build made and stop does not wind down: the tier
// (when start-up failed), the listening sockets and the hand-off (when
// start-up failed), the datapath (left attached: only catherd unload
// detaches it) and the access log.
func (c *instance) close() {
	c.cancel()
	c.leaveTier()
	c.closeSockets()
	if c.stopCtl != nil {
		c.stopCtl() // its last write done before the maps' handles go
	}
	if c.dp != nil {
		c.dp.Close()
	}
	if c.accessLog != nil {
		c.accessLog.Close()
	}
}
