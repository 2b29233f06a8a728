package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := dispatch(tt.args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", tt.args, code, msg, tt.want)
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"run", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--backend") {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
}
