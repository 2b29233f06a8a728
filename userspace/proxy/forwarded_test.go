package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp/ajptest"
)

// forwardedSeen sends raw to the proxy at addr and returns the values of
// the X-Forwarded-* lines in the request the member got, by name, in
// order.
func forwardedSeen(t *testing.T, addr string, b *recBackend, raw string) map[string][]string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, raw)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	seen := b.requests()
	if len(seen) == 0 {
		t.Fatal("the member saw no request")
	}
	got := map[string][]string{}
	head, _, _ := strings.Cut(seen[len(seen)-1], "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if name, v, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(name, "X-Forwarded-") {
			got[name] = append(got[name], v)
		}
	}
	return got
}

func trust(prefixes ...string) func(*Options) {
	return func(o *Options) {
		for _, p := range prefixes {
			o.TrustedProxies = append(o.TrustedProxies, netip.MustParsePrefix(p))
		}
	}
}

// forged is what a client, or a proxy in front, may send.
const forged = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n"

// From a peer outside --trusted-proxy, X-Forwarded-* are catherd's one
// value each, however often the client sent its own; from a trusted one,
// the chain it sent (repeats joined) gets the peer appended, and its
// X-Forwarded-Proto and -Host are kept, or set when it sent none. IPv4,
// IPv6, and IPv4 peers of an IPv6 socket (compared unmapped).
func TestForwardedFieldsByTrust(t *testing.T) {
	tests := []struct {
		name, listen, dial string // dial: the address to dial on the listener's port
		trusted            []string
		raw                string
		want               map[string][]string
	}{
		{"untrusted IPv4", "127.0.0.1:0", "", []string{"10.0.0.0/8", "::1/128"}, forged,
			map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}},
		{"untrusted, repeated", "127.0.0.1:0", "", nil, forged + forged,
			map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}},
		{"trusted IPv4", "127.0.0.1:0", "", []string{"10.0.0.0/8", "127.0.0.0/8"}, forged,
			map[string][]string{"X-Forwarded-For": {"203.0.113.7, 10.0.0.1, 127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"shop.example"}}},
		{"trusted, nothing sent", "127.0.0.1:0", "", []string{"127.0.0.1/32"}, "",
			map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}},
		{"untrusted IPv6", "[::1]:0", "", []string{"2001:db8::/32", "127.0.0.0/8"}, forged,
			map[string][]string{"X-Forwarded-For": {"::1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}},
		{"trusted IPv6", "[::1]:0", "", []string{"::1/128"}, forged,
			map[string][]string{"X-Forwarded-For": {"203.0.113.7, 10.0.0.1, ::1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"shop.example"}}},
		{"trusted IPv4 on an IPv6 socket", "[::]:0", "127.0.0.1", []string{"127.0.0.0/8"}, forged,
			map[string][]string{"X-Forwarded-For": {"203.0.113.7, 10.0.0.1, 127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"shop.example"}}},
		{"untrusted IPv4 on an IPv6 socket", "[::]:0", "127.0.0.1", []string{"::/0"}, forged,
			map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRecBackend(t)
			r := startRig(t, rigOptions{listen: tt.listen, tweak: trust(tt.trusted...)}, [2]string{"a", b.ln.Addr().String()})
			addr := r.addr
			if tt.dial != "" {
				_, port, _ := net.SplitHostPort(r.addr)
				addr = net.JoinHostPort(tt.dial, port)
			}
			got := forwardedSeen(t, addr, b, "GET / HTTP/1.1\r\nHost: x\r\n"+tt.raw+"\r\n")
			for name, v := range tt.want {
				if !slices.Equal(got[name], v) {
					t.Errorf("%s: %q, want %q", name, got[name], v)
				}
			}
		})
	}
}

// Over AJP the remote address is the TCP peer, trusted proxy or not, as
// over HTTP the member's peer is catherd; the chain goes in
// X-Forwarded-For, for the container to resolve (RemoteIpValve).
func TestAJPRemoteAddrIsThePeer(t *testing.T) {
	type seen struct{ addr, xff string }
	got := make(chan seen, 1)
	m := ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		got <- seen{string(r.RemoteAddr), string(r.Header("X-Forwarded-For"))}
		w.WriteHeader(200)
	})
	r := startRig(t, rigOptions{ajpSecret: testSecret, tweak: trust("127.0.0.0/8")}, m)
	r.do("GET", "/", nil, "X-Forwarded-For", "203.0.113.7")
	if s := <-got; s.addr != "127.0.0.1" || s.xff != "203.0.113.7, 127.0.0.1" {
		t.Fatalf("remote address %q, X-Forwarded-For %q", s.addr, s.xff)
	}
}
