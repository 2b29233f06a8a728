package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// uid0to15 is a uniqueId whose bytes are their own index, so a field read
// from the wrong offset shows.
const uid0to15 = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"

// tomcatDefaultIPv4 is a beacon written out by hand from the layout in
// Tomcat's MemberImpl.getData: IPv4 member 10.0.0.7, port 4000, no secure or
// UDP port, empty command, domain and payload, 123456 ms uptime.
const tomcatDefaultIPv4 = "TRIBES-B\x01\x00" +
	"\x00\x00\x00\x35" + // body length 53
	"\x00\x00\x00\x00\x00\x01\xe2\x40" + // alive 123456
	"\x00\x00\x0f\xa0" + // port 4000
	"\xff\xff\xff\xff" + // securePort -1
	"\xff\xff\xff\xff" + // udpPort -1
	"\x04" + "\x0a\x00\x00\x07" + // host 10.0.0.7
	"\x00\x00\x00\x00" + // command
	"\x00\x00\x00\x00" + // domain
	uid0to15 +
	"\x00\x00\x00\x00" + // payload
	"TRIBES-E\x01\x00"

// everyFieldIPv6 sets every field to a distinct, non-default value.
const everyFieldIPv6 = "TRIBES-B\x01\x00" +
	"\x00\x00\x00\x48" + // body length 72 = 49 + 16 + 1 + 4 + 2
	"\x01\x02\x03\x04\x05\x06\x07\x08" + // alive
	"\x00\x00\x0f\xa1" + // port 4001
	"\x00\x00\x20\xfb" + // securePort 8443
	"\x00\x00\x0f\xa2" + // udpPort 4002
	"\x10" + "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" + // 2001:db8::1
	"\x00\x00\x00\x01" + "X" + // command
	"\x00\x00\x00\x04" + "prod" + // domain
	uid0to15 +
	"\x00\x00\x00\x02" + "hi" + // payload
	"TRIBES-E\x01\x00"

// tomcatShutdown is tomcatDefaultIPv4 as sent when the member stops.
const tomcatShutdown = "TRIBES-B\x01\x00" +
	"\x00\x00\x00\x3e" + // body length 62
	"\x00\x00\x00\x00\x00\x01\xe2\x40" +
	"\x00\x00\x0f\xa0" +
	"\xff\xff\xff\xff" +
	"\xff\xff\xff\xff" +
	"\x04" + "\x0a\x00\x00\x07" +
	"\x00\x00\x00\x09" + "BABY-ALEX" +
	"\x00\x00\x00\x00" +
	uid0to15 +
	"\x00\x00\x00\x00" +
	"TRIBES-E\x01\x00"

func uid(s string) (u [16]byte) {
	copy(u[:], s)
	return u
}

func TestDecodeHandBuilt(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Beacon
	}{
		{"tomcat default IPv4", tomcatDefaultIPv4, Beacon{
			AliveMillis: 123456, Port: 4000, SecurePort: -1, UDPPort: -1,
			Host: netip.MustParseAddr("10.0.0.7"), UniqueID: uid(uid0to15),
		}},
		{"every field IPv6", everyFieldIPv6, Beacon{
			AliveMillis: 0x0102030405060708, Port: 4001, SecurePort: 8443, UDPPort: 4002,
			Host: netip.MustParseAddr("2001:db8::1"), Command: []byte("X"),
			Domain: []byte("prod"), UniqueID: uid(uid0to15), Payload: []byte("hi"),
		}},
		{"shutdown", tomcatShutdown, Beacon{
			AliveMillis: 123456, Port: 4000, SecurePort: -1, UDPPort: -1,
			Host: netip.MustParseAddr("10.0.0.7"), Command: []byte("BABY-ALEX"),
			UniqueID: uid(uid0to15),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Beacon
			if err := Decode([]byte(tt.in), &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertBeacon(t, &got, &tt.want)
			if enc := Append(nil, &tt.want); string(enc) != tt.in {
				t.Errorf("Append:\n got %q\nwant %q", enc, tt.in)
			}
		})
	}
}

func assertBeacon(t *testing.T, got, want *Beacon) {
	t.Helper()
	if got.AliveMillis != want.AliveMillis {
		t.Errorf("AliveMillis = %d, want %d", got.AliveMillis, want.AliveMillis)
	}
	if got.Port != want.Port || got.SecurePort != want.SecurePort || got.UDPPort != want.UDPPort {
		t.Errorf("ports = %d/%d/%d, want %d/%d/%d", got.Port, got.SecurePort, got.UDPPort,
			want.Port, want.SecurePort, want.UDPPort)
	}
	if got.Host != want.Host {
		t.Errorf("Host = %v, want %v", got.Host, want.Host)
	}
	if !bytes.Equal(got.Command, want.Command) {
		t.Errorf("Command = %q, want %q", got.Command, want.Command)
	}
	if !bytes.Equal(got.Domain, want.Domain) {
		t.Errorf("Domain = %q, want %q", got.Domain, want.Domain)
	}
	if got.UniqueID != want.UniqueID {
		t.Errorf("UniqueID = %x, want %x", got.UniqueID, want.UniqueID)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("Payload = %q, want %q", got.Payload, want.Payload)
	}
}

// TestKnownSizes pins the sizes of real Tomcat beacons (docs/TOMCAT.md).
func TestKnownSizes(t *testing.T) {
	b := Beacon{Port: 4000, SecurePort: -1, UDPPort: -1, Host: netip.MustParseAddr("10.0.0.7")}
	if n := len(Append(nil, &b)); n != 77 {
		t.Errorf("IPv4 default beacon is %d bytes, want 77", n)
	}
	b.Command = []byte(ShutdownCommand)
	if n := len(Append(nil, &b)); n != 86 {
		t.Errorf("shutdown beacon is %d bytes, want 86", n)
	}
	if len(tomcatDefaultIPv4) != 77 || len(tomcatShutdown) != 86 {
		t.Errorf("hand-built fixtures are %d and %d bytes, want 77 and 86",
			len(tomcatDefaultIPv4), len(tomcatShutdown))
	}
}

func TestIsShutdown(t *testing.T) {
	// Tomcat's Member.SHUTDOWN_PAYLOAD, as its source spells it.
	if want := string([]byte{66, 65, 66, 89, 45, 65, 76, 69, 88}); ShutdownCommand != want {
		t.Fatalf("ShutdownCommand = %q, want %q", ShutdownCommand, want)
	}
	for cmd, want := range map[string]bool{
		"BABY-ALEX":     true,
		"":              false,
		"BABY-ALEx":     false,
		"BABY-ALEX\x00": false,
		"BABY-ALE":      false,
	} {
		b := Beacon{Command: []byte(cmd)}
		if got := b.IsShutdown(); got != want {
			t.Errorf("IsShutdown(%q) = %v, want %v", cmd, got, want)
		}
	}
}

// Body builders for malformed shapes the frame-level mutations cannot reach.

func be32(n uint32) string { return string(binary.BigEndian.AppendUint32(nil, n)) }

// field is a length-prefixed field whose declared length may lie.
func field(n uint32, data string) string { return be32(n) + data }

// fixedPrefix is alive, port, securePort and udpPort.
const fixedPrefix = "\x00\x00\x00\x00\x00\x00\x00\x01" + "\x00\x00\x0f\xa0" + "\xff\xff\xff\xff" + "\xff\xff\xff\xff"

const hostV4 = "\x04\x0a\x00\x00\x07"

func frame(body string) string {
	return beginMarker + be32(uint32(len(body))) + body + endMarker
}

func TestDecodeMalformed(t *testing.T) {
	valid := tomcatDefaultIPv4
	mutate := func(at int, c byte) string {
		b := []byte(valid)
		b[at] = c
		return string(b)
	}
	withBodyLen := func(n uint32) string {
		return valid[:markerLen] + be32(n) + valid[markerLen+4:]
	}
	oversize := Append(nil, &Beacon{Host: netip.MustParseAddr("10.0.0.7"), Payload: make([]byte, MaxSize-77+1)})

	tests := []struct {
		name string
		in   string
		want error // nil for the controls that prove the builders are right
	}{
		{"control: valid", valid, nil},
		{"control: built body", frame(fixedPrefix + hostV4 + field(0, "") + field(0, "") + uid0to15 + field(0, "")), nil},
		{"empty", "", errBeginMarker},
		{"half begin marker", "TRIBES", errBeginMarker},
		{"wrong begin marker", mutate(7, 'X'), errBeginMarker},
		{"wrong begin marker version", mutate(8, 2), errBeginMarker},
		{"channel broadcast, not a beacon", "FLT2002" + strings.Repeat("\x00", 70), errBeginMarker},
		{"begin marker only", beginMarker, errTruncated},
		{"no room for the end marker", beginMarker + be32(0) + "TRIBES-E", errTruncated},
		{"body length beyond datagram", withBodyLen(54), errBodyLength},
		{"body length 0xFFFFFFFF", withBodyLen(0xFFFFFFFF), errBodyLength},
		{"truncated datagram", valid[:len(valid)-1], errBodyLength},
		{"body length one short", withBodyLen(52), errEndMarker},
		{"wrong end marker", mutate(len(valid)-3, 'X'), errEndMarker},
		{"wrong end marker version", mutate(len(valid)-1, 1), errEndMarker},
		{"trailing byte", valid + "\x00", errTrailing},
		{"two beacons in one datagram", valid + valid, errTrailing},
		{"longer than a datagram", string(oversize), errTooLarge},
		{"empty body", frame(""), errShortBody},
		{"body shorter than fixed fields", frame(strings.Repeat("\x00", fixedBody-1)), errShortBody},
		{"host length 0", frame(fixedPrefix + "\x00" + field(0, "") + field(0, "") + uid0to15 + field(0, "")), errHostLength},
		{"host length 5", frame(fixedPrefix + "\x05\x0a\x00\x00\x07\x00" + field(0, "") + field(0, "") + uid0to15 + field(0, "")), errHostLength},
		{"host length 255", frame(fixedPrefix + "\xff" + strings.Repeat("\x00", 40)), errHostLength},
		{"command overruns body", frame(fixedPrefix + hostV4 + field(100, "") + field(0, "") + uid0to15 + field(0, "")), errCommandLength},
		{"command length 0xFFFFFFFF", frame(fixedPrefix + hostV4 + field(0xFFFFFFFF, "") + field(0, "") + uid0to15 + field(0, "")), errCommandLength},
		{"domain overruns body", frame(fixedPrefix + hostV4 + field(0, "") + field(50, "ab") + uid0to15 + field(0, "")), errDomainLength},
		{"domain length cut off", frame(fixedPrefix + hostV4 + field(26, strings.Repeat("c", 26))), errDomainLength},
		{"uniqueId overruns body", frame(fixedPrefix + hostV4 + field(12, strings.Repeat("c", 12)) + field(0, "") + uid0to15[:10]), errUniqueID},
		{"payload length cut off", frame(fixedPrefix + hostV4 + field(4, "abcd") + field(0, "") + uid0to15), errPayloadLength},
		{"payload overruns body", frame(fixedPrefix + hostV4 + field(0, "") + field(0, "") + uid0to15 + field(3, "ab")), errPayloadLength},
		{"bytes after payload in body", frame(fixedPrefix + hostV4 + field(0, "") + field(0, "") + uid0to15 + field(0, "") + "x"), errBodyNotFilled},
	}
	sentinel := Beacon{Port: 9, Host: netip.MustParseAddr("192.0.2.9"), Domain: []byte("sentinel")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := sentinel
			err := Decode([]byte(tt.in), &dst)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v, want success", err)
				}
				return
			}
			if err != tt.want {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) = false", err)
			}
			if !strings.HasPrefix(err.Error(), "membership: malformed beacon: ") {
				t.Errorf("error text %q lacks the package prefix", err)
			}
			if dst.Port != sentinel.Port || dst.Host != sentinel.Host || string(dst.Domain) != "sentinel" {
				t.Errorf("dst changed on error: %+v", dst)
			}
		})
	}
}

func TestMaxSizeDecodes(t *testing.T) {
	b := Beacon{Host: netip.MustParseAddr("10.0.0.7"), Payload: make([]byte, MaxSize-77)}
	enc := Append(nil, &b)
	if len(enc) != MaxSize {
		t.Fatalf("encoded %d bytes, want %d", len(enc), MaxSize)
	}
	var got Beacon
	if err := Decode(enc, &got); err != nil {
		t.Fatalf("Decode of a MaxSize beacon: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	beacons := []Beacon{
		{Host: netip.MustParseAddr("10.0.0.7"), Port: 4000, SecurePort: -1, UDPPort: -1},
		{Host: netip.MustParseAddr("2001:db8::1"), Port: 4000, AliveMillis: -1},
		{Host: netip.MustParseAddr("::ffff:10.0.0.7"), Port: -7, AliveMillis: 1 << 62},
		{Host: netip.MustParseAddr("10.0.0.7"), Command: []byte(ShutdownCommand), UniqueID: uid(uid0to15)},
		{Host: netip.MustParseAddr("10.0.0.7"), Domain: []byte("prod"), Payload: []byte{0, 1, 2, 0xff}},
	}
	for i := range beacons {
		want := &beacons[i]
		prefix := []byte("prefix")
		enc := Append(prefix, want)
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatalf("%d: Append lost dst's prefix", i)
		}
		enc = enc[len("prefix"):]
		var got Beacon
		if err := Decode(enc, &got); err != nil {
			t.Fatalf("%d: Decode(Append(%+v)): %v", i, want, err)
		}
		assertBeacon(t, &got, want)
		if again := Append(nil, &got); !bytes.Equal(again, enc) {
			t.Errorf("%d: re-encoding differs:\n got %q\nwant %q", i, again, enc)
		}
	}
	// A Beacon that did not come from Decode may encode to invalid bytes
	// (the zero Beacon has no host); Decode must reject them, not misread them.
	if err := Decode(Append(nil, &Beacon{}), new(Beacon)); err != errHostLength {
		t.Errorf("zero Beacon: Decode error = %v, want %v", err, errHostLength)
	}
}

// TestDecodeAliases pins the zero-copy contract documented on Beacon.
func TestDecodeAliases(t *testing.T) {
	raw := []byte(everyFieldIPv6)
	var b Beacon
	if err := Decode(raw, &b); err != nil {
		t.Fatal(err)
	}
	if cap(b.Command) != len(b.Command) || cap(b.Domain) != len(b.Domain) || cap(b.Payload) != len(b.Payload) {
		t.Errorf("fields are not capacity-limited: caps %d %d %d", cap(b.Command), cap(b.Domain), cap(b.Payload))
	}
	_ = append(b.Command, "overwrite"...)
	if string(raw) != everyFieldIPv6 {
		t.Error("appending to Command overwrote the datagram")
	}
	raw[bytes.Index(raw, []byte("prod"))] = 'P'
	if string(b.Domain) != "Prod" {
		t.Errorf("Domain = %q, want it to alias the datagram", b.Domain)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	valid := []byte(everyFieldIPv6)
	garbage := []byte("FLT2002 not a beacon")
	var b Beacon
	if n := testing.AllocsPerRun(100, func() {
		if Decode(valid, &b) != nil || Decode(garbage, &b) == nil {
			t.Fatal("unexpected Decode result")
		}
	}); n != 0 {
		t.Errorf("Decode allocates %.0f times per run, want 0", n)
	}
}
