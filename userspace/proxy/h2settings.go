package proxy

import "encoding/binary"

// maxSettings is where net/http hangs up on a SETTINGS frame; dedupSettings
// leaves such a frame to it.
const maxSettings = 100

// dedupSettings returns a SETTINGS payload with each setting once, as
// processing its values in order would leave it: the last value, or the
// first invalid one, at which processing stops with a connection error.
// net/http hangs up on a setting named twice. A payload without
// repetitions, or with more entries than net/http accepts, is returned
// as it is.
func dedupSettings(p []byte) []byte {
	n := len(p) / 6
	if n < 2 || n > maxSettings {
		return p
	}
	entry := func(i int) (uint16, uint32) {
		return binary.BigEndian.Uint16(p[6*i:]), binary.BigEndian.Uint32(p[6*i+2:])
	}
	var out []byte
	for i := range n {
		id, v := entry(i)
		keep := true
		for j := range n {
			jid, jv := entry(j)
			switch {
			case j == i || jid != id:
			case j < i && !validSetting(jid, jv): // an earlier invalid value stops processing
				keep = false
			case j > i && validSetting(id, v): // a later value replaces this one
				keep = false
			}
		}
		if keep {
			out = append(out, p[6*i:6*i+6]...)
		}
	}
	if len(out) == len(p) {
		return p
	}
	return out
}

// validSetting reports whether a setting's value is one RFC 9113 section
// 6.5.2 lets a receiver accept.
func validSetting(id uint16, v uint32) bool {
	switch id {
	case 0x2, 0x8: // SETTINGS_ENABLE_PUSH, SETTINGS_ENABLE_CONNECT_PROTOCOL
		return v <= 1
	case 0x4: // SETTINGS_INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 0x5: // SETTINGS_MAX_FRAME_SIZE
		return v >= 1<<14 && v <= 1<<24-1
	}
	return true
}
