package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Peers makes this instance one of a tier of catherd instances that share
// operator actions and moved sessions (userspace/peers); off when Listen
// is not valid.
type Peers struct {
	// Listen is --peer-listen: where the tier's gossip (UDP and TCP)
	// reaches this instance.
	Listen netip.AddrPort
	// Seeds are the --peer addresses (HOST:PORT) joined at start; any
	// live one is enough.
	Seeds []string
	// KeyFile is --peer-key-file, read when catherd starts; "" only on a
	// loopback Listen.
	KeyFile string
	// Name is --peer-name; "" means the host name (looked up when catherd
	// starts: config does no I/O).
	Name string
}

// maxPeerName is the longest --peer-name (userspace/peers' bound).
const maxPeerName = 128

func declarePeerFlags(fs *flag.FlagSet, c *Config, r *rawFlags) {
	fs.StringVar(&r.peerListen, "peer-listen", "", "`IP:PORT` (UDP and TCP) on which this instance joins a tier of catherd instances that share operator actions and\nmoved sessions (off when empty); needs --peer-key-file unless IP is loopback")
	fs.Var(&r.peers, "peer", "`HOST:PORT` of another instance's --peer-listen, joined at start (repeatable; any live one is enough)")
	fs.StringVar(&c.Peers.KeyFile, "peer-key-file", "", "`FILE` holding the tier's key, 16, 24 or 32 bytes in base64 (head -c 32 /dev/urandom | base64): it encrypts\nand authenticates everything peers say; the same on every instance")
	fs.StringVar(&c.Peers.Name, "peer-name", "", "this instance's `NAME` in the tier, unique there (default: the host name)")
}

// parsePeers checks the --peer flags.
func parsePeers(p *Peers, listen string, seeds []string) error {
	if listen == "" {
		for _, f := range []struct {
			name  string
			given bool
		}{{"peer", len(seeds) > 0}, {"peer-key-file", p.KeyFile != ""}, {"peer-name", p.Name != ""}} {
			if f.given {
				return &FlagError{Flag: f.name, Err: errors.New("needs --peer-listen: this instance is not in a tier without it")}
			}
		}
		return nil
	}
	a, err := netip.ParseAddrPort(listen)
	if err != nil || a.Port() == 0 {
		return &FlagError{Flag: "peer-listen", Err: fmt.Errorf("want IP:PORT with a port, like 10.0.0.5:7946, got %q", listen)}
	}
	p.Listen = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if p.KeyFile == "" && !p.Listen.Addr().IsLoopback() {
		return &FlagError{Flag: "peer-key-file", Err: fmt.Errorf("required with --peer-listen %s: without a key anyone who reaches it could read and change the tier's state (only a loopback address may do without)", listen)}
	}
	for _, s := range seeds {
		host, port, err := net.SplitHostPort(s)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			return &FlagError{Flag: "peer", Err: fmt.Errorf("want HOST:PORT of a peer's --peer-listen, got %q", s)}
		}
		p.Seeds = append(p.Seeds, s)
	}
	if len(p.Name) > maxPeerName || strings.ContainsAny(p.Name, " \t\n") {
		return &FlagError{Flag: "peer-name", Err: fmt.Errorf("at most %d bytes, no white space, got %q", maxPeerName, p.Name)}
	}
	return nil
}
