// Command catherd is a load balancer for Tomcat clusters: it routes each
// session to the node named by its jvmRoute, balances new sessions, and
// moves sessions to another node when theirs fails.
//
//	catherd run --listen :80 --backend node1=http://10.0.0.11:8080 --backend node2=http://10.0.0.12:8080
//
// See `catherd run --help` for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/handoff"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/l4"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/proxy"
	"github.com/catherd/catherd/userspace/version"
	"github.com/catherd/catherd/userspace/xdp"
)

const usage = `Usage: catherd <command> [flags]

Commands:
  run       run the balancer (see: catherd run --help); run --check checks
            a configuration without serving
  reload    replace the running catherd by one started with new flags,
            without dropping a request (see: catherd reload --help)
  status    show a running catherd's members, cluster membership and XDP
            datapath [--admin ADDR] [--json]; with no catherd running, the
            XDP state pinned in [--xdp-pin-dir DIR]
  member    change a running catherd's members (see: catherd member help):
            list, enable, disable, drain, evacuate, recover, weight
  session   where a session goes and why; the sessions that moved
            (see: catherd session help)
  unload    detach the XDP datapath and remove its pinned maps (after
            catherd run has stopped) [--xdp-pin-dir DIR]
  version   show catherd's version (also: catherd --version)
  completion bash
            print the bash completion script
  help      show this text
`

func main() {
	takeReadyPipe()
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs a subcommand and returns the process exit code: 0 on
// success, 1 when a started balancer fails, 2 on bad usage (nothing started).
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(args[1:], stdout, stderr)
	case "reload":
		return reload(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "member":
		return member(args[1:], stdout, stderr)
	case "session":
		return sessionCmd(args[1:], stdout, stderr)
	case "unload":
		return unload(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.Get())
		return 0
	case "completion":
		return completion(args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "catherd: unknown command %q (want one of %s; see catherd help)\n", args[0], strings.Join(commands, ", "))
	return 2
}

// commands are catherd's subcommands, as dispatch knows them.
var commands = []string{"run", "reload", "status", "member", "session", "unload", "version", "completion", "help"}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	adminToken, err := readAdminToken(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	if cfg.Check {
		return check(cfg, stdout, stderr)
	}
	// A balancer must not die because whoever read its log went away
	// (the shell that ran catherd reload, a closed pipe): Go would end
	// the process on a write to a broken stdout or stderr.
	signal.Ignore(syscall.SIGPIPE)
	// SIGUSR2 and SIGHUP would end a process still starting, and one may
	// come that was not meant for it: systemctl kill signals every
	// process of the service, the successor its predecessor just started
	// included. Caught from here on, and ignored until catherd serves.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGUSR1)
	started := time.Now()
	logOpts := &slog.HandlerOptions{Level: cfg.LogLevel}
	log := slog.New(slog.NewTextHandler(stderr, logOpts))
	if cfg.LogJSON {
		log = slog.New(slog.NewJSONHandler(stderr, logOpts))
	}

	// Set up everything, binding every address, before serving anything,
	// so that a bad flag stops start-up with nothing half-running.
	var (
		pool      *balancer.Pool
		px        *proxy.Proxy
		upstreams []*proxy.Upstream
		checked   []health.Target
		listeners []net.Listener
	)
	// A take-over starts by receiving the running catherd's sockets; a
	// fresh start claims the hand-off socket first, so that a second
	// catherd cannot start beside the first by mistake.
	var succ *handoff.Successor
	var handoffSrv *handoff.Server
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
		if succ != nil {
			succ.Abort()
		}
		if handoffSrv != nil {
			handoffSrv.Close()
		}
	}
	fail := func(format string, a ...any) int {
		closeAll()
		fmt.Fprintf(stderr, "catherd run: "+format+"\n", a...)
		return 2
	}
	if cfg.Takeover {
		succ, err = handoff.Take(cfg.HandoffSocket)
		switch {
		case errors.Is(err, handoff.ErrNoPredecessor):
			log.Info("--takeover: no catherd is running; starting afresh", "socket", cfg.HandoffSocket)
		case err != nil:
			return fail("--takeover: %v", err)
		default:
			log.Info("taking over", "from_pid", succ.Pid(), "socket", cfg.HandoffSocket)
		}
	}
	if succ == nil && cfg.HandoffSocket != "" {
		if handoffSrv, err = handoff.Listen(cfg.HandoffSocket, log); err != nil {
			return fail("--handoff-socket %s: %v (start with --takeover to replace it)", cfg.HandoffSocket, err)
		}
	}
	// sockets are the listeners by flag and address, as a successor
	// asks for them.
	sockets := map[string]net.Listener{}
	listen := func(flag, addr string) (net.Listener, error) {
		var ln net.Listener
		var err error
		if succ != nil { // an inherited socket, if the predecessor had this one
			if ln, _, err = succ.Listener(flag + " " + addr); err != nil {
				return nil, err
			}
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", addr); err != nil {
				return nil, err
			}
		}
		listeners = append(listeners, ln)
		sockets[flag+" "+addr] = ln
		return ln, nil
	}
	movedSessions := moved.New(cfg.SessionTTL, cfg.SessionTableSize)
	if len(cfg.Members) > 0 {
		upstreams = newUpstreams(cfg.Members)
		opts := balancer.Options{Retry: cfg.Retry, NoFailover: cfg.NoFailover, AnyDomain: cfg.AnyDomain, Moved: movedSessions,
			RejoinSettle: cfg.RejoinSettle, SlowStart: cfg.SlowStart}
		if pool, err = balancer.NewPool(poolMembers(upstreams), cfg.LBMethod, opts); err != nil {
			return fail("--backend: %v", err)
		}
	}
	m := newMetrics()
	var accessLog *accesslog.Log
	if pool != nil {
		m.Members(names(balancer.States), memberSeries(pool))
		m.MovedSessions(names(moved.Reasons), movedSeries(movedSessions))
		if cfg.AccessLog != "" {
			if accessLog, err = accesslog.Open(cfg.AccessLog, cfg.AccessLogFormat); err != nil {
				return fail("--access-log: %v", err)
			}
			defer accessLog.Close()
			m.AccessLog(accessLog.Written.Load, accessLog.Dropped.Load)
		}
		px = proxy.New(pool, upstreams, m, proxyOptions(cfg.Proxy, accessLog), log)
		m.ClientConns(px.ClientConns)
		for _, u := range upstreams {
			checked = append(checked, health.Target{Member: u.Member(), Probe: u.Probe(cfg.HealthURI)})
		}
	}
	var certStore *certs.Store
	if len(cfg.TLSCerts) > 0 {
		if certStore, err = certs.Load(certPairs(cfg.TLSCerts)); err != nil {
			return fail("--tls-cert: %v", err)
		}
		m.TLS(tlsSeries(certStore))
	}
	var plainLns, tlsLns []net.Listener
	for _, l := range []struct {
		flag  string
		addrs []string
		to    *[]net.Listener
	}{{"--listen", cfg.Listen, &plainLns}, {"--tls-listen", cfg.TLSListen, &tlsLns}} {
		for _, addr := range l.addrs {
			ln, err := listen(l.flag, addr)
			if err != nil {
				return fail("%s %s: %v", l.flag, addr, err)
			}
			*l.to = append(*l.to, ln)
		}
	}
	var adminLn net.Listener
	if cfg.Admin != "" {
		if adminLn, err = listen("--admin", cfg.Admin); err != nil {
			return fail("--admin %s: %v", cfg.Admin, err)
		}
	}
	var metricsLn net.Listener
	if cfg.Metrics != "" {
		if metricsLn, err = listen("--metrics", cfg.Metrics); err != nil {
			return fail("--metrics %s: %v", cfg.Metrics, err)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var ctl *l4.Controller
	var watcher *membership.Watcher
	// serving is set while this process accepts clients: not before
	// every listener runs, nor once it hands over or stops (/readyz).
	var serving atomic.Bool
	src := admin.Sources{Pool: pool, Targets: map[string]string{}, Version: version.Get(), Started: started,
		Sticky: cfg.Proxy.Sticky, Log: log, Ready: func() error {
			switch {
			case !serving.Load():
				return errors.New("not accepting clients (starting, or handed over to a successor)")
			case pool != nil && !pool.Usable():
				return errors.New("no member can take a request")
			}
			return nil
		}}
	if pool != nil {
		src.Moved, src.MovedTable, src.ClientConns = movedSessions.Stats, movedSessions, px.ClientConns
	}
	for _, u := range upstreams {
		src.Targets[u.Member().Name] = u.URL()
	}
	if cfg.Membership.Group.IsValid() {
		if watcher, err = listenMembership(cfg, log); err != nil {
			return fail("%v", err)
		}
		for _, b := range cfg.Members {
			watcher.Watch(pool.Member(b.Name), b.ClusterHost, cfg.Membership.AnyDomain && !b.DomainSet)
		}
		m.Membership(membershipSeries(watcher.Stats))
		src.Membership = watcher.Members
	}
	// One XDP program serves the L4 services and the membership filter.
	if cfg.L4.Iface != "" || cfg.Membership.Iface != "" {
		dp, err := openDatapath(cfg, log)
		if err != nil {
			return fail("%v", err)
		}
		defer dp.Close()
		m.Register(xdp.Collector(dp.Stats))
		src.XDP = dp.Stats
		if err := dp.SetMembership(membershipFilter(cfg)); err != nil {
			return fail("--membership: %v", err)
		}
		// Even with no --l4, Sync clears services a previous catherd left.
		ctl = l4.New(dp, l4.NetlinkResolver, l4Services(cfg.L4.Services), log)
		if err := ctl.Sync(ctx); err != nil {
			return fail("--l4: %v", err)
		}
		checked = append(checked, ctl.HealthTargets()...)
		go ctl.Run(ctx, time.Second)
		log.Info("XDP datapath attached", "l4_iface", cfg.L4.Iface, "membership_iface", cfg.Membership.Iface,
			"mode", cfg.L4.Mode, "pins", cfg.L4.PinDir)
		for _, s := range cfg.L4.Services {
			log.Info("L4 service", "service", s.String(), "backends", len(s.Backends), "hash_port", s.HashPort)
		}
	}
	if pool != nil {
		go movedSessions.ExpireEvery(ctx, time.Minute)
	}
	if watcher != nil {
		go watcher.Run(ctx)
		log.Info("following cluster membership", "group", cfg.Membership.Group, "iface", cfg.Membership.Iface,
			"domain", cfg.Membership.Domain, "drop_time", cfg.Membership.DropTime)
	}

	if succ != nil {
		// Everything is set up: the predecessor stops accepting, and its
		// state (members, moved sessions) applies before the first
		// request is accepted here.
		st, err := succ.Ready()
		succ = nil
		if err != nil {
			log.Error("taking over: the predecessor's state is lost; serving without it", "err", err)
		} else {
			var n, moves int
			if pool != nil {
				n, moves = pool.Restore(st)
			}
			log.Info("took over", "members", n, "moved_sessions", moves)
		}
		if handoffSrv, err = handoff.Listen(cfg.HandoffSocket, log); err != nil {
			log.Error("--handoff-socket: no successor can take over from this process", "err", err)
		}
	}
	if handoffSrv != nil {
		go handoffSrv.Serve(handoff.Predecessor{
			Sockets: sockets,
			Release: func() {
				for _, ln := range listeners {
					ln.Close()
				}
			},
			State: func() balancer.Snapshot {
				if pool == nil {
					return balancer.Snapshot{}
				}
				return pool.Snapshot()
			},
		})
	}

	var checker *health.Checker
	if cfg.HealthInterval > 0 && len(checked) > 0 {
		opts := health.Options{Interval: cfg.HealthInterval, FastInterval: cfg.HealthFastInterval, Timeout: cfg.HealthTimeout,
			Fall: cfg.HealthFall, Rise: cfg.HealthRise,
			Observe: func(mem *balancer.Member, r health.Result) { m.HealthCheck(mem.Name, r.Err == nil, r.Duration) }}
		if ctl != nil {
			opts.OnChange = ctl.Changed
		}
		checker = health.New(checked, opts, log)
		src.Health = checker.Status
	}
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{Handler: admin.Handler(src, adminToken), ReadHeaderTimeout: 10 * time.Second}
		go adminSrv.Serve(adminLn)
	}
	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		admin.HandleProbes(mux, src.Ready)
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(metricsLn)
	}
	errc := make(chan error, len(listeners))
	for _, ln := range plainLns {
		go func() { errc <- px.Serve(ln) }()
		log.Info("listening", "addr", ln.Addr().String())
	}
	for _, ln := range tlsLns {
		go func() { errc <- px.ServeTLS(ln, certStore.ServerConfig()) }()
		log.Info("listening for TLS", "addr", ln.Addr().String(), "protocols", "h2,http/1.1")
	}
	for _, b := range cfg.Members {
		log.Info("member", "name", b.Name, "url", b.Scheme+"://"+b.Addr, "route", b.Route, "weight", b.Weight, "status", b.Flags.String())
	}
	if checker != nil {
		go checker.Run(ctx)
	}

	for drained := false; !drained; {
		select {
		case sg := <-sig:
			log.Info("ignoring a signal received while starting", "signal", sg.String())
		default:
			drained = true
		}
	}
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	serving.Store(true)
	log.Info("catherd serving", "version", src.Version.Version, "revision", src.Version.Revision, "pid", os.Getpid())
	notifyReady(log)
	var handedOver <-chan struct{}
	if handoffSrv != nil {
		handedOver = handoffSrv.Done()
	}
	code := waitForStop(stopper{sig: sig, errc: errc, handedOver: handedOver, certs: certStore, accessLog: accessLog,
		args: args, grace: cfg.ShutdownTimeout, log: log})
	serving.Store(false)
	stop()
	if handoffSrv != nil {
		handoffSrv.Close()
	}
	if px != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		if err := px.Drain(ctx); errors.Is(err, context.DeadlineExceeded) {
			log.Warn("shutdown grace period over; dropping requests still in flight")
		}
		cancel()
	}
	for _, srv := range []*http.Server{metricsSrv, adminSrv} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(ctx)
			cancel()
		}
	}
	if ctl != nil {
		log.Info("XDP datapath left attached: it keeps steering until the next catherd takes over (catherd unload removes it)")
	}
	return code
}

// stopper is what waitForStop watches.
type stopper struct {
	sig        <-chan os.Signal
	errc       <-chan error
	handedOver <-chan struct{} // closed once a successor took over
	certs      *certs.Store    // nil without --tls-listen
	accessLog  *accesslog.Log  // nil without --access-log
	args       []string        // this process's `catherd run` arguments (SIGUSR2 reuses them)
	grace      time.Duration
	log        *slog.Logger
}

// waitForStop serves signals until one says stop (SIGTERM, SIGINT), a
// successor takes over, or a listener fails, and returns the exit code.
// SIGHUP rereads the TLS certificates; SIGUSR2 starts a successor.
func waitForStop(s stopper) int {
	for {
		select {
		case sg := <-s.sig:
			switch sg {
			case syscall.SIGHUP:
				reloadCerts(s.certs, s.log)
			case syscall.SIGUSR1:
				reopenAccessLog(s.accessLog, s.log)
			case syscall.SIGUSR2:
				restartSelf(s.args, s.log)
			default:
				s.log.Info("shutting down", "signal", sg.String(), "grace", s.grace)
				return 0
			}
		case <-s.handedOver:
			s.log.Info("a successor took over; draining", "grace", s.grace)
			return 0
		case err := <-s.errc:
			if err == nil {
				continue // a listener closed by a take-over
			}
			s.log.Error("listener failed", "err", err)
			return 1
		}
	}
}

// reopenAccessLog opens the access log file again (SIGUSR1), as
// logrotate asks after moving it away.
func reopenAccessLog(l *accesslog.Log, log *slog.Logger) {
	if l == nil {
		log.Info("SIGUSR1: no --access-log to reopen")
		return
	}
	if err := l.Reopen(); err != nil {
		log.Error("SIGUSR1: access log not reopened; lines go to the old file", "err", err)
		return
	}
	log.Info("SIGUSR1: access log reopened")
}

// reloadCerts rereads the TLS certificates (SIGHUP).
func reloadCerts(store *certs.Store, log *slog.Logger) {
	if store == nil {
		log.Info("SIGHUP: nothing to reload (no --tls-listen)")
		return
	}
	if err := store.Reload(); err != nil {
		log.Error("SIGHUP: certificates not reloaded; the previous ones stay in use", "err", err)
		return
	}
	for _, c := range store.Stats().Certs {
		log.Info("SIGHUP: certificate reloaded", "file", c.File, "subject", c.Subject, "not_after", c.NotAfter)
	}
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

// readAdminToken reads --admin-token-file, if given.
func readAdminToken(cfg *config.Config) (string, error) {
	if cfg.AdminTokenFile == "" {
		return "", nil
	}
	token, err := admin.LoadToken(cfg.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	return token, nil
}

// listenMembership joins the cluster's membership group.
func listenMembership(cfg *config.Config, log *slog.Logger) (*membership.Watcher, error) {
	iface, err := membershipIface(cfg)
	if err != nil {
		return nil, err
	}
	w, err := membership.Listen(membership.Options{Group: cfg.Membership.Group, Iface: iface, Config: membership.Config{
		DropTime: cfg.Membership.DropTime, Domain: cfg.Membership.Domain, AnyDomain: cfg.Membership.AnyDomain}}, log)
	if err != nil {
		return nil, fmt.Errorf("--membership %s: %v", cfg.Membership.Group, err)
	}
	return w, nil
}

// membershipIface is the interface --membership-iface names.
func membershipIface(cfg *config.Config) (*net.Interface, error) {
	iface, err := net.InterfaceByName(cfg.Membership.Iface)
	if err != nil {
		return nil, fmt.Errorf("--membership-iface %s: no such interface", cfg.Membership.Iface)
	}
	return iface, nil
}

// membershipFilter is the XDP filter's configuration; the zero filter (off)
// without --membership.
func membershipFilter(cfg *config.Config) xdp.MembershipFilter {
	mc := cfg.Membership
	if !mc.Group.IsValid() {
		return xdp.MembershipFilter{}
	}
	iface, _ := net.InterfaceByName(mc.Iface) // checked by listenMembership
	return xdp.MembershipFilter{Group: mc.Group, Allow: membership.AllowedSources(mc.Allow, iface), Domain: mc.Domain,
		AnyDomain: mc.AnyDomain, Rate: mc.Rate}
}

// openDatapath checks the XDP flags against the host and loads and
// attaches the program to the L4 interface and the membership interface
// (one program and one set of maps; one attachment when they are the
// same). Its errors name the flag they are about.
func openDatapath(cfg *config.Config, log *slog.Logger) (*xdp.Datapath, error) {
	ifaces, err := datapathIfaces(cfg)
	if err != nil {
		return nil, err
	}
	dp, err := xdp.Open(xdp.Options{Ifaces: ifaces, Mode: xdp.Mode(cfg.L4.Mode), PinDir: cfg.L4.PinDir,
		ConntrackSize: cfg.L4.ConntrackSize, Log: log})
	if err != nil {
		return nil, fmt.Errorf("--xdp-mode %s on %s: %v", cfg.L4.Mode, strings.Join(ifaces, ", "), err)
	}
	return dp, nil
}

// datapathIfaces checks the XDP flags against the host (interfaces, and
// the --l4 services: see l4.CheckHost) and returns the interfaces the
// program goes on.
func datapathIfaces(cfg *config.Config) ([]string, error) {
	var ifaces []string
	for _, f := range []struct{ flag, iface string }{{"--xdp-iface", cfg.L4.Iface}, {"--membership-iface", cfg.Membership.Iface}} {
		if f.iface == "" || slices.Contains(ifaces, f.iface) {
			continue
		}
		if _, err := net.InterfaceByName(f.iface); err != nil {
			return nil, fmt.Errorf("%s %s: no such interface", f.flag, f.iface)
		}
		ifaces = append(ifaces, f.iface)
	}
	if err := l4.CheckHost(l4Services(cfg.L4.Services)); err != nil {
		return nil, fmt.Errorf("--l4 %v", err)
	}
	return ifaces, nil
}
