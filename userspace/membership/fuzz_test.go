package membership

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error is
// ErrMalformed, that a failed Decode leaves dst alone, and that whatever
// decodes re-encodes to exactly the input (so no two datagrams decode to
// the same Beacon, and nothing in a datagram goes unread).
func FuzzDecode(f *testing.F) {
	full := Append(nil, &Beacon{
		AliveMillis: 42, Port: 4000, SecurePort: 8443, UDPPort: 4001,
		Host:    netip.MustParseAddr("10.0.0.7"),
		Domain:  []byte("prod"),
		Payload: []byte("payload"),
	})
	for _, s := range []string{
		tomcatDefaultIPv4,
		everyFieldIPv6,
		tomcatShutdown,
		string(full),
		tomcatDefaultIPv4[:40],
		tomcatDefaultIPv4 + "\x00",
		"TRIBES-X\x01\x00" + tomcatDefaultIPv4[markerLen:],
		tomcatDefaultIPv4[:len(tomcatDefaultIPv4)-markerLen] + "TRIBES-X\x01\x00",
		"",
	} {
		f.Add([]byte(s))
	}
	sentinel := Beacon{Port: 9, Domain: []byte("sentinel")}
	f.Fuzz(func(t *testing.T, in []byte) {
		b := sentinel
		err := Decode(in, &b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if b.Port != sentinel.Port || string(b.Domain) != "sentinel" {
				t.Fatalf("dst changed on error: %+v", b)
			}
			return
		}
		if out := Append(nil, &b); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n got %q\nwant %q", out, in)
		}
	})
}
