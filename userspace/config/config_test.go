package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/balancer"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]string{"--backend", "n1=http://10.0.0.1:8080", "--backend", "n2=http://10.0.0.2:8080"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 1 || c.Listen[0] != ":8080" {
		t.Errorf("listen %v", c.Listen)
	}
	if c.Proxy.Sticky.CookieName != "JSESSIONID" || c.Proxy.Sticky.PathParam != "jsessionid" || c.Proxy.Sticky.Separator != '.' {
		t.Errorf("sticky %+v", c.Proxy.Sticky)
	}
	if c.Proxy.MaxAttempts != 2 {
		t.Errorf("max attempts %d, want one per member", c.Proxy.MaxAttempts)
	}
	if c.Members[1].Addr != "10.0.0.2:8080" || c.Members[1].Route != "n2" {
		t.Errorf("backend %+v", c.Members[1])
	}
	// As HAProxy's usual timeout http-request and nginx's client_body_timeout and send_timeout.
	p := c.Proxy
	if p.ClientHeaderTimeout != 10*time.Second || p.ClientBodyTimeout != time.Minute || p.ClientIdleTimeout != time.Minute || p.ClientSendTimeout != time.Minute {
		t.Errorf("client timeouts: header %v body %v idle %v send %v", p.ClientHeaderTimeout, p.ClientBodyTimeout, p.ClientIdleTimeout, p.ClientSendTimeout)
	}
}

func TestParseTLS(t *testing.T) {
	c, err := Parse([]string{"--backend", "n1=http://10.0.0.1:8080", "--tls-listen", ":443",
		"--tls-cert", "a.crt", "--tls-key", "a.key", "--tls-cert", "b.crt", "--tls-key", "b.key"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 0 || len(c.TLSListen) != 1 {
		t.Errorf("listen %v, tls-listen %v: with --tls-listen alone there is no plain listener", c.Listen, c.TLSListen)
	}
	if len(c.TLSCerts) != 2 || c.TLSCerts[1].CertFile != "b.crt" || c.TLSCerts[1].KeyFile != "b.key" {
		t.Errorf("certificates %+v", c.TLSCerts)
	}
}

func TestParseBackendOptions(t *testing.T) {
	b, err := parseMember("tc1=http://[::1]:8080,route=tomcat1,weight=5,status=+H")
	if err != nil {
		t.Fatal(err)
	}
	want := MemberSpec{Name: "tc1", Scheme: "http", Addr: "[::1]:8080", Route: "tomcat1", Weight: 5, Flags: balancer.Standby,
		ClusterHost: netip.MustParseAddr("::1")}
	if b != want {
		t.Fatalf("got %+v, want %+v", b, want)
	}
}

func TestParseAJPBackend(t *testing.T) {
	b, err := parseMember("tc1=ajp://10.0.0.1:8009,secret=s3,packet-size=65536,ping=A,route=tomcat1")
	if err != nil {
		t.Fatal(err)
	}
	want := MemberSpec{Name: "tc1", Scheme: "ajp", Addr: "10.0.0.1:8009", Route: "tomcat1", Weight: 1,
		ClusterHost: netip.MustParseAddr("10.0.0.1"), Secret: "s3", PacketSize: 65536, Ping: ajp.PingConnect | ajp.PingPrepost | ajp.PingInterval}
	if b != want {
		t.Fatalf("got %+v, want %+v", b, want)
	}
}

func TestParseErrorsNameTheFlag(t *testing.T) {
	ok := "--backend=a=http://127.0.0.1:1"
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{ok, "--nosuch"}, "nosuch"},
		{[]string{}, "--backend"},
		{[]string{"--backend", "a"}, "--backend"},
		{[]string{"--backend", "a=ajp://h:8009"}, "--backend"}, // no secret
		{[]string{"--backend", "a=ajp://h:8009,secret=s,packet-size=100"}, "--backend"},
		{[]string{"--backend", "a=ajp://h:8009,secret=s,ping=X"}, "--backend"},
		{[]string{"--backend", "a=http://h:1,secret=s"}, "--backend"},
		{[]string{"--backend", "a=ftp://h:1"}, "--backend"},
		{[]string{"--backend", "a=http://h:1/path"}, "--backend"},
		{[]string{"--backend", "a=http://h:1,weight=0"}, "--backend"},
		{[]string{"--backend", "a=http://h:1,status=+X"}, "--backend"},
		{[]string{"--backend", "a=http://h:1,color=red"}, "--backend"},
		{[]string{"--backend", "a=http://h"}, "--backend"},                                                // no port
		{[]string{ok, "--backend", "b=http://127.0.0.1:1"}, "--backend"},                                  // the same URL twice
		{[]string{ok, "--backend", "a=http://h:2"}, "--backend"},                                          // duplicate name
		{[]string{"--backend", "a=http://h:1,route=r", "--backend", "b=http://h:2,route=r"}, "--backend"}, // duplicate route
		{[]string{ok, "--lbmethod", "random"}, "--lbmethod"},
		{[]string{ok, "--sticky", "a b"}, "--sticky"},
		{[]string{ok, "--sticky-separator", ".."}, "--sticky-separator"},
		{[]string{ok, "--listen", "nocolon"}, "--listen"},
		{[]string{ok, "--retry", "-1s"}, "--retry"},
		{[]string{ok, "--connect-timeout", "0s"}, "--connect-timeout"},
		{[]string{ok, "--client-header-timeout", "0s"}, "--client-header-timeout"},
		{[]string{ok, "--client-body-timeout", "-1s"}, "--client-body-timeout"},
		{[]string{ok, "--client-idle-timeout", "0s"}, "--client-idle-timeout"},
		{[]string{ok, "--client-send-timeout", "0s"}, "--client-send-timeout"},
		{[]string{ok, "--client-timeout", "60s"}, "client-timeout"}, // replaced by the four above
		{[]string{ok, "--max-header-bytes", "10"}, "--max-header-bytes"},
		{[]string{ok, "--max-attempts", "-1"}, "--max-attempts"},
		{[]string{ok, "--log-format", "xml"}, "--log-format"},
		{[]string{ok, "--rejoin-settle", "-1s"}, "--rejoin-settle"},
		{[]string{ok, "--slow-start", "-1s"}, "--slow-start"},
		{[]string{ok, "--admin", ":9181"}, "--admin"},
		{[]string{ok, "--trusted-proxy", "10.0.0.0/33"}, "--trusted-proxy"},
		{[]string{ok, "--trusted-proxy", "proxy.example"}, "--trusted-proxy"},
		{[]string{ok, "--trusted-proxy", "::ffff:0:0/95"}, "--trusted-proxy"},
		{[]string{ok, "--trust-x-forwarded-for"}, "trust-x-forwarded-for"}, // replaced by --trusted-proxy
		{[]string{ok, "extra"}, "extra"},
		{[]string{ok, "--takeover", "--handoff-socket", ""}, "--takeover"},
		{[]string{ok, "--tls-listen", ":443"}, "--tls-listen"},                                             // no certificate
		{[]string{ok, "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "--tls-cert"},                          // no --tls-listen
		{[]string{ok, "--tls-listen", ":443", "--tls-cert", "c.pem"}, "--tls-key"},                         // no key
		{[]string{ok, "--tls-listen", "443", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "--tls-listen"}, // no host:port
		{[]string{ok, "--peer", "10.0.0.2:7946"}, "--peer"},                                                // no --peer-listen
		{[]string{ok, "--peer-key-file", "k"}, "--peer-key-file"},                                          // no --peer-listen
		{[]string{ok, "--peer-listen", "10.0.0.1:7946"}, "--peer-key-file"},                                // off loopback, no key
		{[]string{ok, "--peer-listen", "lb1:7946", "--peer-key-file", "k"}, "--peer-listen"},               // not an IP
		{[]string{ok, "--peer-listen", "127.0.0.1:0"}, "--peer-listen"},                                    // no port
		{[]string{ok, "--peer-listen", "127.0.0.1:7946", "--peer", "lb2"}, "--peer"},                       // no port
		{[]string{ok, "--peer-listen", "127.0.0.1:7946", "--peer-name", "a b"}, "--peer-name"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args, nil)
		var fe *FlagError
		if !errors.As(err, &fe) {
			t.Errorf("%v: got %v, want a FlagError", tt.args, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tt.flag) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q should be one line naming %s", tt.args, msg, tt.flag)
		}
	}
}

// Errors say, in catherd's words, what was expected, and name flags as
// they are written: with two dashes.
func TestParseErrorsSayWhatWasExpected(t *testing.T) {
	ok := "--backend=a=http://127.0.0.1:1"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{ok, "--connect-timeout", "5"}, `--connect-timeout: invalid value "5": want a duration such as 5s, 250ms or 1m30s`},
		{[]string{ok, "--max-attempts", "two"}, `--max-attempts: invalid value "two": want a whole number`},
		{[]string{ok, "--nofailover=maybe"}, `--nofailover: invalid value "maybe": want true or false`},
		{[]string{ok, "--log-level", "verbose"}, `--log-level: invalid value "verbose": want debug, info, warn or error`},
		{[]string{ok, "--conntrack-size", "-1"}, `--conntrack-size: invalid value "-1": want a whole number of flows, 1 or more`},
		{[]string{ok, "--bakend", "b=http://127.0.0.1:2"}, `unknown flag --bakend (did you mean --backend?)`},
		{[]string{ok, "--health-intervall", "1s"}, `unknown flag --health-intervall (did you mean --health-interval?)`},
		{[]string{ok, "--frobnicate"}, `unknown flag --frobnicate`},
		{[]string{ok, "--listen"}, `--listen: needs a value`},
		{[]string{"--backend", "a=http://127.0.0.1"}, `--backend: a: http://127.0.0.1 has no port: give the connector's, e.g. http://127.0.0.1:8080`},
		{[]string{"--backend", "a=ajp://tc1,secret=s"}, `e.g. ajp://tc1:8009`},
		{[]string{ok, "--backend", "b=HTTP://127.0.0.1:1"}, `--backend: a and b have the same URL http://127.0.0.1:1: each member is one Tomcat`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want %q", tt.args, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), " -") && !strings.Contains(err.Error(), " --") {
			t.Errorf("%v: %q names a flag with one dash", tt.args, err)
		}
	}
	c, err := Parse([]string{ok, "--log-level", "warn"}, nil)
	if err != nil || c.LogLevel != slog.LevelWarn {
		t.Errorf("--log-level warn: %v, %v", c, err)
	}
}

func TestParsePeers(t *testing.T) {
	c, err := Parse([]string{"--backend=a=http://127.0.0.1:1", "--peer-listen", "10.0.0.1:7946", "--peer-key-file", "/etc/catherd/peer.key",
		"--peer", "lb2.example:7946", "--peer", "[2001:db8::2]:7946", "--peer-name", "lb1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Peers{Listen: netip.MustParseAddrPort("10.0.0.1:7946"), Seeds: []string{"lb2.example:7946", "[2001:db8::2]:7946"},
		KeyFile: "/etc/catherd/peer.key", Name: "lb1"}
	if !reflect.DeepEqual(c.Peers, want) {
		t.Errorf("got %+v, want %+v", c.Peers, want)
	}
	// On loopback a tier may run without a key.
	if c, err = Parse([]string{"--backend=a=http://127.0.0.1:1", "--peer-listen", "127.0.0.1:7946"}, nil); err != nil || c.Peers.KeyFile != "" {
		t.Errorf("loopback without a key: %+v, %v", c.Peers, err)
	}
	if c, err = Parse([]string{"--backend=a=http://127.0.0.1:1"}, nil); err != nil || c.Peers.Listen.IsValid() {
		t.Errorf("no tier by default: %+v, %v", c.Peers, err)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	c, err := Parse([]string{"--backend", "a=http://127.0.0.1:1", "--trusted-proxy", "10.1.2.3", "--trusted-proxy", "192.168.7.9/16",
		"--trusted-proxy", "2001:db8::1", "--trusted-proxy", "2001:db8:1::/48", "--trusted-proxy", "::ffff:172.16.0.0/108",
		"--trusted-proxy", "::ffff:10.9.9.9"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Proxy.TrustedProxies {
		got = append(got, p.String())
	}
	// Masked; IPv4-mapped ones as the IPv4 prefixes peers are compared with.
	want := []string{"10.1.2.3/32", "192.168.0.0/16", "2001:db8::1/128", "2001:db8:1::/48", "172.16.0.0/12", "10.9.9.9/32"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestHelpListsEveryFlagWithDefault(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"--listen", "--backend", "--sticky ", "--lbmethod", "--nofailover", "--max-attempts",
		"--retry", "--metrics", "(default 1m0s)", "(default byrequests)", `(default JSESSIONID|jsessionid)`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// The README's flag tables list exactly the flags `catherd run --help`
// prints: a flag added, renamed or removed must be documented.
func TestREADMEFlagTablesMatchHelp(t *testing.T) {
	var help bytes.Buffer
	Parse([]string{"--help"}, &help)
	flagName := regexp.MustCompile(`--[a-z0-9-]+`)
	inHelp := map[string]bool{}
	for _, line := range strings.Split(help.String(), "\n") {
		if strings.HasPrefix(line, "  --") {
			inHelp[flagName.FindString(line)] = true
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inREADME := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		// A table row naming flags in its first cell; \| inside a cell
		// is not a cell border.
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|")
		if len(cells) > 2 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			for _, f := range flagName.FindAllString(cells[1], -1) {
				inREADME[f] = true
			}
		}
	}
	for f := range inHelp {
		if !inREADME[f] {
			t.Errorf("%s is in catherd run --help but in no README flag table", f)
		}
	}
	for f := range inREADME {
		if !inHelp[f] {
			t.Errorf("%s is in a README flag table but not a flag of catherd run", f)
		}
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"65536": 65536, "64K": 64 << 10, "64KiB": 64 << 10, "1m": 1 << 20, "1MiB": 1 << 20, "2G": 2 << 30, "0": 0, "12B": 12} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5M", "1T", "M"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	for n, want := range map[int64]string{1 << 20: "1MiB", 64 << 10: "64KiB", 1000: "1000", 3 << 30: "3GiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
