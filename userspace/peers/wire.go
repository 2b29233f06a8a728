package peers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The messages members exchange travel inside memberlist's user messages
// (UDP gossip and TCP) and its push/pull state, so memberlist has already
// authenticated and decrypted them; this format only has to be compact and
// strict. Every message is
//
//	format version (1 byte) | kind (1 byte) | sender (string)
//	| sender's clock (uvarint) | sender's digest (8 bytes, big endian) | body
//
// where a string or byte string is a uvarint length and the bytes. Bodies:
//
//	status, bye        empty
//	gossip, direct,    origins: count, then each a string
//	state              records: count, then each: key, clock, origin index,
//	                     flags (1 byte: 1 = deleted), ttl ms (0 = never),
//	                     value
//	                   touches: count, then each: key, clock, origin index,
//	                     ttl ms (> 0)
//	question           id (uvarint), timeout ms (0 = none), payload
//	answer             id (uvarint), payload
//
// Origin names are listed once per message because a full state repeats
// the same few names on every record. TTLs are durations remaining when the
// message was made, not instants, so members need not agree on the time of
// day. Decoders refuse anything out of bounds, unknown, or trailing.
const formatVersion = 1

type kind byte

const (
	// kindStatus is the payload of memberlist's ping acks: the sender's clock
	// and digest, its advertised state version.
	kindStatus kind = iota + 1
	// kindGossip is a batch broadcast over UDP by memberlist's transmit
	// queue; a member relays what it learned from one, so it spreads.
	kindGossip
	// kindDirect is a batch sent over TCP to every live peer: too large for
	// UDP, it needs no relay.
	kindDirect
	// kindState is a member's whole table, exchanged on join and
	// periodically (memberlist's push/pull).
	kindState
	kindQuestion
	kindAnswer
	// kindBye tells peers the sender is leaving, not failing.
	kindBye
)

// Bounds on what a member writes and accepts. Keys are session ids and
// member names, values small: a larger one is an error at Set and a
// malformed message on the wire.
const (
	maxKeyLen   = 1024
	maxValueLen = 64 << 10
	maxNameLen  = 128
	// maxPayloadLen bounds questions and answers.
	maxPayloadLen = 1 << 20
	maxDuration   = 100 * 365 * 24 * time.Hour
)

type envelope struct {
	kind   kind
	sender string
	clock  uint64
	digest uint64
}

// wireRecord is a record in transit: its expiry as the time remaining.
type wireRecord struct {
	key     string
	version Version
	deleted bool
	ttl     time.Duration // 0: never expires
	value   []byte
}

// wireTouch says: version of key expires ttl from now.
type wireTouch struct {
	key     string
	version Version
	ttl     time.Duration
}

type batch struct {
	records []wireRecord
	touches []wireTouch
}

type message struct {
	envelope
	batch   batch         // gossip, direct, state
	id      uint64        // question, answer
	timeout time.Duration // question: how long the asker waits; 0 if it has no deadline
	payload []byte        // question, answer
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// millis rounds d up to whole milliseconds, so a positive duration never
// becomes 0 (which means "never").
func millis(d time.Duration) uint64 {
	return uint64((d + time.Millisecond - 1) / time.Millisecond)
}

func encodeMessage(m message) []byte {
	b := []byte{formatVersion, byte(m.kind)}
	b = appendString(b, m.sender)
	b = binary.AppendUvarint(b, m.clock)
	b = binary.BigEndian.AppendUint64(b, m.digest)
	switch m.kind {
	case kindGossip, kindDirect, kindState:
		b = appendBatch(b, m.batch)
	case kindQuestion:
		b = binary.AppendUvarint(b, m.id)
		b = binary.AppendUvarint(b, millis(m.timeout))
		b = appendBytes(b, m.payload)
	case kindAnswer:
		b = binary.AppendUvarint(b, m.id)
		b = appendBytes(b, m.payload)
	}
	return b
}

func appendBatch(b []byte, bt batch) []byte {
	index := map[string]uint64{}
	var origins []string
	note := func(o string) {
		if _, ok := index[o]; !ok {
			index[o] = uint64(len(origins))
			origins = append(origins, o)
		}
	}
	for _, r := range bt.records {
		note(r.version.Origin)
	}
	for _, t := range bt.touches {
		note(t.version.Origin)
	}
	b = binary.AppendUvarint(b, uint64(len(origins)))
	for _, o := range origins {
		b = appendString(b, o)
	}
	b = binary.AppendUvarint(b, uint64(len(bt.records)))
	for _, r := range bt.records {
		b = appendRecord(b, r, index)
	}
	b = binary.AppendUvarint(b, uint64(len(bt.touches)))
	for _, t := range bt.touches {
		b = appendTouch(b, t, index)
	}
	return b
}

func appendRecord(b []byte, r wireRecord, origins map[string]uint64) []byte {
	b = appendString(b, r.key)
	b = binary.AppendUvarint(b, r.version.Clock)
	b = binary.AppendUvarint(b, origins[r.version.Origin])
	var flags byte
	if r.deleted {
		flags = 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, millis(r.ttl))
	return appendBytes(b, r.value)
}

func appendTouch(b []byte, t wireTouch, origins map[string]uint64) []byte {
	b = appendString(b, t.key)
	b = binary.AppendUvarint(b, t.version.Clock)
	b = binary.AppendUvarint(b, origins[t.version.Origin])
	return binary.AppendUvarint(b, millis(t.ttl))
}

// Sizes for pack, exact but for the origin index, counted at its largest
// (3 bytes: two million origins).
func stringSize(n int) int { return uvarintSize(uint64(n)) + n }

func uvarintSize(v uint64) int { return len(binary.AppendUvarint(nil, v)) }

func recordSize(r wireRecord) int {
	return stringSize(len(r.key)) + uvarintSize(r.version.Clock) + 3 + 1 +
		uvarintSize(millis(r.ttl)) + stringSize(len(r.value))
}

func touchSize(t wireTouch) int {
	return stringSize(len(t.key)) + uvarintSize(t.version.Clock) + 3 + uvarintSize(millis(t.ttl))
}

// pack splits b into messages of kind env.kind of at most limit bytes each.
// ok is false when some record or touch does not fit in limit on its own.
func pack(env envelope, b batch, limit int) (msgs [][]byte, ok bool) {
	head := len(encodeMessage(message{envelope: env})) + 3*binary.MaxVarintLen32
	var cur batch
	size := head
	seen := map[string]bool{}
	flush := func() {
		if len(cur.records)+len(cur.touches) > 0 {
			msgs = append(msgs, encodeMessage(message{envelope: env, batch: cur}))
		}
		cur, size = batch{}, head
		clear(seen)
	}
	// add makes room for an item of n bytes from origin, reporting whether
	// it fits in a message at all.
	add := func(n int, origin string) bool {
		if head+n+stringSize(len(origin)) > limit {
			return false
		}
		if !seen[origin] {
			n += stringSize(len(origin))
		}
		if size+n > limit {
			flush()
			n += stringSize(len(origin))
		}
		seen[origin] = true
		size += n
		return true
	}
	for _, r := range b.records {
		if !add(recordSize(r), r.version.Origin) {
			return nil, false
		}
		cur.records = append(cur.records, r)
	}
	for _, t := range b.touches {
		if !add(touchSize(t), t.version.Origin) {
			return nil, false
		}
		cur.touches = append(cur.touches, t)
	}
	flush()
	return msgs, true
}

// reader decodes with bounds checks; the first error sticks and later
// reads return zero values, so decoders check once at the end.
type reader struct {
	b   []byte
	err error
}

var errMalformed = errors.New("malformed message")

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail("%s missing", what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%s truncated or overflowing", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed64(what string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("%s truncated", what)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// bytes returns a copy, nil when empty: decoded values outlive the buffer
// (memberlist reuses it), and a value then pins only itself.
func (r *reader) bytes(limit int, what string) []byte {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(limit) {
		r.fail("%s of %d bytes exceeds %d", what, n, limit)
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("%s truncated", what)
		return nil
	}
	v := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	if n == 0 {
		return nil
	}
	return v
}

// name reads a non-empty string.
func (r *reader) name(limit int, what string) string {
	s := r.bytes(limit, what)
	if r.err == nil && len(s) == 0 {
		r.fail("%s empty", what)
	}
	return string(s)
}

// count reads a number of items each at least minSize bytes long, refusing
// counts the rest of the message cannot hold (before anything is allocated
// for them).
func (r *reader) count(minSize int, what string) int {
	n := r.uvarint(what)
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.fail("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) duration(what string) time.Duration {
	ms := r.uvarint(what)
	if r.err == nil && ms > uint64(maxDuration/time.Millisecond) {
		r.fail("%s of %d ms too long", what, ms)
	}
	return time.Duration(ms) * time.Millisecond
}

func (r *reader) version(origins []string, what string) Version {
	clock := r.uvarint(what + " clock")
	idx := r.uvarint(what + " origin")
	if r.err != nil {
		return Version{}
	}
	if clock == 0 {
		r.fail("%s clock is 0", what)
	}
	if idx >= uint64(len(origins)) {
		r.fail("%s origin %d of %d", what, idx, len(origins))
		return Version{}
	}
	return Version{Clock: clock, Origin: origins[idx]}
}

func (r *reader) end() {
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
}

func decodeMessage(b []byte) (message, error) {
	r := &reader{b: b}
	var m message
	if v := r.byte("format version"); r.err == nil && v != formatVersion {
		r.fail("format version %d, want %d", v, formatVersion)
	}
	m.kind = kind(r.byte("kind"))
	m.sender = r.name(maxNameLen, "sender")
	m.clock = r.uvarint("clock")
	m.digest = r.fixed64("digest")
	if r.err != nil {
		return message{}, r.err
	}
	switch m.kind {
	case kindStatus, kindBye:
	case kindGossip, kindDirect, kindState:
		m.batch = decodeBatch(r)
	case kindQuestion:
		m.id = r.uvarint("question id")
		m.timeout = r.duration("question timeout")
		m.payload = r.bytes(maxPayloadLen, "question")
	case kindAnswer:
		m.id = r.uvarint("answer id")
		m.payload = r.bytes(maxPayloadLen, "answer")
	default:
		r.fail("unknown kind %d", m.kind)
	}
	r.end()
	if r.err != nil {
		return message{}, r.err
	}
	return m, nil
}

// Least encoded sizes, for reader.count.
const (
	minRecordSize = 6 // key, clock, origin, flags, ttl, value
	minTouchSize  = 5 // key, clock, origin, ttl
)

func decodeBatch(r *reader) batch {
	origins := make([]string, r.count(2, "origins"))
	for i := range origins {
		origins[i] = r.name(maxNameLen, "origin")
	}
	var b batch
	if n := r.count(minRecordSize, "records"); n > 0 {
		b.records = make([]wireRecord, n)
		for i := range b.records {
			b.records[i] = decodeRecord(r, origins)
		}
	}
	if n := r.count(minTouchSize, "touches"); n > 0 {
		b.touches = make([]wireTouch, n)
		for i := range b.touches {
			b.touches[i] = decodeTouch(r, origins)
		}
	}
	return b
}

func decodeRecord(r *reader, origins []string) wireRecord {
	var w wireRecord
	w.key = r.name(maxKeyLen, "record key")
	w.version = r.version(origins, "record")
	switch flags := r.byte("record flags"); flags {
	case 0:
	case 1:
		w.deleted = true
	default:
		r.fail("record flags %#x", flags)
	}
	w.ttl = r.duration("record ttl")
	w.value = r.bytes(maxValueLen, "record value")
	if w.deleted && w.value != nil {
		r.fail("deleted record with a value")
	}
	if w.deleted && w.ttl == 0 {
		r.fail("deleted record that never expires")
	}
	return w
}

func decodeTouch(r *reader, origins []string) wireTouch {
	var t wireTouch
	t.key = r.name(maxKeyLen, "touch key")
	t.version = r.version(origins, "touch")
	t.ttl = r.duration("touch ttl")
	if r.err == nil && t.ttl == 0 {
		r.fail("touch ttl is 0")
	}
	return t
}
