package httpwire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"testing"
)

// goChunked is what Go's chunked reader reads from a body the scanner
// accepted, once the whitespace before each chunk extension is gone: RFC
// 9112 allows it (BWS), catherd takes it, Go's reader refuses it.
func goChunked(body []byte) ([]byte, error) {
	return io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(withoutExtBWS(body))))
}

// withoutExtBWS rewrites the size lines of an accepted chunked body
// without the whitespace before their ';'; the data and the trailers stay
// as they are.
func withoutExtBWS(body []byte) []byte {
	var out []byte
	for {
		eol := bytes.Index(body, []byte("\r\n"))
		if eol < 0 {
			return append(out, body...)
		}
		line, ext := body[:eol], []byte(nil)
		if semi := bytes.IndexByte(line, ';'); semi >= 0 {
			line, ext = bytes.TrimRight(line[:semi], " \t"), line[semi:]
		}
		size, err := strconv.ParseInt(string(bytes.TrimRight(line, " \t")), 16, 64)
		out = append(append(append(out, line...), ext...), "\r\n"...)
		body = body[eol+2:]
		if err != nil || size == 0 || int64(len(body)) < size+2 {
			return append(out, body...) // the trailers, or what Go's reader will refuse
		}
		out = append(out, body[:size+2]...)
		body = body[size+2:]
	}
}

// FuzzParseRequest: no input panics; a head that is accepted is made of
// its lines exactly, and Go's own parser reads the same request from it
// (method, target, body framing): what catherd forwards means the same to
// a server as to catherd.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 514\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, X-HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n"))
	f.Add([]byte("\r\nGET / HTTP/1.0\r\nX: y\r\n z\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Request
		n, err := ParseRequest(raw, &r, 4096)
		if err != nil || n == 0 {
			return
		}
		rebuilt := append(append([]byte(nil), raw[:r.Start]...), r.Line...)
		for _, f := range r.Fields {
			rebuilt = append(rebuilt, f.Line...)
		}
		if rebuilt = append(rebuilt, "\r\n"...); !bytes.Equal(rebuilt, raw[:n]) {
			t.Fatalf("head %q is not its lines %q", raw[:n], rebuilt)
		}
		req, gerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw[r.Start:n])))
		if gerr != nil {
			t.Fatalf("accepted %q, Go refuses it: %v", raw[:n], gerr)
		}
		if req.Method != string(r.Method) || req.RequestURI != string(r.Target) {
			t.Fatalf("%q: Go reads %s %s", raw[:n], req.Method, req.RequestURI)
		}
		chunked := len(req.TransferEncoding) > 0
		if chunked != r.Chunked || (!chunked && req.ContentLength != max(r.ContentLength, 0)) {
			t.Fatalf("%q: Go frames the body as chunked=%v length %d", raw[:n], chunked, req.ContentLength)
		}
	})
}

// FuzzParseResponse: no input panics, and an accepted head is its lines.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Response
		n, err := ParseResponse(raw, &r, 4096)
		if err != nil || n == 0 {
			return
		}
		rebuilt := append([]byte(nil), r.Line...)
		for _, f := range r.Fields {
			rebuilt = append(rebuilt, f.Line...)
		}
		if rebuilt = append(rebuilt, "\r\n"...); !bytes.Equal(rebuilt, raw[:n]) {
			t.Fatalf("head %q is not its lines %q", raw[:n], rebuilt)
		}
		if r.Status < 100 || r.Status > 999 || (r.Chunked && r.ContentLength >= 0) {
			t.Fatalf("%q: status %d chunked %v length %d", raw[:n], r.Status, r.Chunked, r.ContentLength)
		}
	})
}
