package proxy

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheckHead(t *testing.T) {
	for raw, want := range map[string]error{
		"Host: x\r\nX-A: b\r\n\r\n": nil,
		"Host: x\r\nX-A: b":         nil,
		"Host: x\r\nX-A: b\n\r\n":   errBareLF,
		"Host: x\r\n\tfolded\r\n":   errObsFold,
		"Host: x\r\nX A: b\r\n":     errHeaderName,
		"Host: x\r\n: b\r\n":        errHeaderName,
		"Host: x\r\nnocolon\r\n":    errHeaderName,
		"Host: x\r\ncontent-length: 1\r\nTRANSFER-encoding: x\r\n":  errCLAndTE,
		"Host: x\r\n" + strings.Repeat("A: b\r\n", MaxHeaderFields): errTooManyHeaders,
		"Host: x\r\nConnection: close, Content-Length\r\n":          errConnectionFraming,
		"Host: x\r\nconnection:transfer-encoding \r\n":              errConnectionFraming,
		"Host: x\r\nConnection: keep-alive\r\nConnection: host\r\n": errConnectionFraming,
		"Host: x\r\nConnection: X-Host, Content-Lengths\r\n":        nil,
		"Host: x\r\nUpgrade: websocket, h2c/1\r\n":                  errH2C,
		"Host: x\r\nUpgrade: H2C\r\n":                               errH2C,
		"Host: x\r\nUpgrade: h2\r\n":                                nil,
	} {
		if got := checkHead([]byte(raw)); got != want {
			t.Errorf("checkHead(%q) = %v, want %v", raw, got, want)
		}
	}
}

// FuzzCheckHead: any input is judged without a panic, and a head that
// passes has no bare LF, no folded line, only token names, at most
// MaxHeaderFields fields, not both framing headers, no Connection naming
// a framing or routing field and no upgrade to h2c.
func FuzzCheckHead(f *testing.F) {
	f.Add([]byte("Host: x\r\nX-A: b\r\n\r\n"))
	f.Add([]byte("Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"))
	f.Add([]byte("Host: x\nX: y\r\n \r\n"))
	f.Add([]byte("Host: x\r\nConnection: Upgrade, Content-Length\r\nUpgrade: h2c\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if checkHead(raw) != nil {
			return
		}
		lines := bytes.Split(raw, []byte("\n"))
		var contentLength, transferEncoding bool
		fields := 0
		for i, line := range lines {
			if i < len(lines)-1 && !bytes.HasSuffix(line, []byte("\r")) {
				t.Fatalf("accepted a bare LF in %q", raw)
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				continue
			}
			fields++
			name, _, _ := bytes.Cut(line, []byte(":"))
			if !isToken(name) {
				t.Fatalf("accepted the name %q in %q", name, raw)
			}
			if _, v, _ := bytes.Cut(line, []byte(":")); asciiEqualFold(name, "connection") || asciiEqualFold(name, "upgrade") {
				for _, elem := range bytes.Split(v, []byte(",")) {
					elem = bytes.Trim(elem, " \t")
					if proto, _, _ := bytes.Cut(elem, []byte("/")); asciiEqualFold(name, "upgrade") && asciiEqualFold(proto, "h2c") {
						t.Fatalf("accepted an h2c upgrade in %q", raw)
					}
					for _, field := range []string{"content-length", "transfer-encoding", "host", "cookie"} {
						if asciiEqualFold(name, "connection") && asciiEqualFold(elem, field) {
							t.Fatalf("accepted Connection naming %s in %q", field, raw)
						}
					}
				}
			}
			contentLength = contentLength || asciiEqualFold(name, "content-length")
			transferEncoding = transferEncoding || asciiEqualFold(name, "transfer-encoding")
			if contentLength && transferEncoding {
				t.Fatalf("accepted both framing headers in %q", raw)
			}
		}
		if fields > MaxHeaderFields {
			t.Fatalf("accepted %d fields", fields)
		}
	})
}
