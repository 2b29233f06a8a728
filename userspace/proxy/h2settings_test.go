package proxy

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestDedupSettings(t *testing.T) {
	const (
		push       = 0x2
		window     = 0x4
		frameSize  = 0x5
		tableSize  = 0x1
		tooLarge   = 1 << 31
		tooSmall   = 100
		unknownID  = 0xff
		validFrame = 1 << 15
	)
	settings := func(kv ...uint32) []byte {
		var b []byte
		for i := 0; i+1 < len(kv); i += 2 {
			b = binary.BigEndian.AppendUint16(b, uint16(kv[i]))
			b = binary.BigEndian.AppendUint32(b, kv[i+1])
		}
		return b
	}
	for _, tt := range []struct {
		name    string
		in, out []byte
	}{
		{"empty", settings(), settings()},
		{"one", settings(window, 1), settings(window, 1)},
		{"distinct", settings(window, 1, tableSize, 0, push, 0), settings(window, 1, tableSize, 0, push, 0)},
		{"repeated: the last holds", settings(window, 100, window, 1), settings(window, 1)},
		{"repeated among others", settings(window, 100, tableSize, 0, window, 1, unknownID, 7), settings(tableSize, 0, window, 1, unknownID, 7)},
		{"an invalid value first: it stays", settings(window, tooLarge, window, 100), settings(window, tooLarge)},
		{"an invalid value between valid ones", settings(frameSize, validFrame, frameSize, tooSmall, frameSize, validFrame), settings(frameSize, tooSmall)},
		{"invalid after valid", settings(push, 1, push, 2), settings(push, 2)},
		{"two invalid: the first", settings(push, 3, push, 2), settings(push, 3)},
	} {
		if got := dedupSettings(tt.in); !bytes.Equal(got, tt.out) {
			t.Errorf("%s: %x, want %x", tt.name, got, tt.out)
		}
	}
	// More entries than net/http accepts: left for it to refuse.
	many := bytes.Repeat(settings(window, 1), maxSettings+1)
	if got := dedupSettings(many); !bytes.Equal(got, many) {
		t.Errorf("%d entries: rewritten to %d bytes", maxSettings+1, len(got))
	}
}
