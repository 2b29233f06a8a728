package membership

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// Beacons are accepted from the prefixes given, else from the network of
// the interface they arrive on.
func TestAllowedSources(t *testing.T) {
	given := []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface:", err)
	}
	if got := AllowedSources(given, lo); !slices.Equal(got, given) {
		t.Errorf("given prefixes: %v", got)
	}
	if got := AllowedSources(nil, lo); !slices.Contains(got, netip.MustParsePrefix("127.0.0.0/8")) {
		t.Errorf("lo's prefixes: %v, want 127.0.0.0/8 among them", got)
	}
	if got := AllowedSources(nil, nil); got != nil {
		t.Errorf("no interface: %v", got)
	}
}
