package ajp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func sampleRequest() *ForwardRequest {
	return &ForwardRequest{
		Method: []byte("POST"), Protocol: []byte("HTTP/1.1"), URI: []byte("/app/cart;jsessionid=ABC.node1"),
		RemoteAddr: []byte("192.0.2.7"), RemoteHost: []byte("192.0.2.7"), ServerName: []byte("shop.example"),
		ServerPort: 443, IsSSL: true,
		Headers: []Header{
			{[]byte("Host"), []byte("shop.example")},
			{[]byte("Content-Length"), []byte("11")},
			{[]byte("X-Custom"), []byte("ü-utf8")},
			{[]byte("cookie"), []byte("JSESSIONID=ABC.node1")},
		},
		QueryString: []byte("a=1&b=2"), Route: []byte("node1"), Secret: []byte("s3cret"),
		SSLCipher: []byte("TLS_AES_128_GCM_SHA256"), SSLKeySize: 128,
		Attributes: []Header{{[]byte("AJP_REMOTE_PORT"), []byte("50123")}},
	}
}

func TestForwardRequestRoundTrip(t *testing.T) {
	want := sampleRequest()
	pkt, err := AppendForwardRequest(nil, want, DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	if pkt[0] != 0x12 || pkt[1] != 0x34 || int(pkt[2])<<8|int(pkt[3]) != len(pkt)-4 {
		t.Fatalf("bad framing % x", pkt[:4])
	}
	got, err := ParseForwardRequest(pkt[4:])
	if err != nil {
		t.Fatal(err)
	}
	// Coded header names come back in Tomcat's lower case.
	for i := range want.Headers {
		if c := requestHeaderCode(want.Headers[i].Name); c != 0 {
			want.Headers[i].Name = []byte(requestHeaders[c])
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestForwardRequestEncodesKnownBytes(t *testing.T) {
	r := &ForwardRequest{Method: []byte("GET"), Protocol: []byte("HTTP/1.1"), URI: []byte("/"),
		RemoteAddr: []byte("1.2.3.4"), RemoteHost: []byte(""), ServerName: []byte("h"), ServerPort: 80,
		Headers: []Header{{[]byte("Host"), []byte("h")}}, Secret: []byte("x")}
	pkt, err := AppendForwardRequest(nil, r, DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x12, 0x34, 0, 0, // length filled below
		2, 2, // FORWARD_REQUEST, GET
		0, 8, 'H', 'T', 'T', 'P', '/', '1', '.', '1', 0,
		0, 1, '/', 0,
		0, 7, '1', '.', '2', '.', '3', '.', '4', 0,
		0, 0, 0,
		0, 1, 'h', 0,
		0, 80, 0, // port, is_ssl
		0, 1, 0xA0, 0x0B, 0, 1, 'h', 0, // one header: Host coded as 0xA00B
		0x0C, 0, 1, 'x', 0, // secret
		0xFF}
	want[3] = byte(len(want) - 4)
	if !bytes.Equal(pkt, want) {
		t.Fatalf("got  % x\nwant % x", pkt, want)
	}
}

func TestStoredMethod(t *testing.T) {
	r := sampleRequest()
	r.Method = []byte("PATCH")
	pkt, err := AppendForwardRequest(nil, r, DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	if pkt[5] != methodStored {
		t.Fatalf("method code %d, want stored", pkt[5])
	}
	got, err := ParseForwardRequest(pkt[4:])
	if err != nil || string(got.Method) != "PATCH" {
		t.Fatalf("got %q, %v", got.Method, err)
	}
}

func TestForwardRequestTooLarge(t *testing.T) {
	r := sampleRequest()
	r.Headers = append(r.Headers, Header{[]byte("X-Big"), bytes.Repeat([]byte("a"), 9000)})
	if _, err := AppendForwardRequest(nil, r, DefaultPacketSize); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("8 KiB packet: got %v, want ErrTooLarge", err)
	}
	if _, err := AppendForwardRequest(nil, r, 16384); err != nil {
		t.Fatalf("16 KiB packet: %v", err)
	}
}

func TestContainerMessagesRoundTrip(t *testing.T) {
	headers := []Header{
		{[]byte("Content-Type"), []byte("text/plain")},
		{[]byte("Set-Cookie"), []byte("JSESSIONID=X.node1; Path=/")},
		{[]byte("X-Powered-By"), []byte("tests")},
	}
	var stream []byte
	var err error
	if stream, err = AppendSendHeaders(stream, 200, "OK", headers, DefaultPacketSize); err != nil {
		t.Fatal(err)
	}
	stream = AppendGetBodyChunk(stream, 8186)
	body := bytes.Repeat([]byte("z"), MaxSendChunk(DefaultPacketSize))
	if stream, err = AppendSendBodyChunk(stream, body, DefaultPacketSize); err != nil {
		t.Fatal(err)
	}
	if _, err = AppendSendBodyChunk(nil, append(body, 'z'), DefaultPacketSize); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized chunk: %v", err)
	}
	stream = AppendCPong(AppendEndResponse(stream, true))

	pr := NewContainerReader(bytes.NewReader(stream), DefaultPacketSize)
	next := func() []byte {
		p, err := pr.Next()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var sh SendHeaders
	if err := ParseSendHeaders(next(), &sh); err != nil || sh.Status != 200 || string(sh.Message) != "OK" || !reflect.DeepEqual(sh.Headers, headers) {
		t.Fatalf("headers: %+v %v", sh, err)
	}
	if n, err := ParseGetBodyChunk(next()); err != nil || n != 8186 {
		t.Fatalf("get body chunk: %d %v", n, err)
	}
	if got, err := ParseBodyChunk(next()); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body chunk: %d bytes, %v", len(got), err)
	}
	if reuse, err := ParseEndResponse(next()); err != nil || !reuse {
		t.Fatalf("end: %v %v", reuse, err)
	}
	if p := next(); len(p) != 1 || p[0] != TypeCPong {
		t.Fatalf("cpong: % x", p)
	}
	if _, err := pr.Next(); err != io.EOF {
		t.Fatalf("after last packet: %v, want EOF", err)
	}
}

func TestBodyPackets(t *testing.T) {
	data := []byte("hello world")
	pkt, err := AppendBodyChunk(nil, data, DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ = AppendBodyChunk(pkt, nil, DefaultPacketSize)
	pr := NewProxyReader(bytes.NewReader(pkt), DefaultPacketSize)
	p, _ := pr.Next()
	if got, err := ParseBodyPacket(p); err != nil || string(got) != "hello world" {
		t.Fatalf("got %q %v", got, err)
	}
	p, _ = pr.Next()
	if got, err := ParseBodyPacket(p); err != nil || got != nil {
		t.Fatalf("end packet: %q %v", got, err)
	}
	if _, err := AppendBodyChunk(nil, make([]byte, MaxBodyChunk(DefaultPacketSize)+1), DefaultPacketSize); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body packet: %v", err)
	}
}

func TestMalformedContainerInput(t *testing.T) {
	tests := map[string][]byte{
		"bad magic":         {'X', 'B', 0, 1, 9},
		"length past size":  {'A', 'B', 0xFF, 0xFF},
		"truncated packet":  {'A', 'B', 0, 10, 4, 0},
		"truncated header":  {'A', 'B'},
		"headers truncated": {'A', 'B', 0, 5, 4, 0, 200, 0, 5},
		"string no NUL":     {'A', 'B', 0, 9, 4, 0, 200, 0, 2, 'O', 'K', 'X', 0},
		"bad header code":   {'A', 'B', 0, 11, 4, 0, 200, 0xFF, 0xFF, 0, 1, 0xA0, 0x7F, 0, 0},
		"status 0":          {'A', 'B', 0, 7, 4, 0, 0, 0xFF, 0xFF, 0, 0},
		"chunk past packet": {'A', 'B', 0, 5, 3, 0x10, 0, 'a', 0},
	}
	for name, in := range tests {
		pr := NewContainerReader(bytes.NewReader(in), DefaultPacketSize)
		p, err := pr.Next()
		if err == nil {
			var sh SendHeaders
			switch p[0] {
			case TypeSendHeaders:
				err = ParseSendHeaders(p, &sh)
			case TypeSendBodyChunk:
				_, err = ParseBodyChunk(p)
			}
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: error %v is neither malformed nor unexpected EOF", name, err)
		}
	}
}

func TestPlainHeaderNamesMayNotLookCoded(t *testing.T) {
	r := sampleRequest()
	r.Headers = []Header{{[]byte(strings.Repeat("n", maxPlainNameLen+1)), []byte("v")}}
	if _, err := AppendForwardRequest(nil, r, MaxPacketSize); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
}

func TestSplitContainerPacket(t *testing.T) {
	pkt := AppendEndResponse(nil, true)
	stream := append(append([]byte(nil), pkt...), AppendCPong(nil)...)
	for i := range len(pkt) {
		if p, n, err := SplitContainerPacket(stream[:i], DefaultPacketSize); p != nil || n != 0 || err != nil {
			t.Fatalf("prefix of %d bytes: %q %d %v", i, p, n, err)
		}
	}
	p, n, err := SplitContainerPacket(stream, DefaultPacketSize)
	if err != nil || n != len(pkt) || p[0] != TypeEndResponse {
		t.Fatalf("%q %d %v", p, n, err)
	}
	if _, _, err := SplitContainerPacket([]byte{0x12, 0x34, 0, 1, 9}, DefaultPacketSize); err == nil {
		t.Fatal("a proxy's magic taken for a container's")
	}
	if _, _, err := SplitContainerPacket([]byte{'A', 'B', 0xff, 0xff}, DefaultPacketSize); err == nil {
		t.Fatal("a packet past the packet size")
	}
}
