package httpwire

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	many := func(n int) string { return strings.Repeat("X-A: b\r\n", n) }
	for _, tt := range []struct {
		name, raw string
		err       error // nil: parsed whole
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", nil},
		{"escapes in path and query", "GET /a%20b%2F?q=%zz HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"absolute target with an IPv6 literal and a port", "GET http://[::1]:8080/x HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"absolute target without a path", "GET http://a.example:80 HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"blank lines before", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"too many blank lines", strings.Repeat("\r\n", 5) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", ErrCLAndTE},
		{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", ErrTransferCoding},
		{"two CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", ErrContentLength},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\n", ErrContentLength},
		{"CL sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n", ErrContentLength},
		{"CL huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n", ErrContentLength},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ErrTransferCoding},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTransferCoding},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", ErrFieldName},
		{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEInHTTP10},
		{"bare LF", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", ErrBareLF},
		{"bare LF request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", ErrBareLF},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", ErrObsFold},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", ErrFieldValue},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", ErrBareCR},
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"broken escape in the path", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"escape cut short", "GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"escape in a host", "GET http://0%00/ HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"port not a number", "GET http://a:b/ HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"bracket without its pair", "GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"fragment in an absolute target's host", "GET A://0#000 HTTP/1.0\r\nX: y\r\n\r\n", ErrRequestLine},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", ErrNoHost},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", ErrTwoHosts},
		{"bad version", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", ErrVersion},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", ErrVersion},
		{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", ErrVersion},
		{"preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrHTTP2Preface},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", ErrRequestLine},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + many(MaxFields) + "\r\n", ErrTooManyFields},
		{"as many fields as allowed", "GET / HTTP/1.1\r\nHost: x\r\n" + many(MaxFields-1) + "\r\n", nil},
		{"Connection: Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n", ErrConnectionFraming},
		{"Connection: host", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, host\r\n\r\n", ErrConnectionFraming},
		{"Connection: cookie, second field", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: x,Cookie\r\n\r\n", ErrConnectionFraming},
		{"Connection: Transfer-Encoding", "GET / HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\n\r\n", ErrConnectionFraming},
		{"Connection: not a token", "GET / HTTP/1.1\r\nHost: x\r\nConnection: a b\r\n\r\n", ErrFieldValue},
		{"h2c", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n", ErrH2C},
		{"h2c versioned", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo, H2C/1\r\n\r\n", ErrH2C},
	} {
		var r Request
		n, err := ParseRequest([]byte(tt.raw), &r, 8192)
		if !errors.Is(err, tt.err) || (err == nil && n != len(tt.raw)) {
			t.Errorf("%s: n=%d err=%v, want err %v", tt.name, n, err, tt.err)
		}
	}
}

func TestParseRequestFields(t *testing.T) {
	raw := "\r\nPOST /a?b HTTP/1.1\r\nhost:  example.com \r\nConnection: keep-alive, X-Hop,upgrade\r\nUpgrade: websocket\r\n" +
		"Content-Length: 12\r\nExpect: 100-Continue\r\nX-Empty:\r\n\r\nbody follows"
	var r Request
	n, err := ParseRequest([]byte(raw), &r, 8192)
	if err != nil || n != len(raw)-len("body follows") {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if r.Start != 2 || string(r.Method) != "POST" || string(r.Target) != "/a?b" || r.Minor != 1 || string(r.Line) != "POST /a?b HTTP/1.1\r\n" {
		t.Errorf("request line: %+v", r)
	}
	if string(r.Host) != "example.com" || r.ContentLength != 12 || r.Chunked || !r.Expect100 || !r.WebSocket || !r.KeepAlive || r.Close {
		t.Errorf("semantics: host %q len %d chunked %v expect %v ws %v ka %v close %v", r.Host, r.ContentLength, r.Chunked, r.Expect100, r.WebSocket, r.KeepAlive, r.Close)
	}
	if len(r.Named) != 2 || !r.IsNamed([]byte("x-hop")) || !r.IsNamed([]byte("Upgrade")) {
		t.Errorf("named %q", r.Named)
	}
	if len(r.Fields) != 6 || string(r.Fields[5].Name) != "X-Empty" || len(r.Fields[5].Value) != 0 || string(r.Fields[0].Line) != "host:  example.com \r\n" {
		t.Errorf("fields %q", r.Fields)
	}
	if !r.Persistent() {
		t.Error("HTTP/1.1 without close is persistent")
	}
}

// A head is parsed only once it is whole; one that outgrows the limit is
// 414 while its request line is unfinished, 431 after.
func TestParseRequestIncomplete(t *testing.T) {
	full := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for i := range len(full) {
		var r Request
		if n, err := ParseRequest([]byte(full[:i]), &r, 8192); n != 0 || err != nil {
			t.Fatalf("prefix of %d bytes: n=%d err=%v", i, n, err)
		}
	}
	var r Request
	if _, err := ParseRequest([]byte("GET /"+strings.Repeat("a", 100)), &r, 64); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v", err)
	}
	if _, err := ParseRequest([]byte("GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 100)), &r, 64); !errors.Is(err, ErrHeadTooLarge) {
		t.Errorf("large head: %v", err)
	}
	if _, err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: x\r\nX: "+strings.Repeat("a", 100)+"\r\n\r\n"), &r, 64); !errors.Is(err, ErrHeadTooLarge) {
		t.Errorf("whole but large head: %v", err)
	}
}

func TestParseResponse(t *testing.T) {
	for _, tt := range []struct {
		raw                string
		status             int
		length             int64
		chunked, untilEOF  bool
		persistent, errors bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 5, false, false, true, false},
		{"HTTP/1.1 204\r\n\r\n", 204, -1, false, true, true, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 5, false, false, false, false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n", 200, 5, false, false, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 200, -1, true, false, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 200, -1, false, true, true, false},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 200, -1, false, true, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/1.1 20 OK\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/1.1 200OK\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/2.0 200 OK\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/1.1 200 OK\nX: y\r\n\r\n", 0, 0, false, false, false, true},
		{"HTTP/1.1 200 OK\r\nX y: z\r\n\r\n", 0, 0, false, false, false, true},
	} {
		var r Response
		n, err := ParseResponse([]byte(tt.raw), &r, 8192)
		if tt.errors {
			if err == nil {
				t.Errorf("%q: parsed", tt.raw)
			}
			continue
		}
		if err != nil || n != len(tt.raw) || r.Status != tt.status || r.ContentLength != tt.length || r.Chunked != tt.chunked ||
			r.UntilClose != tt.untilEOF || r.Persistent() != tt.persistent {
			t.Errorf("%q: n=%d err=%v status %d length %d chunked %v until-close %v persistent %v", tt.raw, n, err, r.Status, r.ContentLength, r.Chunked, r.UntilClose, r.Persistent())
		}
	}
}
