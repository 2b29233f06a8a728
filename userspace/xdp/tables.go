package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/userspace/maglev"
)

// These mirror bpf/consts.h; TestConstantsMatchC checks them.
const (
	familyIPv4      = unix.AF_INET
	familyIPv6      = unix.AF_INET6
	serviceHashPort = 1 << 0
	backendUsable   = 1 << 0
	portTCP         = 1 << 0
	portUDP         = 1 << 1
	noBackend       = maglev.Empty

	membershipAnyDomain = 1 << 0
)

// Proto is an L4 protocol.
type Proto uint8

const (
	TCP Proto = unix.IPPROTO_TCP
	UDP Proto = unix.IPPROTO_UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", uint8(p))
}

// L4Service is one L4 service as the control plane wants it.
type L4Service struct {
	VIP   netip.Addr
	Port  uint16
	Proto Proto
	// HashPort keys flows by client address and port; by default a client
	// address is one flow, so all its connections meet the same backend
	// (nginx ip_hash's affinity).
	HashPort bool
	Backends []L4Backend
}

// String names the service as --l4 does: "10.0.0.1:80/tcp".
func (s L4Service) String() string {
	return netip.AddrPortFrom(s.VIP, s.Port).String() + "/" + s.Proto.String()
}

// L4Backend is one backend of an L4 service. It holds the service's VIP
// on its loopback and answers clients directly.
type L4Backend struct {
	Addr   netip.Addr
	Weight uint32 // share of new flows
	// Usable means healthy, enabled and with a known next hop. An unusable
	// backend takes no new flows, and flows recorded for it move on their
	// next packet: it cannot answer them anyway.
	Usable  bool
	NextHop NextHop
}

// NextHop is where frames for a backend go: out of Ifindex, from SrcMAC to
// DstMAC.
type NextHop struct {
	Ifindex int
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr
}

type serviceKey struct {
	vip   netip.Addr
	port  uint16
	proto Proto
}

type backendKey struct {
	service uint32
	addr    netip.Addr
}

// tables mirrors what the maps hold, so that Sync writes only what changed
// and gives a backend the same index for as long as it exists, across
// restarts too (flows in the connection table refer to it by index).
type tables struct {
	services map[serviceKey]catherdService
	rings    map[uint32][]uint32         // service index -> Maglev table as written; nil: unknown
	inputs   map[uint32][]maglev.Backend // service index -> what its table was built from
	backends map[backendKey]uint32
	entries  map[uint32]catherdBackend // backend index -> entry as written
	staged   map[uint32]catherdBackend // backend index -> entry as wanted (indexes in use)
	vips     map[catherdVipAddr]bool
	ports    map[uint16]uint32 // service_ports entries that are not 0
	egress   map[uint32]bool
}

// readTables learns the state a previous catherd left in the pinned maps.
// Maglev tables are not read back: the first Sync rewrites them whole.
func readTables(m *catherdMaps) (*tables, error) {
	t := &tables{
		services: map[serviceKey]catherdService{},
		rings:    map[uint32][]uint32{},
		inputs:   map[uint32][]maglev.Backend{},
		backends: map[backendKey]uint32{},
		entries:  map[uint32]catherdBackend{},
		staged:   map[uint32]catherdBackend{},
		vips:     map[catherdVipAddr]bool{},
		ports:    map[uint16]uint32{},
		egress:   map[uint32]bool{},
	}
	var vk catherdVipKey
	var svc catherdService
	for it := m.Services.Iterate(); it.Next(&vk, &svc); {
		t.services[serviceKey{addrFrom(vk.Addr.Bytes, uint32(vk.Family)), ntohs(vk.Port), Proto(vk.Proto)}] = svc
	}
	var va catherdVipAddr
	var one uint32
	for it := m.VipAddrs.Iterate(); it.Next(&va, &one); {
		t.vips[va] = true
	}
	var bi uint32
	var b catherdBackend
	it := m.Backends.Iterate()
	for it.Next(&bi, &b) {
		if b.Family != 0 {
			t.backends[backendKey{b.Service, addrFrom(b.Addr.Bytes, b.Family)}] = bi
			t.entries[bi] = b
			t.staged[bi] = b
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read backends map: %w", err)
	}
	var ifindex uint32
	for it := m.Egress.Iterate(); it.Next(&ifindex, &one); {
		t.egress[ifindex] = true
	}
	// service_ports is derived from services rather than read back (65536
	// lookups). A bit left by a catherd that died mid-Sync only sends that
	// port's packets on to the services lookup, which passes them.
	for key := range t.services {
		t.ports[key.port] |= portBit(key.proto)
	}
	return t, nil
}

// Sync makes the maps describe exactly these services. Order matters,
// because the program reads the maps while they change: backends and
// egress devices are written before the Maglev slots that point at them,
// and a new service is published (its services entry) only after its whole
// table is in place; leftovers are removed last.
func (d *Datapath) Sync(services []L4Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, m := d.state, &d.objs.catherdMaps

	wantServices := map[serviceKey]bool{}
	wantBackends := map[backendKey]bool{}
	wantVIPs := map[catherdVipAddr]bool{}
	wantEgress := map[uint32]bool{}
	wantPorts := map[uint16]uint32{}
	for _, s := range services {
		wantPorts[s.Port] |= portBit(s.Proto)
	}
	// Ports open before services appear (and close after they go), so the
	// program's first filter never hides a service.
	if err := d.syncPorts(wantPorts, true); err != nil {
		return err
	}
	for _, s := range services {
		key := serviceKey{s.VIP, s.Port, s.Proto}
		if wantServices[key] {
			return fmt.Errorf("service %s declared twice", s)
		}
		wantServices[key] = true
		svc, known := t.services[key]
		if !known {
			index, err := freeIndex(len(t.services), d.maxServices, func(i uint32) bool {
				for _, s := range t.services {
					if s.Index == i {
						return true
					}
				}
				return false
			})
			if err != nil {
				return fmt.Errorf("service %s: %w (at most %d services)", s, err, d.maxServices)
			}
			if err := zeroPerCPU[catherdServiceCounters](m.ServiceStats, index); err != nil {
				return err
			}
			svc = catherdService{Index: index, RingBase: index * d.ringSize, RingSize: d.ringSize}
			delete(t.rings, index)
			delete(t.inputs, index)
		}
		svc.Flags = 0
		if s.HashPort {
			svc.Flags |= serviceHashPort
		}

		ring := make([]maglev.Backend, 0, len(s.Backends))
		var unusable []uint32 // entries to write once the ring no longer points at them
		for _, b := range s.Backends {
			bi, err := d.prepareBackend(backendKey{svc.Index, b.Addr}, b, wantBackends)
			if err != nil {
				return fmt.Errorf("service %s: %w", s, err)
			}
			if b.Usable {
				if err := d.writeBackend(bi); err != nil {
					return fmt.Errorf("service %s: %w", s, err)
				}
			} else {
				unusable = append(unusable, bi)
			}
			// Every egress device goes in the map, the program's own
			// included: frames may come in on any device it is attached to.
			if b.Usable {
				wantEgress[uint32(b.NextHop.Ifindex)] = true
				if err := d.syncEgress(uint32(b.NextHop.Ifindex)); err != nil {
					return err
				}
			}
			w := b.Weight
			if !b.Usable {
				w = 0
			}
			ring = append(ring, maglev.Backend{ID: bi, Key: b.Addr.String(), Weight: w})
		}
		if err := d.syncRing(svc, ring); err != nil {
			return fmt.Errorf("service %s: %w", s, err)
		}
		for _, bi := range unusable {
			if err := d.writeBackend(bi); err != nil {
				return fmt.Errorf("service %s: %w", s, err)
			}
		}

		va := catherdVipAddr{Family: family(s.VIP)}
		va.Addr.Bytes = addrBytes(s.VIP)
		wantVIPs[va] = true
		if !t.vips[va] {
			if err := m.VipAddrs.Put(&va, uint32(1)); err != nil {
				return fmt.Errorf("service %s: write vip_addrs: %w", s, err)
			}
			t.vips[va] = true
		}
		if old, ok := t.services[key]; !ok || old != svc {
			vk := catherdVipKey{Port: htons(s.Port), Proto: uint8(s.Proto), Family: uint8(family(s.VIP))}
			vk.Addr.Bytes = addrBytes(s.VIP)
			if err := m.Services.Put(&vk, &svc); err != nil {
				return fmt.Errorf("service %s: write services: %w", s, err)
			}
			t.services[key] = svc
		}
	}
	if err := d.removeLeftovers(wantServices, wantBackends, wantVIPs, wantEgress); err != nil {
		return err
	}
	return d.syncPorts(wantPorts, false)
}

func portBit(p Proto) uint32 {
	if p == TCP {
		return portTCP
	}
	return portUDP
}

// syncPorts writes service_ports: when opening, the union of the old and
// wanted bits; when closing, exactly the wanted bits.
func (d *Datapath) syncPorts(want map[uint16]uint32, opening bool) error {
	t := d.state
	next := map[uint16]uint32{}
	for p, bits := range want {
		next[p] = bits
	}
	if opening {
		for p, bits := range t.ports {
			next[p] |= bits
		}
	} else {
		for p := range t.ports {
			if _, ok := next[p]; !ok {
				next[p] = 0
			}
		}
	}
	for p, bits := range next {
		if t.ports[p] == bits {
			continue
		}
		if err := d.objs.ServicePorts.Put(uint32(p), bits); err != nil {
			return fmt.Errorf("write service_ports: %w", err)
		}
		if bits == 0 {
			delete(t.ports, p)
		} else {
			t.ports[p] = bits
		}
	}
	return nil
}

// prepareBackend gives a backend its index (a new one gets the lowest
// free index and zeroed counters) and stages its entry for writeBackend.
func (d *Datapath) prepareBackend(key backendKey, b L4Backend, want map[backendKey]bool) (uint32, error) {
	t, m := d.state, &d.objs.catherdMaps
	if want[key] {
		return 0, fmt.Errorf("backend %s listed twice", b.Addr)
	}
	want[key] = true
	bi, known := t.backends[key]
	if !known {
		var err error
		bi, err = freeIndex(len(t.backends), d.maxBackends, func(i uint32) bool { _, used := t.staged[i]; return used })
		if err != nil {
			return 0, fmt.Errorf("backend %s: %w (at most %d backends in all)", b.Addr, err, d.maxBackends)
		}
		if err := zeroPerCPU[catherdBackendCounters](m.BackendStats, bi); err != nil {
			return 0, err
		}
		t.backends[key] = bi
	}
	e := catherdBackend{Ifindex: uint32(b.NextHop.Ifindex), Service: key.service, Family: family(b.Addr)}
	if b.Usable {
		e.Flags = backendUsable
	}
	copy(e.Dmac[:], b.NextHop.DstMAC)
	copy(e.Smac[:], b.NextHop.SrcMAC)
	e.Addr.Bytes = addrBytes(b.Addr)
	t.staged[bi] = e
	return bi, nil
}

// writeBackend writes a staged backend entry if it differs from the map's.
// Sync orders the writes: a backend that becomes usable is written before
// the Maglev slots that start pointing at it, one that becomes unusable
// after the slots stop, so no new flow meets a slot whose backend it may
// not use.
func (d *Datapath) writeBackend(bi uint32) error {
	t := d.state
	e := t.staged[bi]
	if old, ok := t.entries[bi]; ok && old == e {
		return nil
	}
	if err := d.objs.Backends.Put(bi, &e); err != nil {
		return fmt.Errorf("backend %s: write backends: %w", addrFrom(e.Addr.Bytes, e.Family), err)
	}
	t.entries[bi] = e
	return nil
}

func (d *Datapath) syncEgress(ifindex uint32) error {
	if d.state.egress[ifindex] {
		return nil
	}
	if err := d.objs.Egress.Put(ifindex, ifindex); err != nil {
		return fmt.Errorf("add egress device %d: %w", ifindex, err)
	}
	d.state.egress[ifindex] = true
	return nil
}

// syncRing rebuilds a service's Maglev table and writes the slots that
// changed: one backend's health flipping touches about 1/N of them. The
// control plane syncs every second; a table whose backends, weights and
// usability did not change is not rebuilt.
func (d *Datapath) syncRing(svc catherdService, backends []maglev.Backend) error {
	if d.state.rings[svc.Index] != nil && slices.Equal(d.state.inputs[svc.Index], backends) {
		return nil
	}
	ring, err := maglev.Build(backends, svc.RingSize)
	if err != nil {
		return fmt.Errorf("build Maglev table: %w", err)
	}
	slots := maglev.Diff(d.state.rings[svc.Index], ring) // every slot when unknown
	if len(slots) > 0 {
		keys := make([]uint32, len(slots))
		values := make([]uint32, len(slots))
		for i, s := range slots {
			keys[i] = svc.RingBase + s
			values[i] = ring[s]
		}
		if _, err := d.objs.Maglev.BatchUpdate(keys, values, nil); err != nil {
			return fmt.Errorf("write Maglev table: %w", err)
		}
	}
	d.state.rings[svc.Index] = ring
	d.state.inputs[svc.Index] = backends
	return nil
}

// removeLeftovers deletes what the last Sync no longer wants: services
// first (unpublished), then their backends, whose flows are purged from the
// connection table so that a later backend given the same index does not
// inherit them.
func (d *Datapath) removeLeftovers(services map[serviceKey]bool, backends map[backendKey]bool,
	vips map[catherdVipAddr]bool, egress map[uint32]bool) error {
	t, m := d.state, &d.objs.catherdMaps
	for key, svc := range t.services {
		if services[key] {
			continue
		}
		vk := catherdVipKey{Port: htons(key.port), Proto: uint8(key.proto), Family: uint8(family(key.vip))}
		vk.Addr.Bytes = addrBytes(key.vip)
		if err := m.Services.Delete(&vk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove service: %w", err)
		}
		delete(t.services, key)
		delete(t.rings, svc.Index)
		delete(t.inputs, svc.Index)
	}
	for va := range t.vips {
		if !vips[va] {
			if err := m.VipAddrs.Delete(&va); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove VIP address: %w", err)
			}
			delete(t.vips, va)
		}
	}
	gone := map[uint32]bool{}
	for key, bi := range t.backends {
		if backends[key] {
			continue
		}
		if err := m.Backends.Put(bi, &catherdBackend{}); err != nil {
			return fmt.Errorf("remove backend %s: %w", key.addr, err)
		}
		delete(t.backends, key)
		delete(t.entries, bi)
		delete(t.staged, bi)
		gone[bi] = true
	}
	if len(gone) > 0 {
		if err := d.purgeFlows(gone); err != nil {
			return err
		}
	}
	for ifindex := range t.egress {
		if !egress[ifindex] {
			if err := m.Egress.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove egress device %d: %w", ifindex, err)
			}
			delete(t.egress, ifindex)
		}
	}
	return nil
}

// purgeFlows deletes connection table entries that point at the given
// backend indexes.
func (d *Datapath) purgeFlows(indexes map[uint32]bool) error {
	var k catherdFlowKey
	var v catherdFlow
	var dead []catherdFlowKey
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		if indexes[v.Backend] {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("scan connection table: %w", err)
	}
	for i := range dead {
		if err := d.objs.Conntrack.Delete(&dead[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("purge connection table: %w", err)
		}
	}
	return nil
}

// freeIndex returns the lowest index below limit that inUse rejects.
func freeIndex(used int, limit uint32, inUse func(uint32) bool) (uint32, error) {
	if uint32(used) >= limit {
		return 0, errors.New("table full")
	}
	for i := uint32(0); i < limit; i++ {
		if !inUse(i) {
			return i, nil
		}
	}
	return 0, errors.New("table full")
}

// zeroPerCPU resets a per-CPU counter slot, so a new service or backend
// does not inherit the counts of the one that had its index before.
func zeroPerCPU[T any](m *ebpf.Map, index uint32) error {
	vals := make([]T, ebpf.MustPossibleCPU())
	if err := m.Put(index, vals); err != nil {
		return fmt.Errorf("reset counters %d: %w", index, err)
	}
	return nil
}

func family(a netip.Addr) uint32 {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// addrBytes lays an address out as union addr does.
func addrBytes(a netip.Addr) [16]byte {
	var b [16]byte
	if a.Is4() {
		v4 := a.As4()
		copy(b[:], v4[:])
		return b
	}
	return a.As16()
}

func addrFrom(b [16]byte, fam uint32) netip.Addr {
	if fam == familyIPv4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// htons and ntohs convert a port between host order and the network-order
// value a little-endian load of packet bytes gives.
func htons(p uint16) uint16 { return p<<8 | p>>8 }
func ntohs(p uint16) uint16 { return p<<8 | p>>8 }
