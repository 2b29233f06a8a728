// Package config turns `catherd run` flags into a validated Config. Every
// error names the flag it is about, so main can print one line and exit 2
// before anything starts.
//
// A Config is plain values (MemberSpec, CertSpec, L4ServiceSpec, ...). To
// check them, config uses the value types and parsers of what it
// configures (balancer's flags and methods, session's sticky config,
// ajp's ping modes, accesslog's formats), never their machinery: it
// imports neither the proxy nor the XDP datapath nor the certificates,
// and reads no file. cmd/catherd maps a Config onto each part's options
// and reads the files it names (certificates, the admin token).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/cliflag"
)

// MemberSpec is one --backend flag: a member of the pool, reached over
// HTTP or AJP.
type MemberSpec struct {
	// Spec is the --backend value it was read from, as given.
	Spec   string
	Name   string
	Scheme string // "http" or "ajp"
	Addr   string // host:port
	Route  string
	Domain string // replication domain ("" is the default one)
	// DomainSet: domain= was given (else, with --membership-domain '*',
	// the member's domain is what its heartbeats say).
	DomainSet bool
	Weight    int
	Flags     balancer.Flags
	// ClusterHost is the member's address in the cluster's membership
	// beacons: the URL's host, or member=IP when replication uses
	// another network. Invalid when neither is an IP address.
	ClusterHost netip.Addr
	// AJP only.
	Secret     string
	PacketSize int
	Ping       ajp.PingMode
}

// Config is everything `catherd run` needs.
type Config struct {
	// Check: validate everything that can be without serving (catherd
	// run --check), then exit.
	Check  bool
	Listen []string
	// TLSListen are the addresses of TLS clients, served with TLSCerts.
	TLSListen []string
	TLSCerts  []CertSpec
	Members   []MemberSpec
	LBMethod  string
	Metrics   string
	Admin     string

	NoFailover bool
	Retry      time.Duration
	// AnyDomain lets sessions fail over across replication domains.
	AnyDomain bool
	// SessionTTL and SessionTableSize bound the moved-session table.
	SessionTTL       time.Duration
	SessionTableSize int
	// RejoinSettle and SlowStart pace a member's return (see balancer).
	RejoinSettle time.Duration
	SlowStart    time.Duration
	// AdminTokenFile holds the token that authorizes admin actions; ""
	// when there is none (then only loopback admin addresses are
	// allowed).
	AdminTokenFile string

	// Proxy holds the L7 proxy's settings (session locations, timeouts,
	// limits).
	Proxy Proxy

	ShutdownTimeout time.Duration
	// HandoffSocket is where a successor finds this process ("" for
	// nowhere); with Takeover, where this process finds its predecessor.
	HandoffSocket string
	Takeover      bool
	// StateFile keeps operators' changes and moved sessions across plain
	// restarts ("" for nowhere).
	StateFile string
	Pprof     bool
	// AccessLog is where a line per request goes ("-": standard
	// output; empty: nowhere), in AccessLogFormat.
	AccessLog       string
	AccessLogFormat accesslog.Format
	// LogJSON writes logs as JSON lines instead of logfmt text.
	LogJSON  bool
	LogLevel slog.Level

	HealthInterval time.Duration
	// HealthFastInterval paces the probes of a member in doubt (see
	// health.Options.FastInterval); at most HealthInterval.
	HealthFastInterval time.Duration
	HealthURI          string
	HealthTimeout      time.Duration
	HealthFall         int
	HealthRise         int

	// L4 configures the XDP datapath; L4.Iface is empty when it is off.
	L4 L4

	// Membership follows the cluster's heartbeats; off when Group is not
	// valid.
	Membership Membership

	// Peers makes this instance one of a tier; off when Peers.Listen is
	// not valid.
	Peers Peers
}

// CertSpec is a --tls-cert file and the --tls-key in the same position.
type CertSpec struct {
	CertFile, KeyFile string
}

// Proxy is the L7 proxy's part of the configuration, field by flag.
type Proxy struct {
	Sticky              session.Config // --sticky, --sticky-separator
	MaxAttempts         int            // --max-attempts; one per member when 0
	ConnectTimeout      time.Duration  // --connect-timeout
	BackendTimeout      time.Duration  // --backend-timeout
	BackendIdleTimeout  time.Duration  // --backend-idle-timeout
	MaxConnsPerBackend  int            // --max-conns-per-backend
	ClientHeaderTimeout time.Duration  // --client-header-timeout
	ClientBodyTimeout   time.Duration  // --client-body-timeout
	ClientIdleTimeout   time.Duration  // --client-idle-timeout
	ClientSendTimeout   time.Duration  // --client-send-timeout
	MaxHeaderBytes      int            // --max-header-bytes
	MaxClientConns      int            // --max-client-conns
	TrustedProxies      []netip.Prefix // --trusted-proxy, masked, IPv4-mapped ones unmapped
	BufferRequests      int64          // --buffer-requests
}

// Membership configures following Tomcat's McastService heartbeats.
type Membership struct {
	Group  netip.AddrPort
	Iface  string
	Allow  []netip.Prefix // empty: the prefixes of Iface's addresses
	Domain string
	// AnyDomain (--membership-domain '*'): heartbeats of every domain
	// count, and each backend without domain= takes its member's.
	AnyDomain bool
	DropTime  time.Duration
	Rate      uint32 // beacons per second per source the XDP filter lets through
}

// DefaultHandoffSocket is where a running catherd waits for its successor.
const DefaultHandoffSocket = "/run/catherd/handoff.sock"

// DefaultBufferRequests is --buffer-requests' default: an upload of up to
// a megabyte (most forms, most files a Tomcat application takes) reaches
// a member whole, however slowly the client sends it, as nginx's request
// buffering does; Tomcat's threads never wait on a slow client for it.
const DefaultBufferRequests = 1 << 20

// MaxBufferRequests bounds --buffer-requests: held bodies live in memory.
const MaxBufferRequests = 64 << 20

// DefaultAdmin is where the admin API listens, and where catherd status
// looks for it.
const DefaultAdmin = "127.0.0.1:9181"

// FlagError is a usage error naming its flag: main prints it and exits 2.
type FlagError = cliflag.Error

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// levelFlag is --log-level: slog's levels by their lower-case names, with
// an error in catherd's words (slog's own names a "level string").
type levelFlag struct{ l *slog.Level }

func (f levelFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.ToLower(f.l.String())
}

func (f levelFlag) Set(v string) error {
	if err := f.l.UnmarshalText([]byte(v)); err != nil || strings.ContainsAny(v, "+-") {
		return fmt.Errorf("want debug, info, warn or error")
	}
	return nil
}

// rawFlags holds what flags give before it is checked and turned into a
// Config.
type rawFlags struct {
	listen, tlsListen, tlsCert, tlsKey, backends, l4, l4hash, mcastAllow, trustedProxies, peers listFlag
	sticky, sep, mcastGroup, scope, logFormat, accessLogFormat, peerListen                      string
}

// RunFlags describes the flags of `catherd run`, for help texts and the
// documents generated from them (the man page, shell completion).
func RunFlags() []cliflag.Flag {
	return cliflag.Flags(newFlagSet(&Config{}, &rawFlags{}))
}

// Parse reads `catherd run` arguments. It returns flag.ErrHelp when help was
// asked for (the usage text has then been written to usage).
func Parse(args []string, usage io.Writer) (*Config, error) {
	c := &Config{}
	var r rawFlags
	fs := newFlagSet(c, &r)
	if err := cliflag.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, usage)
		}
		return nil, err
	}
	return c, c.validate(fs, &r)
}

// newFlagSet declares the flags of `catherd run`, each writing into c or r.
func newFlagSet(c *Config, r *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("catherd run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.Check, "check", false, "check the flags and exit: every value, the certificates and admin token files, the interfaces\nand the XDP program (loaded into the kernel, not attached); binds no address (exit 0, or 2 with the error)")
	fs.Var(&r.listen, "listen", "`ADDR` to accept HTTP clients on, e.g. :80 or 127.0.0.1:8080 (repeatable; default :8080)")
	fs.Var(&r.tlsListen, "tls-listen", "`ADDR` to accept TLS clients on, HTTP/1.1 or HTTP/2 (repeatable; needs --tls-cert and --tls-key)")
	fs.Var(&r.tlsCert, "tls-cert", "PEM `FILE` with a certificate and its chain (repeatable: the first is the default, others are chosen by SNI);\nreread with its key on SIGHUP, without dropping connections")
	fs.Var(&r.tlsKey, "tls-key", "PEM `FILE` with the private key of the --tls-cert in the same position (repeatable)")
	fs.Var(&r.backends, "backend", "a backend member, `NAME=URL[,OPTION...]` (repeatable, at least one):\nNAME=http://HOST:PORT[,route=R][,weight=1..100][,status=+D|+S|+N|+H][,domain=D][,member=IP], or\nNAME=ajp://HOST:PORT,secret=S[,packet-size=8192..65536][,ping=C|P|I|A|none] plus the same options;\nroute defaults to NAME and must match the Tomcat jvmRoute")
	fs.StringVar(&r.sticky, "sticky", "JSESSIONID|jsessionid", "session id locations as `COOKIE|pathparam`, or off to disable stickiness")
	fs.StringVar(&r.sep, "sticky-separator", ".", "one character (`C`) between session id and route (WebLogic uses !)")
	fs.StringVar(&c.LBMethod, "lbmethod", "byrequests", "`METHOD` by which new sessions are balanced: "+strings.Join(balancer.Methods, "|"))
	fs.StringVar(&c.Metrics, "metrics", "127.0.0.1:9180", "`ADDR` of the Prometheus /metrics endpoint (empty disables it)")
	fs.StringVar(&c.Admin, "admin", DefaultAdmin, "`ADDR` of the admin API (GET /api/v1/status, read by catherd status); keep it on loopback (empty disables it)")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "`FILE` holding the token that admin actions must carry (Authorization: Bearer); required when --admin is not on loopback")
	fs.DurationVar(&c.RejoinSettle, "rejoin-settle", 5*time.Second, "a member that returns (after failing its health checks, or being disabled) takes no requests until it has been healthy, enabled and in its replication group this long")
	fs.DurationVar(&c.SlowStart, "slow-start", 30*time.Second, "after settling, a returning member's share of new sessions ramps up to its weight over this long (0: at once)")
	fs.BoolVar(&c.NoFailover, "nofailover", false, "answer 503 instead of moving a session whose member is unusable")
	fs.StringVar(&r.scope, "failover-scope", "domain", "where (`SCOPE`) a session may move: domain (members of its member's replication domain, which hold its copies) or any")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 30*time.Minute, "a moved session stays on the member it moved to until idle this long (match the session timeout)")
	fs.IntVar(&c.SessionTableSize, "session-table-size", 262144, "moved sessions remembered at most (least recently used forgotten first)")
	fs.IntVar(&c.Proxy.MaxAttempts, "max-attempts", 0, "members tried per request on connect errors (0 = every member once)")
	fs.DurationVar(&c.Retry, "retry", 60*time.Second, "how long a failed member is skipped before it is tried again")
	fs.DurationVar(&c.Proxy.ConnectTimeout, "connect-timeout", 5*time.Second, "timeout to connect to a backend")
	fs.DurationVar(&c.Proxy.BackendTimeout, "backend-timeout", 60*time.Second, "longest silence from a backend while sending it a request or reading its response")
	fs.DurationVar(&c.Proxy.BackendIdleTimeout, "backend-idle-timeout", 15*time.Second, "close pooled backend connections idle this long (keep it below the backend's keep-alive timeout; Tomcat's is 20s)")
	fs.IntVar(&c.Proxy.MaxConnsPerBackend, "max-conns-per-backend", 1024, "connections to one backend at most; requests beyond wait up to --connect-timeout")
	fs.DurationVar(&c.Proxy.ClientHeaderTimeout, "client-header-timeout", 10*time.Second, "a request head must arrive whole within this long of the connection's start (or of a later request's first byte),\nhowever slowly it trickles; else 408 and close (a connection that sent nothing is closed without a response)")
	fs.DurationVar(&c.Proxy.ClientBodyTimeout, "client-body-timeout", 60*time.Second, "longest silence from a client sending a request body (or in an upgraded connection); else 408 and close")
	fs.DurationVar(&c.Proxy.ClientIdleTimeout, "client-idle-timeout", 60*time.Second, "close a kept-alive client connection after this long without a request (no response is written)")
	fs.DurationVar(&c.Proxy.ClientSendTimeout, "client-send-timeout", 60*time.Second, "longest stall writing a response to a client before the connection is closed")
	fs.IntVar(&c.Proxy.MaxHeaderBytes, "max-header-bytes", 16384, "largest request head (request line + headers) accepted; larger gets 431, or 414 when the request line alone is")
	c.Proxy.BufferRequests = DefaultBufferRequests
	fs.Var(sizeFlag{&c.Proxy.BufferRequests}, "buffer-requests", "request bodies up to this `SIZE` are read whole before a member is chosen, so that a slow upload holds no backend thread;\nlarger ones stream (bodies up to 64KiB are always read whole; 256MiB of held bodies at most in all)")
	fs.IntVar(&c.Proxy.MaxClientConns, "max-client-conns", 65536, "client connections open at once, all listeners and tunnels together; more wait in the kernel's accept queue until one ends")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "on SIGTERM/SIGINT, or after handing over to a successor, how long in-flight requests may finish")
	fs.Var(&r.trustedProxies, "trusted-proxy", "a proxy in front of catherd, as `CIDR` or IP (repeatable): from such a peer, X-Forwarded-For is kept with the peer's\naddress appended, and X-Forwarded-Proto and -Host are kept; from any other, all three are replaced")
	fs.StringVar(&c.HandoffSocket, "handoff-socket", DefaultHandoffSocket, "unix socket `PATH` on which a successor (--takeover, SIGUSR2 or catherd reload) takes over the listening sockets and state (empty: none)")
	fs.StringVar(&c.StateFile, "state-file", "", "`PATH` of a file that keeps what operators changed at run time (flags, weights) and the moved sessions, saved as they change and applied at a start without a predecessor to take over from (empty: none)")
	fs.BoolVar(&c.Takeover, "takeover", false, "take over from the catherd serving --handoff-socket: its listening sockets, member states and moved sessions; it then drains and exits (starts afresh if none is running)")

	fs.BoolVar(&c.Pprof, "pprof", false, "also serve Go profiles under /debug/pprof/ on the --metrics address")
	fs.StringVar(&r.logFormat, "log-format", "text", "log lines in this `FORMAT`: text (key=value) or json")
	fs.StringVar(&c.AccessLog, "access-log", "", "`PATH` of the access log, a line per request (- for standard output; empty: none); reopened on SIGUSR1")
	fs.StringVar(&r.accessLogFormat, "access-log-format", "combined", "access log lines in this `FORMAT`: combined (Apache's, plus member, sticky outcome, attempts, times) or json")
	c.LogLevel = slog.LevelInfo
	fs.Var(levelFlag{&c.LogLevel}, "log-level", "least severe `LEVEL` logged: debug, info, warn or error")
	fs.DurationVar(&c.HealthInterval, "health-interval", 5*time.Second, "probe every member this often (0 disables health checks)")
	fs.DurationVar(&c.HealthFastInterval, "health-fast-interval", time.Second, "probe a member this often while its state is in doubt: from a failed request or probe until --health-fall\nfailures mark it down, or until a probe passes (and while a down member rises); at most --health-interval")
	fs.StringVar(&c.HealthURI, "health-uri", "/", "`PATH` the probe GETs; a 5xx, a timeout, a connect error or a refused AJP secret fails it")
	fs.DurationVar(&c.HealthTimeout, "health-timeout", 2*time.Second, "longest wait for one probe")
	fs.IntVar(&c.HealthFall, "health-fall", 2, "consecutive failed probes that mark a member down")
	fs.IntVar(&c.HealthRise, "health-rise", 2, "consecutive passed probes that bring a down member back")

	fs.StringVar(&c.L4.Iface, "xdp-iface", "", "network interface (`IF`) to attach the XDP datapath to (needed by --l4)")
	fs.StringVar(&c.L4.Mode, "xdp-mode", "native", "XDP attach `MODE`: native (in the driver) or generic (any device, slower)")
	fs.Var(&r.l4, "l4", "an L4 `SERVICE` steered in XDP by client IP, with L2 direct server return (repeatable):\nVIP:PORT/tcp|udp=IP[:WEIGHT],IP[:WEIGHT],... (IPv6 in brackets); backends hold the VIP on lo;\nhealth is a TCP connect to IP:PORT every --health-interval")
	fs.Var(&r.l4hash, "l4-hash", "flow key (`KEY`) of --l4 services: ip (every connection of a client meets one backend) or ip+port;\nMODE for all services or VIP:PORT/PROTO=MODE for one (repeatable; default ip)")
	c.L4.ConntrackSize = DefaultConntrackSize
	fs.Func("conntrack-size", fmt.Sprintf("how many flows (`N`) the XDP connection table holds (LRU) (default %d)", DefaultConntrackSize), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("want a whole number of flows, 1 or more")
		}
		c.L4.ConntrackSize = uint32(n)
		return nil
	})
	fs.StringVar(&c.L4.PinDir, "xdp-pin-dir", DefaultXDPPinDir, "bpffs `DIR` for the pinned XDP link and maps, which keep flows across restarts")

	fs.StringVar(&r.mcastGroup, "membership", "", "follow the Tomcat cluster's membership heartbeats (McastService) on `GROUP:PORT`, e.g. 228.0.0.4:45564;\nmembers out of the group get no new sessions; needs --membership-iface")
	fs.StringVar(&c.Membership.Iface, "membership-iface", "", "interface (`IF`) the heartbeats arrive on: joined to the group, and its XDP filter drops bad beacons")
	fs.Var(&r.mcastAllow, "membership-allow", "source prefix (`CIDR`) whose beacons are accepted (repeatable; default: the prefixes of --membership-iface's addresses)")
	fs.StringVar(&c.Membership.Domain, "membership-domain", "", "the cluster's `DOMAIN` attribute; beacons of other domains are dropped. '*': every domain, and a --backend without domain= is in the domain its heartbeats name")
	fs.DurationVar(&c.Membership.DropTime, "membership-drop-time", 3*time.Second, "a member silent this long is out of the group (keep it equal to the cluster's dropTime)")
	fs.Func("membership-rate", "beacons per second (`N`) a source may send before the XDP filter drops the excess (default 10; Tomcat sends 2)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("want a whole number of beacons per second")
		}
		c.Membership.Rate = uint32(n)
		return nil
	})
	declarePeerFlags(fs, c, r)
	return fs
}

// validate checks what the flags gave and fills the rest of c.
func (c *Config) validate(fs *flag.FlagSet, r *rawFlags) error {
	if fs.NArg() > 0 {
		return &FlagError{Err: fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	for _, spec := range r.l4 {
		svc, err := parseL4Service(spec)
		if err != nil {
			return &FlagError{Flag: "l4", Err: err}
		}
		c.L4.Services = append(c.L4.Services, svc)
	}
	if err := applyL4Hash(r.l4hash, c.L4.Services); err != nil {
		return &FlagError{Flag: "l4-hash", Err: err}
	}
	if err := validateL4(&c.L4); err != nil {
		return err
	}
	if err := parseMembership(&c.Membership, r.mcastGroup, r.mcastAllow); err != nil {
		return err
	}
	if err := parsePeers(&c.Peers, r.peerListen, r.peers); err != nil {
		return err
	}
	// An instance may steer L4 services only; it then runs no HTTP proxy.
	l4Only := len(r.backends) == 0 && len(c.L4.Services) > 0
	c.Listen, c.TLSListen = r.listen, r.tlsListen
	if len(c.Listen) == 0 && len(c.TLSListen) == 0 && !l4Only {
		c.Listen = []string{":8080"}
	}
	for _, f := range []struct {
		name  string
		addrs []string
	}{{"listen", c.Listen}, {"tls-listen", c.TLSListen}} {
		if l4Only && len(f.addrs) > 0 {
			return &FlagError{Flag: f.name, Err: errors.New("an HTTP listener needs at least one --backend")}
		}
		for _, l := range f.addrs {
			if _, _, err := net.SplitHostPort(l); err != nil {
				return &FlagError{Flag: f.name, Err: fmt.Errorf("want HOST:PORT, got %q", l)}
			}
		}
	}
	if err := c.parseTLS(r.tlsCert, r.tlsKey); err != nil {
		return err
	}
	if len(r.sep) != 1 {
		return &FlagError{Flag: "sticky-separator", Err: fmt.Errorf("want one character, got %q", r.sep)}
	}
	var err error
	if c.Proxy.Sticky, err = session.ParseSticky(r.sticky, r.sep[0]); err != nil {
		return &FlagError{Flag: "sticky", Err: err}
	}
	if len(r.backends) == 0 && !l4Only {
		return &FlagError{Flag: "backend", Err: errors.New("at least one backend is required (or --l4 services only)")}
	}
	if len(r.backends) > balancer.MaxMembers {
		return &FlagError{Flag: "backend", Err: fmt.Errorf("at most %d backends", balancer.MaxMembers)}
	}
	for _, spec := range r.backends {
		b, err := ParseMember(spec, c.Members)
		if err != nil {
			return &FlagError{Flag: "backend", Err: err}
		}
		c.Members = append(c.Members, b)
	}
	if c.Peers.Listen.IsValid() && len(c.Members) == 0 {
		return &FlagError{Flag: "peer-listen", Err: errors.New("a tier shares the state of the --backend members: give at least one")}
	}
	switch r.scope {
	case "domain":
	case "any":
		c.AnyDomain = true
	default:
		return &FlagError{Flag: "failover-scope", Err: fmt.Errorf("want domain or any, got %q", r.scope)}
	}
	if c.SessionTTL <= 0 {
		return &FlagError{Flag: "session-ttl", Err: errors.New("must be positive")}
	}
	if err := c.checkAdmin(); err != nil {
		return err
	}
	if c.SessionTableSize <= 0 {
		return &FlagError{Flag: "session-table-size", Err: errors.New("must be positive")}
	}
	if _, err := balancer.NewPolicy(c.LBMethod, nil); err != nil {
		return &FlagError{Flag: "lbmethod", Err: err}
	}
	for _, v := range r.trustedProxies {
		p, err := parsePeerPrefix(v)
		if err != nil {
			return &FlagError{Flag: "trusted-proxy", Err: err}
		}
		c.Proxy.TrustedProxies = append(c.Proxy.TrustedProxies, p)
	}
	if c.Proxy.MaxAttempts < 0 {
		return &FlagError{Flag: "max-attempts", Err: errors.New("must be 0 or more")}
	}
	if c.Proxy.MaxAttempts == 0 || c.Proxy.MaxAttempts > len(c.Members) {
		c.Proxy.MaxAttempts = len(c.Members)
	}
	for name, d := range map[string]time.Duration{"retry": c.Retry, "shutdown-timeout": c.ShutdownTimeout, "health-interval": c.HealthInterval,
		"rejoin-settle": c.RejoinSettle, "slow-start": c.SlowStart} {
		if d < 0 {
			return &FlagError{Flag: name, Err: errors.New("must not be negative")}
		}
	}
	for name, d := range map[string]time.Duration{"connect-timeout": c.Proxy.ConnectTimeout, "backend-timeout": c.Proxy.BackendTimeout,
		"backend-idle-timeout": c.Proxy.BackendIdleTimeout, "client-header-timeout": c.Proxy.ClientHeaderTimeout,
		"client-body-timeout": c.Proxy.ClientBodyTimeout, "client-idle-timeout": c.Proxy.ClientIdleTimeout,
		"client-send-timeout": c.Proxy.ClientSendTimeout, "health-timeout": c.HealthTimeout, "health-fast-interval": c.HealthFastInterval} {
		if d <= 0 {
			return &FlagError{Flag: name, Err: errors.New("must be positive")}
		}
	}
	c.HealthFastInterval = min(c.HealthFastInterval, c.HealthInterval)
	if !strings.HasPrefix(c.HealthURI, "/") {
		return &FlagError{Flag: "health-uri", Err: fmt.Errorf("want a path starting with /, got %q", c.HealthURI)}
	}
	for name, n := range map[string]int{"max-conns-per-backend": c.Proxy.MaxConnsPerBackend, "max-client-conns": c.Proxy.MaxClientConns,
		"health-fall": c.HealthFall, "health-rise": c.HealthRise} {
		if n <= 0 {
			return &FlagError{Flag: name, Err: errors.New("must be positive")}
		}
	}
	if c.Membership.Group.IsValid() {
		for _, b := range c.Members {
			if !b.ClusterHost.IsValid() {
				return &FlagError{Flag: "backend", Err: fmt.Errorf("%s: --membership matches backends by address; give member=IP for a backend named by host name", b.Name)}
			}
		}
	}
	if c.AccessLogFormat, err = accesslog.ParseFormat(r.accessLogFormat); err != nil {
		return &FlagError{Flag: "access-log-format", Err: err}
	}
	switch r.logFormat {
	case "text":
	case "json":
		c.LogJSON = true
	default:
		return &FlagError{Flag: "log-format", Err: fmt.Errorf("want text or json, got %q", r.logFormat)}
	}
	if c.Takeover && c.HandoffSocket == "" {
		return &FlagError{Flag: "takeover", Err: errors.New("needs a --handoff-socket to find the running catherd on")}
	}
	if c.Pprof && c.Metrics == "" {
		return &FlagError{Flag: "pprof", Err: errors.New("needs a --metrics address to serve on")}
	}
	if c.Proxy.BufferRequests > MaxBufferRequests {
		return &FlagError{Flag: "buffer-requests", Err: fmt.Errorf("at most %s", formatSize(MaxBufferRequests))}
	}
	if c.Proxy.MaxHeaderBytes < 1024 || c.Proxy.MaxHeaderBytes > 1<<20 {
		return &FlagError{Flag: "max-header-bytes", Err: errors.New("must be between 1024 and 1048576")}
	}
	return nil
}

// parseTLS pairs --tls-cert and --tls-key files; the files are read when
// catherd starts.
func (c *Config) parseTLS(certFiles, keyFiles []string) error {
	switch {
	case len(c.TLSListen) == 0 && len(certFiles)+len(keyFiles) > 0:
		return &FlagError{Flag: "tls-cert", Err: errors.New("certificates are for --tls-listen, which is not given")}
	case len(c.TLSListen) > 0 && len(certFiles) == 0:
		return &FlagError{Flag: "tls-listen", Err: errors.New("needs --tls-cert and --tls-key")}
	case len(certFiles) != len(keyFiles):
		return &FlagError{Flag: "tls-key", Err: fmt.Errorf("%d --tls-cert but %d --tls-key: give one key per certificate, in the same order", len(certFiles), len(keyFiles))}
	}
	for i := range certFiles {
		c.TLSCerts = append(c.TLSCerts, CertSpec{CertFile: certFiles[i], KeyFile: keyFiles[i]})
	}
	return nil
}

// parseMember reads a --backend: NAME=URL[,key=value...].
// ParseMember reads a member as --backend gives it (NAME=URL[,options]),
// also for a member added at run time (catherd member add): its name,
// route and URL must differ from those of others.
func ParseMember(spec string, others []MemberSpec) (MemberSpec, error) {
	b, err := parseMember(spec)
	if err != nil {
		return MemberSpec{}, err
	}
	// One Tomcat behind two names would get twice its share, and a
	// session could fail over from it to itself.
	for _, o := range others {
		switch {
		case o.Name == b.Name:
			return MemberSpec{}, fmt.Errorf("duplicate name %q", b.Name)
		case o.Route == b.Route:
			return MemberSpec{}, fmt.Errorf("%s and %s share route %q: routes must be unique", o.Name, b.Name, b.Route)
		case o.URL() == b.URL():
			return MemberSpec{}, fmt.Errorf("%s and %s have the same URL %s: each member is one Tomcat", o.Name, b.Name, b.URL())
		}
	}
	b.Spec = spec
	return b, nil
}

// URL is how the member is reached, as compared for uniqueness
// (scheme://host:port, the host in lower case).
func (b MemberSpec) URL() string { return b.Scheme + "://" + strings.ToLower(b.Addr) }

func parseMember(spec string) (MemberSpec, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return MemberSpec{}, fmt.Errorf("want NAME=http://HOST:PORT[,route=R][,weight=N][,status=+H], got %q", spec)
	}
	if strings.ContainsAny(name, " \t,/\"") {
		return MemberSpec{}, fmt.Errorf("name %q: no spaces, commas, slashes or quotes", name)
	}
	fields := strings.Split(rest, ",")
	u, err := url.Parse(fields[0])
	if err != nil || u.Host == "" {
		return MemberSpec{}, fmt.Errorf("%s: want a URL like http://10.0.0.1:8080, got %q", name, fields[0])
	}
	if u.Scheme != "http" && u.Scheme != "ajp" {
		return MemberSpec{}, fmt.Errorf("%s: scheme %q is not supported (want http or ajp)", name, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return MemberSpec{}, fmt.Errorf("%s: the URL names a host and port only, got %q", name, fields[0])
	}
	// No default port: Tomcat's HTTP connector is on 8080 and AJP's on
	// 8009, not on the schemes' usual ports, so a URL without one is
	// most likely a mistake.
	if u.Port() == "" {
		return MemberSpec{}, fmt.Errorf("%s: %s has no port: give the connector's, e.g. %s://%s:%s", name, fields[0], u.Scheme, u.Host,
			map[string]string{"http": "8080", "ajp": "8009"}[u.Scheme])
	}
	b := MemberSpec{Name: name, Scheme: u.Scheme, Addr: u.Host, Route: name, Weight: 1}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		b.ClusterHost = a
	}
	isAJP := u.Scheme == "ajp"
	if isAJP {
		// mod_jk's advice: CPING new connections and ones idle a while.
		b.PacketSize, b.Ping = ajp.DefaultPacketSize, ajp.PingConnect|ajp.PingPrepost
	}
	var hasSecret bool
	for _, kv := range fields[1:] {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "route":
			if value == "" || strings.ContainsAny(value, " \t;") {
				return MemberSpec{}, fmt.Errorf("%s: bad route %q", name, value)
			}
			b.Route = value
		case "weight":
			w, err := strconv.Atoi(value)
			if err != nil || w < 1 || w > 100 {
				return MemberSpec{}, fmt.Errorf("%s: weight must be 1..100, got %q", name, value)
			}
			b.Weight = w
		case "status":
			if b.Flags, err = balancer.ParseFlags(value); err != nil {
				return MemberSpec{}, fmt.Errorf("%s: %v", name, err)
			}
		case "domain":
			if strings.ContainsAny(value, " \t") {
				return MemberSpec{}, fmt.Errorf("%s: bad domain %q", name, value)
			}
			b.Domain, b.DomainSet = value, true
		case "member":
			a, err := netip.ParseAddr(value)
			if err != nil {
				return MemberSpec{}, fmt.Errorf("%s: member=%q: want the member's IP address in the cluster's heartbeats", name, value)
			}
			b.ClusterHost = a
		case "secret", "packet-size", "ping":
			if !isAJP {
				return MemberSpec{}, fmt.Errorf("%s: %s applies to ajp:// backends only", name, key)
			}
			switch key {
			case "secret":
				b.Secret, hasSecret = value, value != ""
			case "packet-size":
				n, err := strconv.Atoi(value)
				if err != nil || n < ajp.MinPacketSize || n > ajp.MaxPacketSize {
					return MemberSpec{}, fmt.Errorf("%s: packet-size must be %d..%d (and equal Tomcat's packetSize), got %q", name, ajp.MinPacketSize, ajp.MaxPacketSize, value)
				}
				b.PacketSize = n
			case "ping":
				if b.Ping, err = ajp.ParsePingMode(value); err != nil {
					return MemberSpec{}, fmt.Errorf("%s: %v", name, err)
				}
			}
		default:
			return MemberSpec{}, fmt.Errorf("%s: unknown option %q (want route, weight, status, domain, member; for ajp also secret, packet-size, ping)", name, key)
		}
	}
	// Tomcat requires a secret on AJP connectors by default since 9.0.31
	// (CVE-2020-1938); a member without one would answer 403 to everything.
	if isAJP && !hasSecret {
		return MemberSpec{}, fmt.Errorf("%s: ajp:// needs secret=S (the connector's secret attribute)", name)
	}
	return b, nil
}

// parsePeerPrefix reads a prefix that peer addresses are matched against:
// CIDR, or one address. Peers are compared unmapped (an IPv4 client of an
// IPv6 socket is its IPv4 address), so an IPv4-mapped IPv6 prefix is taken
// as the IPv4 prefix it maps.
func parsePeerPrefix(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if !strings.Contains(v, "/") {
		var a netip.Addr
		if a, err = netip.ParseAddr(v); err == nil {
			p, err = a.Prefix(a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want a CIDR prefix or an IP address, like 10.0.0.0/8 or 2001:db8::1, got %q", v)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s: an IPv4-mapped prefix needs /96 or longer", v)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: catherd run [flags]\n\nRuns the balancer in the foreground until SIGTERM or SIGINT.\n\nFlags:\n")
	cliflag.PrintDefaults(fs, w)
}

// checkAdmin refuses an admin address off loopback without a token file:
// the admin API changes what the balancer does. (The token is read, and
// checked, when catherd starts: see admin.LoadToken.)
func (c *Config) checkAdmin() error {
	if c.Admin == "" || c.AdminTokenFile != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Admin)
	if err != nil {
		return &FlagError{Flag: "admin", Err: err}
	}
	if ip, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !ip.IsLoopback()) {
		return &FlagError{Flag: "admin", Err: fmt.Errorf("%s is not a loopback address: give --admin-token-file too", c.Admin)}
	}
	return nil
}
