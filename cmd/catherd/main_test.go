package main

import (
	"bytes"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/balancer"
)

func TestBadUsageExitsTwoWithOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ok := "--backend=a=http://127.0.0.1:1"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", ok, "--bogus"}, "bogus"},
		{[]string{"run", "--backend", "broken"}, "--backend"},
		{[]string{"run", ok, "--listen", busy.Addr().String()}, "--listen " + busy.Addr().String()},
		{[]string{"run", ok, "--listen", "127.0.0.1:0", "--metrics", busy.Addr().String()}, "--metrics"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"run", "--xdp-iface", "nope0", "--l4", "192.0.2.1:80/tcp=192.0.2.11"}, "--xdp-iface nope0: no such interface"},
		{[]string{"run", "--xdp-iface", "lo", "--l4", "192.0.2.1:80/tcp=192.0.2.11"}, "--l4 192.0.2.1:80/tcp: VIP 192.0.2.1 is not an address of this host"},
		{[]string{"run", "--xdp-iface", "lo", "--l4", "127.0.0.1:80/tcp=127.0.0.2"}, "is an address of this host, not a backend"},
		{[]string{"run", ok, "--admin", "0.0.0.0:9181"}, "--admin: 0.0.0.0:9181 is not a loopback address: give --admin-token-file too"},
		{[]string{"run", ok, "--admin-token-file", "/nonexistent/token"}, "--admin-token-file: open /nonexistent/token"},
		{[]string{"member", "frob", "a"}, "want list, add NAME=URL, remove NAME, or one of enable"},
		{[]string{"member", "weight", "a"}, "want list, add NAME=URL, remove NAME, or one of enable"},
		{[]string{"member", "add"}, "want list, add NAME=URL, remove NAME"},
		{[]string{"member", "remove", "a", "b"}, "want list, add NAME=URL, remove NAME"},
		{[]string{"member", "enable", "a", "--nope"}, "unknown flag --nope"},
		{[]string{"member", "list", "--amdin", "x"}, "unknown flag --amdin (did you mean --admin?)"},
		{[]string{"status", "extra"}, `catherd status: unexpected argument "extra"`},
	}
	// A catherd running on this host must not change the outcome: each
	// run gets a hand-off socket of its own.
	socket := "--handoff-socket=" + filepath.Join(t.TempDir(), "handoff.sock")
	for _, tt := range tests {
		if tt.args[0] == "run" {
			tt.args = append(tt.args, socket)
		}
		var stdout, stderr bytes.Buffer
		code := dispatch(tt.args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", tt.args, code, msg, tt.want)
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"member", "help"}, {"member", "--help"}, {"status", "-h"}, {"unload", "--help"}} {
		var stdout, stderr bytes.Buffer
		code := dispatch(args, &stdout, &stderr)
		out := stdout.String()
		if code != 0 || !strings.Contains(out, "Usage: catherd "+args[0]) || !strings.Contains(out, "  --") {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
		// Flags are written as everywhere else: --admin, never -admin.
		if regexp.MustCompile(`(?m)^\s+-[a-z]`).MatchString(out) {
			t.Errorf("%v: a flag with one dash in:\n%s", args, out)
		}
	}
}

// catherd member against a live admin API: flags after the words, actions
// answered with the member, errors with the API's message.
func TestMemberCommand(t *testing.T) {
	a := balancer.NewMember("a", "a", 1, 0)
	b := balancer.NewMember("b", "b", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.Handler(admin.Sources{Pool: pool}, ""))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	run := func(args ...string) (int, string, string) { return runCLI(append([]string{"member"}, args...)...) }
	if code, out, _ := run("evacuate", "a", "--admin", addr); code != 0 || !strings.Contains(out, "a has no request in flight") ||
		a.Flags() != balancer.Disabled {
		t.Fatalf("evacuate a: %d %q, flags %v", code, out, a.Flags())
	}
	if code, _, errOut := run("evacuate", "b", "--admin", addr); code != 1 || !strings.Contains(errOut, "cannot evacuate b") {
		t.Fatalf("evacuate the last member: %d %q", code, errOut)
	}
	if code, _, errOut := run("enable", "c", "--admin", addr); code != 1 || !strings.Contains(errOut, `no member "c" (members: a, b)`) {
		t.Fatalf("enable c: %d %q", code, errOut)
	}
	if code, out, _ := run("--admin", addr, "weight", "b", "5", "--json"); code != 0 || !strings.Contains(out, `"weight": 5`) {
		t.Fatalf("weight: %d %q", code, out)
	}
	if code, out, _ := run("list", "--admin", addr); code != 0 || !regexp.MustCompile(`(?m)^a\s+a\s+disabled\s+D\s+1\s`).MatchString(out) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	// Requests in flight hold evacuate until they end, or until --wait.
	b.Begin()
	a.SetFlags(0)
	if code, _, errOut := run("evacuate", "b", "--admin", addr, "--wait", "300ms"); code != 1 || !strings.Contains(errOut, "still has requests in flight after 300ms: here:1") {
		t.Fatalf("evacuate with a request in flight: %d %q", code, errOut)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		b.End(0, 0)
	}()
	if code, _, errOut := run("evacuate", "b", "--admin", addr, "--wait", "5s"); code != 0 {
		t.Fatalf("evacuate once the request ended: %d %q", code, errOut)
	}
}
