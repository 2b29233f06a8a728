package xdp

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
)

// Reasons names the datapath's verdict reasons, indexed as enum reason in
// bpf/consts.h (TestConstantsMatchC checks the two lists agree).
var Reasons = []string{
	"forwarded",
	"pass_not_ip",
	"pass_not_service",
	"pass_truncated",
	"drop_fragment",
	"drop_malformed",
	"drop_unsupported",
	"drop_no_backend",
	"drop_no_egress",
	"pass_beacon",
	"drop_beacon_source",
	"drop_beacon_malformed",
	"drop_beacon_domain",
	"drop_beacon_rate",
}

// Stats is a snapshot of the datapath's counters, summed over CPUs.
type Stats struct {
	Services []ServiceStats
	// Verdicts counts packets by reason (see Reasons); every packet the
	// program saw is counted under exactly one. "forwarded" is the sum over
	// the current backends (the program counts forwarded packets per backend).
	Verdicts map[string]uint64
}

// ServiceStats are one service's counters.
type ServiceStats struct {
	Service    string // "10.0.0.1:80/tcp"
	HashPort   bool
	Packets    uint64 // forwarded plus NoBackend
	Bytes      uint64 // forwarded, whole frames
	ConnHits   uint64 // packets of flows found in the connection table
	ConnMisses uint64 // packets that took a Maglev lookup
	NoBackend  uint64 // packets dropped for want of a usable backend
	Backends   []BackendStats
}

// BackendStats are one backend's counters within its service.
type BackendStats struct {
	Addr     netip.Addr
	Usable   bool
	Packets  uint64
	Bytes    uint64
	ConnHits uint64
}

// statMaps are the maps a snapshot reads.
type statMaps struct {
	services, backends, serviceStats, backendStats, verdicts *ebpf.Map
}

// Stats reads the running datapath's counters.
func (d *Datapath) Stats() (Stats, error) {
	m := &d.objs.catherdMaps
	return readStats(statMaps{m.Services, m.Backends, m.ServiceStats, m.BackendStats, m.Verdicts})
}

// ReadPinnedStats reads the counters of the datapath pinned in dir, which
// need not belong to this process: `catherd status` uses it, and it works
// while no catherd runs (the program keeps steering then).
func ReadPinnedStats(dir string) (Stats, error) {
	open := func(name string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		return m, nil
	}
	var sm statMaps
	for _, x := range []struct {
		m    **ebpf.Map
		name string
	}{{&sm.services, "services"}, {&sm.backends, "backends"}, {&sm.serviceStats, "service_stats"},
		{&sm.backendStats, "backend_stats"}, {&sm.verdicts, "verdicts"}} {
		m, err := open(x.name)
		if err != nil {
			return Stats{}, err
		}
		defer m.Close()
		*x.m = m
	}
	return readStats(sm)
}

func readStats(sm statMaps) (Stats, error) {
	st := Stats{Verdicts: map[string]uint64{}}
	var counts []uint64
	for i, name := range Reasons {
		if err := sm.verdicts.Lookup(uint32(i), &counts); err != nil {
			return Stats{}, fmt.Errorf("read verdicts: %w", err)
		}
		st.Verdicts[name] = sum(counts, func(n uint64) uint64 { return n })
	}

	pos := map[uint32]int{} // service index -> position in st.Services
	var vk catherdVipKey
	var svc catherdService
	it := sm.services.Iterate()
	for it.Next(&vk, &svc) {
		s := L4Service{VIP: addrFrom(vk.Addr.Bytes, uint32(vk.Family)), Port: ntohs(vk.Port), Proto: Proto(vk.Proto)}
		var per []catherdServiceCounters
		if err := sm.serviceStats.Lookup(svc.Index, &per); err != nil {
			return Stats{}, fmt.Errorf("read service counters: %w", err)
		}
		pos[svc.Index] = len(st.Services)
		noBackend := sum(per, func(c catherdServiceCounters) uint64 { return c.NoBackend })
		st.Services = append(st.Services, ServiceStats{
			Service:    s.String(),
			HashPort:   svc.Flags&serviceHashPort != 0,
			Packets:    noBackend,
			ConnMisses: sum(per, func(c catherdServiceCounters) uint64 { return c.ConnMisses }),
			NoBackend:  noBackend,
		})
	}
	if err := it.Err(); err != nil {
		return Stats{}, fmt.Errorf("read services: %w", err)
	}

	var bi uint32
	var b catherdBackend
	bit := sm.backends.Iterate()
	for bit.Next(&bi, &b) {
		i, ok := pos[b.Service]
		if b.Family == 0 || !ok {
			continue
		}
		s := &st.Services[i]
		var per []catherdBackendCounters
		if err := sm.backendStats.Lookup(bi, &per); err != nil {
			return Stats{}, fmt.Errorf("read backend counters: %w", err)
		}
		bs := BackendStats{
			Addr:     addrFrom(b.Addr.Bytes, b.Family),
			Usable:   b.Flags&backendUsable != 0,
			Packets:  sum(per, func(c catherdBackendCounters) uint64 { return c.Packets }),
			Bytes:    sum(per, func(c catherdBackendCounters) uint64 { return c.Bytes }),
			ConnHits: sum(per, func(c catherdBackendCounters) uint64 { return c.ConnHits }),
		}
		s.Backends = append(s.Backends, bs)
		s.Packets += bs.Packets
		s.Bytes += bs.Bytes
		s.ConnHits += bs.ConnHits
		st.Verdicts["forwarded"] += bs.Packets
	}
	if err := bit.Err(); err != nil {
		return Stats{}, fmt.Errorf("read backends: %w", err)
	}
	sort.Slice(st.Services, func(i, j int) bool { return st.Services[i].Service < st.Services[j].Service })
	for _, s := range st.Services {
		sort.Slice(s.Backends, func(i, j int) bool { return s.Backends[i].Addr.Less(s.Backends[j].Addr) })
	}
	return st, nil
}

func sum[T any](per []T, field func(T) uint64) uint64 {
	var n uint64
	for _, v := range per {
		n += field(v)
	}
	return n
}
