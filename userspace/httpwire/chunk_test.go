package httpwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// scanAll feeds body to a scanner in pieces of at most step bytes and
// returns the bytes the body took, its data, and the error.
func scanAll(body []byte, step int, r *rand.Rand) (int, []byte, error) {
	var s ChunkScanner
	var data []byte
	at := 0
	for at < len(body) && !s.Done() {
		end := min(len(body), at+1+r.IntN(step))
		piece := body[at:end]
		for len(piece) > 0 && !s.Done() {
			n, isData, err := s.Scan(piece)
			if err != nil {
				return at + n, data, err
			}
			if isData {
				data = append(data, piece[:n]...)
			}
			piece = piece[n:]
			at += n
		}
	}
	if !s.Done() {
		return at, data, errIncomplete
	}
	return at, data, nil
}

var errIncomplete = errors.New("incomplete")

func TestChunkScanner(t *testing.T) {
	for _, tt := range []struct {
		body, data string
		err        error
	}{
		{"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n", "Wikipedia in\r\n\r\nchunks.", nil},
		{"0\r\n\r\n", "", nil},
		{"a \t;b=\"c d\"\r\n0123456789\r\n000\r\n\r\n", "0123456789", nil},
		{"5\r\nhello\rX3\r\nabc\r\n0\r\n\r\n", "hello", ErrChunk}, // data not followed by CRLF
		{"5\r\nhelloabc\r\n0\r\n\r\n", "hello", ErrChunk},
		{"zz\r\nabcd\r\n0\r\n\r\n", "", ErrChunk},
		{"-4\r\nabcd\r\n0\r\n\r\n", "", ErrChunk},
		{"4\nabcd\n0\n\n", "", ErrChunk},
		{"4\r\nabcd\n0\r\n\r\n", "abcd", ErrChunk},
		{"4 x\r\nabcd\r\n0\r\n\r\n", "", ErrChunk},
		{"4;a\x00b\r\nabcd\r\n0\r\n\r\n", "", ErrChunk},
		{"1000000000000000\r\n", "", ErrChunk},
		{"0\r\nno colon\r\n\r\n", "", ErrChunk},
		{"0\r\nX: a\x01\r\n\r\n", "", ErrChunk},
		{"0\r\nX: y\n\r\n", "", ErrChunk},
		{"0\r\n\n", "", ErrChunk},
		{"4\r\nabcd\r\n", "abcd", errIncomplete},
	} {
		for seed := range uint64(30) {
			r := rand.New(rand.NewPCG(seed, 1))
			body := []byte(tt.body + "GET /next HTTP/1.1\r\n")
			if tt.err == errIncomplete {
				body = []byte(tt.body)
			}
			n, data, err := scanAll(body, 1+int(seed%7)*3, r)
			if !errors.Is(err, tt.err) || string(data) != tt.data || (err == nil && n != len(tt.body)) {
				t.Fatalf("%q (seed %d): took %d, data %q, err %v; want data %q err %v", tt.body, seed, n, data, err, tt.data, tt.err)
			}
		}
	}
}

// FuzzChunkScanner: whatever the input and however it is split, the
// scanner never panics, takes the same bytes and data, and a body it
// accepts re-encodes to data that Go's own chunked reader agrees with.
func FuzzChunkScanner(f *testing.F) {
	f.Add([]byte("4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nT: x\r\n\r\n"), uint8(3))
	f.Add([]byte("5\r\nhello\rX3\r\nabc\r\n0\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		r := rand.New(rand.NewPCG(uint64(step), 2))
		n1, d1, e1 := scanAll(body, len(body)+1, r)
		n2, d2, e2 := scanAll(body, 1+int(step%16), r)
		if n1 != n2 || !bytes.Equal(d1, d2) || (e1 == nil) != (e2 == nil) {
			t.Fatalf("split changes the outcome: %d %q %v vs %d %q %v", n1, d1, e1, n2, d2, e2)
		}
		if e1 != nil {
			return
		}
		if got, err := goChunked(body[:n1]); err != nil || !bytes.Equal(got, d1) {
			t.Fatalf("accepted %q as %q; Go's reader: %q %v", body[:n1], d1, got, err)
		}
	})
}
