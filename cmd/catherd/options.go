package main

import (
	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/proxy"
	"github.com/catherd/catherd/userspace/xdp"
)

// The configuration is plain values; these map it onto the options of the
// parts it configures.

// proxyOptions are the L7 proxy's options: its flags, and the access log
// (nil without --access-log).
func proxyOptions(c config.Proxy, accessLog *accesslog.Log) proxy.Options {
	return proxy.Options{
		Sticky:              c.Sticky,
		MaxAttempts:         c.MaxAttempts,
		ConnectTimeout:      c.ConnectTimeout,
		BackendTimeout:      c.BackendTimeout,
		BackendIdleTimeout:  c.BackendIdleTimeout,
		MaxConnsPerBackend:  c.MaxConnsPerBackend,
		ClientHeaderTimeout: c.ClientHeaderTimeout,
		ClientBodyTimeout:   c.ClientBodyTimeout,
		ClientIdleTimeout:   c.ClientIdleTimeout,
		ClientSendTimeout:   c.ClientSendTimeout,
		MaxHeaderBytes:      c.MaxHeaderBytes,
		MaxClientConns:      c.MaxClientConns,
		TrustedProxies:      c.TrustedProxies,
		BufferRequests:      c.BufferRequests,
		AccessLog:           accessLog,
	}
}

// target is how the proxy reaches a member: its address, and over AJP the
// connector's settings.
func target(s config.MemberSpec) proxy.Target {
	t := proxy.Target{Addr: s.Addr}
	if s.Scheme == "ajp" {
		t.AJP = &ajp.ClientOptions{Secret: s.Secret, PacketSize: s.PacketSize, Ping: s.Ping}
	}
	return t
}

// certPairs are the certificate and key files of --tls-cert and --tls-key.
func certPairs(specs []config.CertSpec) []certs.Pair {
	pairs := make([]certs.Pair, len(specs))
	for i, s := range specs {
		pairs[i] = certs.Pair{CertFile: s.CertFile, KeyFile: s.KeyFile}
	}
	return pairs
}

// l4Services are the --l4 services as the datapath takes them.
func l4Services(specs []config.L4ServiceSpec) []xdp.L4Service {
	services := make([]xdp.L4Service, len(specs))
	for i, s := range specs {
		services[i] = xdp.L4Service{VIP: s.VIP, Port: s.Port, Proto: xdp.TCP, HashPort: s.HashPort}
		if s.Proto == "udp" {
			services[i].Proto = xdp.UDP
		}
		for _, b := range s.Backends {
			services[i].Backends = append(services[i].Backends, xdp.L4Backend{Addr: b.Addr, Weight: b.Weight})
		}
	}
	return services
}
