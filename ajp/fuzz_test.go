package ajp

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzContainerStream feeds arbitrary bytes to the proxy's side of the
// codec: any packet stream a backend might send. Decoding must never panic,
// and whatever decodes must encode back to the same message.
func FuzzContainerStream(f *testing.F) {
	seed, _ := AppendSendHeaders(nil, 302, "Found", []Header{{[]byte("Location"), []byte("/x")}, {[]byte("X-A"), []byte("b")}}, DefaultPacketSize)
	seed, _ = AppendSendBodyChunk(seed, []byte("body"), DefaultPacketSize)
	seed = AppendCPong(AppendEndResponse(AppendGetBodyChunk(seed, 100), true))
	f.Add(seed)
	f.Add([]byte{'A', 'B', 0, 2, 5})
	f.Add([]byte{'A', 'B', 0, 4, 3, 0, 9, 'x'})
	f.Fuzz(func(t *testing.T, in []byte) {
		pr := NewContainerReader(bytes.NewReader(in), DefaultPacketSize)
		for i := 0; i < 64; i++ {
			p, err := pr.Next()
			if err != nil {
				return
			}
			if len(p) == 0 {
				continue
			}
			switch p[0] {
			case TypeSendHeaders:
				var sh SendHeaders
				if ParseSendHeaders(p, &sh) != nil {
					continue
				}
				re, err := AppendSendHeaders(nil, sh.Status, string(sh.Message), sh.Headers, DefaultPacketSize)
				if err != nil {
					t.Fatalf("re-encoding decoded headers: %v", err)
				}
				var again SendHeaders
				if err := ParseSendHeaders(re[4:], &again); err != nil || again.Status != sh.Status || len(again.Headers) != len(sh.Headers) {
					t.Fatalf("headers did not survive a round trip: %+v vs %+v (%v)", sh, again, err)
				}
			case TypeSendBodyChunk:
				if data, err := ParseBodyChunk(p); err == nil && len(data) > len(p) {
					t.Fatal("chunk longer than its packet")
				}
			case TypeEndResponse:
				ParseEndResponse(p)
			case TypeGetBodyChunk:
				ParseGetBodyChunk(p)
			}
		}
	})
}

// FuzzForwardRequest decodes arbitrary FORWARD_REQUEST payloads (the test
// container's side) and checks that what decodes re-encodes identically.
func FuzzForwardRequest(f *testing.F) {
	pkt, _ := AppendForwardRequest(nil, sampleRequest(), DefaultPacketSize)
	f.Add(pkt[4:])
	r := sampleRequest()
	r.Method = []byte("PATCH")
	pkt, _ = AppendForwardRequest(nil, r, DefaultPacketSize)
	f.Add(pkt[4:])
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := ParseForwardRequest(payload)
		if err != nil {
			return
		}
		re, err := AppendForwardRequest(nil, r, MaxPacketSize)
		if err != nil {
			return // e.g. a plain name too long to re-encode
		}
		again, err := ParseForwardRequest(re[4:])
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(r), normalize(again)) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", r, again)
		}
	})
}

// normalize lower-cases coded header names (they decode in Tomcat's case)
// and maps every empty byte string to nil: the encoder writes a missing
// value as an empty string, and the decoder reads AJP's null string (length
// 0xFFFF) as nil, so the two are one value for this comparison.
func normalize(r *ForwardRequest) *ForwardRequest {
	c := *r
	fix := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	pairs := func(in []Header, coded bool) []Header {
		var out []Header
		for _, h := range in {
			if code := requestHeaderCode(h.Name); coded && code != 0 {
				h.Name = []byte(requestHeaders[code])
			}
			out = append(out, Header{Name: fix(h.Name), Value: fix(h.Value)})
		}
		return out
	}
	c.Headers = pairs(r.Headers, true)
	c.Attributes = pairs(r.Attributes, false)
	for _, p := range []*[]byte{&c.Method, &c.Protocol, &c.URI, &c.RemoteAddr, &c.RemoteHost, &c.ServerName,
		&c.QueryString, &c.Route, &c.Secret, &c.RemoteUser, &c.AuthType, &c.SSLCert, &c.SSLCipher, &c.SSLSession} {
		*p = fix(*p)
	}
	return &c
}
