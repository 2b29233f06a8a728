// Package membership follows a Tomcat cluster's own membership by listening
// to the heartbeat ("beacon") that Tomcat's McastService multicasts every
// 500 ms, so catherd learns which backends are up from the cluster itself
// instead of only from its own health checks.
//
// The beacon codec and the member table (beacon.go, table.go) are pure
// logic: they open no socket, start no goroutine and never read the clock.
// Their caller reads datagrams and passes the receive time in, which makes
// every behaviour (including the drop-time boundary) testable exactly. The
// Watcher (watcher.go) is that caller: the socket side, which joins the
// group, feeds the table and marks balancer members isolated while their
// host is out of the group.
//
// Beacons carry no authentication: anyone on the segment can announce a
// member, make one restart or make one leave. Filter the multicast group at
// the network edge; this package only bounds the damage (see Config.MaxMembers).
package membership

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Wire constants, as written by Tomcat's MemberImpl.getData (Tomcat 9 and 10.1).
const (
	beginMarker = "TRIBES-B\x01\x00"
	endMarker   = "TRIBES-E\x01\x00"
	markerLen   = len(beginMarker)

	// frameOverhead is everything outside the body: both markers and the
	// 4-byte body length.
	frameOverhead = 2*markerLen + 4

	// fixedBody is the part of the body whose size does not depend on its
	// content: alive 8, port 4, securePort 4, udpPort 4, host length 1,
	// command length 4, domain length 4, uniqueId 16, payload length 4.
	fixedBody = 8 + 4 + 4 + 4 + 1 + 4 + 4 + 16 + 4
)

// MaxSize is the largest datagram Decode accepts. It is Tomcat's
// McastServiceImpl.MAX_PACKET_SIZE: a beacon is one UDP datagram and Tomcat
// neither sends nor receives more. A caller that reads into a buffer of
// MaxSize+1 bytes can tell an oversized datagram from a full-sized one.
const MaxSize = 65535

// ShutdownCommand is the command a member sends once when its membership
// service stops (Tomcat's Member.SHUTDOWN_PAYLOAD, bytes 66 65 66 89 45 65 76
// 69 88). Receivers drop the member at once instead of waiting for the drop
// time.
const ShutdownCommand = "BABY-ALEX"

// Beacon is one decoded heartbeat.
//
// Beacons filled by Decode alias the decoded datagram: Command, Domain and
// Payload are sub-slices of it (capacity-limited, so appending to them never
// overwrites the datagram). Copy what must outlive the receive buffer; Table
// copies nothing from a Beacon, so it is safe to reuse the buffer after
// Table.Observe returns.
type Beacon struct {
	// AliveMillis is the sender's membership-service uptime in
	// milliseconds, not a wall-clock time. It is kept as the raw signed
	// value so that every beacon re-encodes to the same bytes.
	AliveMillis int64
	// Port is the member's TCP replication receiver port (e.g. 4000).
	Port int32
	// SecurePort and UDPPort are -1 when not configured (Tomcat's default).
	SecurePort int32
	UDPPort    int32
	// Host is the member's address as raw 4 (IPv4) or 16 (IPv6) bytes.
	// A 16-byte IPv4-mapped address stays a 16-byte address, so it
	// re-encodes unchanged.
	Host netip.Addr
	// Command is empty in ordinary heartbeats; see IsShutdown.
	Command []byte
	// Domain is the cluster's domain attribute, empty by default.
	Domain []byte
	// UniqueID is random per start of the sender: a restarted node is a
	// new member even on the same host and port.
	UniqueID [16]byte
	// Payload is application data, empty by default.
	Payload []byte
}

// IsShutdown reports whether the beacon announces that its sender is
// shutting down.
func (b *Beacon) IsShutdown() bool {
	return string(b.Command) == ShutdownCommand
}

// ErrMalformed is matched (with errors.Is) by every error Decode returns.
var ErrMalformed = errors.New("membership: malformed beacon")

// malformed is a Decode error. The reasons are constants so that rejecting
// a flood of garbage datagrams allocates nothing.
type malformed string

func (m malformed) Error() string        { return "membership: malformed beacon: " + string(m) }
func (m malformed) Is(target error) bool { return target == ErrMalformed }

const (
	errTooLarge      = malformed("longer than a datagram")
	errBeginMarker   = malformed("missing begin marker")
	errTruncated     = malformed("shorter than the frame")
	errBodyLength    = malformed("body length beyond the datagram")
	errEndMarker     = malformed("missing end marker after the body")
	errTrailing      = malformed("bytes after the end marker")
	errShortBody     = malformed("body shorter than its fixed fields")
	errHostLength    = malformed("host length is not 4 or 16")
	errCommandLength = malformed("command overruns the body")
	errDomainLength  = malformed("domain overruns the body")
	errUniqueID      = malformed("uniqueId overruns the body")
	errPayloadLength = malformed("payload overruns the body")
	errBodyNotFilled = malformed("bytes after the payload inside the body")
)

// Decode parses one datagram into dst. On error dst is left unchanged.
//
// The datagram must hold exactly one beacon: Tomcat sends one per datagram,
// so bytes after the end marker are rejected rather than ignored (Tomcat
// itself ignores them, but nothing legitimate produces them). Datagrams that
// do not start with the begin marker are also rejected; on Tomcat's group
// those are channel broadcasts, not membership.
//
// Decode does not allocate; see Beacon for how dst aliases b.
func Decode(b []byte, dst *Beacon) error {
	if len(b) > MaxSize {
		return errTooLarge
	}
	if len(b) < markerLen || string(b[:markerLen]) != beginMarker {
		return errBeginMarker
	}
	if len(b) < frameOverhead {
		return errTruncated
	}
	bodyLen := uint64(binary.BigEndian.Uint32(b[markerLen:]))
	if bodyLen > uint64(len(b)-frameOverhead) {
		return errBodyLength
	}
	bodyEnd := markerLen + 4 + int(bodyLen)
	if string(b[bodyEnd:bodyEnd+markerLen]) != endMarker {
		return errEndMarker
	}
	if bodyEnd+markerLen != len(b) {
		return errTrailing
	}

	body := b[markerLen+4 : bodyEnd]
	if len(body) < fixedBody {
		// From here on the fixed fields up to the host length are there,
		// and so is room for a 16-byte host (fixedBody counts 28 bytes
		// after the host length).
		return errShortBody
	}
	var bc Beacon
	bc.AliveMillis = int64(binary.BigEndian.Uint64(body))
	bc.Port = int32(binary.BigEndian.Uint32(body[8:]))
	bc.SecurePort = int32(binary.BigEndian.Uint32(body[12:]))
	bc.UDPPort = int32(binary.BigEndian.Uint32(body[16:]))
	hostLen := int(body[20])
	rest := body[21:]
	switch {
	case hostLen != 4 && hostLen != 16:
		return errHostLength
	case hostLen == 4:
		bc.Host = netip.AddrFrom4([4]byte(rest))
	default:
		bc.Host = netip.AddrFrom16([16]byte(rest))
	}
	rest = rest[hostLen:]

	var ok bool
	if bc.Command, rest, ok = lengthPrefixed(rest); !ok {
		return errCommandLength
	}
	if bc.Domain, rest, ok = lengthPrefixed(rest); !ok {
		return errDomainLength
	}
	if len(rest) < len(bc.UniqueID) {
		return errUniqueID
	}
	rest = rest[copy(bc.UniqueID[:], rest):]
	if bc.Payload, rest, ok = lengthPrefixed(rest); !ok {
		return errPayloadLength
	}
	if len(rest) != 0 {
		return errBodyNotFilled
	}
	*dst = bc
	return nil
}

// lengthPrefixed splits a 4-byte big-endian length and that many bytes off
// the front of b. The field is capacity-limited so that appending to it
// cannot overwrite what follows in the datagram. ok is false when the length
// prefix or the field does not fit in b.
func lengthPrefixed(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, b, false
	}
	n := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if n > uint64(len(b)) {
		return nil, b, false
	}
	return b[:n:n], b[n:], true
}

// Append appends the encoding of b to dst and returns the extended slice,
// byte for byte as Tomcat would send it. It validates nothing: it exists so
// that tests, fuzzing and spoofing checks can build beacons, and a Beacon
// that did not come from Decode (an invalid Host, say) may encode to bytes
// that Decode rejects.
func Append(dst []byte, b *Beacon) []byte {
	var host []byte
	switch {
	case b.Host.Is4():
		a := b.Host.As4()
		host = a[:]
	case b.Host.IsValid():
		a := b.Host.As16()
		host = a[:]
	}
	bodyLen := fixedBody + len(host) + len(b.Command) + len(b.Domain) + len(b.Payload)

	dst = append(dst, beginMarker...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(bodyLen))
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.AliveMillis))
	dst = binary.BigEndian.AppendUint32(dst, uint32(b.Port))
	dst = binary.BigEndian.AppendUint32(dst, uint32(b.SecurePort))
	dst = binary.BigEndian.AppendUint32(dst, uint32(b.UDPPort))
	dst = append(dst, byte(len(host)))
	dst = append(dst, host...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Command)))
	dst = append(dst, b.Command...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Domain)))
	dst = append(dst, b.Domain...)
	dst = append(dst, b.UniqueID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Payload)))
	dst = append(dst, b.Payload...)
	return append(dst, endMarker...)
}
