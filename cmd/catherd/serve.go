package main

import (
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

// serve starts every part build made, in the order that has everything
// in place for the first client: the background loops (the moved-session
// expiry, the membership listener), the predecessor's state when taking
// over (or the state file's), the datapath's control plane (a
// successor's first writes to the maps), the keeping of the state file,
// the hand-off socket, the admin API and metrics, the clients' listeners,
// and then health checks.
func (c *instance) serve() {
	if c.pool != nil {
		go c.moved.ExpireEvery(c.ctx, time.Minute)
	}
	if c.watcher != nil {
		go c.watcher.Run(c.ctx)
		mc := c.cfg.Membership
		c.log.Info("following cluster membership", "group", mc.Group, "iface", mc.Iface, "domain", mc.Domain, "drop_time", mc.DropTime)
	}
	c.takeOver()
	c.runDatapath() // after takeOver: the maps have one writer at a time
	c.keepState()
	c.serveHandoff()
	c.serveAdmin()
	c.serveClients()
	for _, b := range c.cfg.Members {
		c.log.Info("member", "name", b.Name, "url", b.Scheme+"://"+b.Addr, "route", b.Route, "weight", b.Weight, "status", b.Flags.String())
	}
	if c.checker != nil {
		go c.checker.Run(c.ctx)
	}
}

// announce says that catherd serves, once serve has started everything:
// the signals that came while it started are dropped, SIGTERM and SIGINT
// stop it from now on, /readyz says ready, and systemd and the process
// that started this one as its successor, if any, are told, and then the
// predecessor taken over from.
func (c *instance) announce(sig chan os.Signal) {
	for drained := false; !drained; {
		select {
		case sg := <-sig:
			c.log.Info("ignoring a signal received while starting", "signal", sg.String())
		default:
			drained = true
		}
	}
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	c.serving.Store(true)
	c.log.Info("catherd serving", "version", c.version.Version, "revision", c.version.Revision, "pid", os.Getpid())
	notifyReady(c.log)
	if c.pred != nil {
		c.pred.Serving() // the predecessor may exit now
		c.pred = nil
	}
}

// serveAdmin serves the admin API (--admin) and the metrics (--metrics,
// with the liveness and readiness probes, and the Go profiles with
// --pprof).
func (c *instance) serveAdmin() {
	src := c.adminSources()
	if c.adminLn != nil {
		c.adminSrv = &http.Server{Handler: admin.Handler(src, c.adminToken), ReadHeaderTimeout: 10 * time.Second}
		go c.adminSrv.Serve(c.adminLn)
	}
	if c.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", c.metrics.Handler())
		admin.HandleProbes(mux, c.ready)
		if c.cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		c.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go c.metricsSrv.Serve(c.metricsLn)
	}
}

// adminSources are what the admin API reports on: the parts this instance
// runs.
func (c *instance) adminSources() admin.Sources {
	src := admin.Sources{Pool: c.pool, Version: c.version, Started: c.started,
		Sticky: c.cfg.Proxy.Sticky, Log: c.log, Ready: c.ready, Tier: c.tier}
	if c.pool != nil {
		src.Moved, src.MovedTable, src.ClientConns = c.moved.Stats, c.moved, c.px.ClientConns
		src.Target, src.Roster = c.members.Target, c.members
	}
	if c.watcher != nil {
		src.Membership = c.watcher.Members
	}
	if c.dp != nil {
		src.XDP = c.dp.Stats
	}
	if c.checker != nil {
		src.Health = c.checker.Status
	}
	return src
}

// serveClients accepts clients on every --listen and --tls-listen socket;
// a listener that fails ends up on c.errc.
func (c *instance) serveClients() {
	c.errc = make(chan error, len(c.listeners))
	for _, ln := range c.plain {
		go func() { c.errc <- c.px.Serve(ln) }()
		c.log.Info("listening", "addr", ln.Addr().String())
	}
	for _, ln := range c.secure {
		go func() { c.errc <- c.px.ServeTLS(ln, c.certs.ServerConfig()) }()
		c.log.Info("listening for TLS", "addr", ln.Addr().String(), "protocols", "h2,http/1.1")
	}
}
