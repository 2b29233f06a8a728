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
	} {
		if got := checkHead([]byte(raw)); got != want {
			t.Errorf("checkHead(%q) = %v, want %v", raw, got, want)
		}
	}
}

// FuzzCheckHead: any input is judged without a panic, and a head that
// passes has no bare LF, no folded line, only token names, at most
// MaxHeaderFields fields, and not both framing headers.
func FuzzCheckHead(f *testing.F) {
	f.Add([]byte("Host: x\r\nX-A: b\r\n\r\n"))
	f.Add([]byte("Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"))
	f.Add([]byte("Host: x\nX: y\r\n \r\n"))
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
