package peers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleBatch() batch {
	return batch{
		records: []wireRecord{
			{key: "moved/ABC123", version: Version{1767322245000, "lb1"}, ttl: 30 * time.Minute, value: []byte("node2")},
			{key: "action/node1", version: Version{1767322245001, "lb2"}, value: []byte(`{"state":"evacuate"}`)},
			{key: "moved/gone", version: Version{7, "lb1"}, deleted: true, ttl: time.Hour},
		},
		touches: []wireTouch{
			{key: "moved/XYZ", version: Version{1767322245002, "lb3"}, ttl: 29*time.Minute + 999*time.Millisecond},
		},
	}
}

func sampleMessages() []message {
	env := func(k kind) envelope {
		return envelope{kind: k, sender: "lb1", clock: 1767322245003, digest: 0x0123456789abcdef}
	}
	return []message{
		{envelope: env(kindStatus)},
		{envelope: env(kindBye)},
		{envelope: env(kindGossip), batch: sampleBatch()},
		{envelope: env(kindDirect), batch: sampleBatch()},
		{envelope: env(kindState), batch: sampleBatch()},
		{envelope: env(kindState)},
		{envelope: env(kindQuestion), id: 42, timeout: 1500 * time.Millisecond, payload: []byte("in flight to node1?")},
		{envelope: env(kindQuestion), id: 43},
		{envelope: env(kindAnswer), id: 42, payload: []byte("0")},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		got, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("kind %d: %v", m.kind, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("kind %d:\n got %+v\nwant %+v", m.kind, got, m)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	valid := encodeMessage(message{envelope: envelope{kind: kindGossip, sender: "lb1", clock: 9}, batch: sampleBatch()})
	head := encodeMessage(message{envelope: envelope{kind: kindGossip, sender: "lb1", clock: 9}})
	head = head[:len(head)-3] // without the empty batch's three counts
	body := func(parts ...[]byte) []byte { return append(bytes.Clone(head), bytes.Join(parts, nil)...) }
	u := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	s := func(v string) []byte { return appendString(nil, v) }
	origins := append(u(1), s("lb1")...)
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "format version missing"},
		{"format version", append([]byte{2}, valid[1:]...), "format version 2"},
		{"kind", append([]byte{1, 99}, valid[2:]...), "unknown kind 99"},
		{"empty sender", []byte{1, byte(kindBye), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "sender empty"},
		{"trailing", append(bytes.Clone(valid), 0), "1 trailing bytes"},
		{"truncated", valid[:len(valid)-1], "truncated"},
		{"too many origins", body(u(1000)), "1000 origins"},
		{"too many records", body(origins, u(1000)), "1000 records"},
		{"origin index", body(origins, u(1), s("k"), u(5), u(1), []byte{0}, u(0), u(0), u(0)), "origin 1 of 1"},
		{"clock 0", body(origins, u(1), s("k"), u(0), u(0), []byte{0}, u(0), u(0), u(0)), "clock is 0"},
		{"flags", body(origins, u(1), s("k"), u(5), u(0), []byte{2}, u(0), u(0), u(0)), "flags 0x2"},
		{"deleted with value", body(origins, u(1), s("k"), u(5), u(0), []byte{1}, u(9), s("v"), u(0)), "deleted record with a value"},
		{"deleted forever", body(origins, u(1), s("k"), u(5), u(0), []byte{1}, u(0), u(0), u(0)), "deleted record that never expires"},
		{"empty key", body(origins, u(1), s(""), u(5), u(0), []byte{0}, u(0), u(0), u(0)), "record key empty"},
		{"long key", body(origins, u(1), s(strings.Repeat("k", maxKeyLen+1)), u(5), u(0), []byte{0}, u(0), u(0), u(0)), "exceeds 1024"},
		{"long ttl", body(origins, u(1), s("k"), u(5), u(0), []byte{0}, u(1<<60), u(0), u(0)), "record ttl of"},
		{"touch ttl 0", body(origins, u(0), u(1), s("k"), u(5), u(0), u(0)), "touch ttl is 0"},
		{"overflowing number", body([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "origins truncated or overflowing"},
	} {
		_, err := decodeMessage(c.in)
		if err == nil || !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestPack(t *testing.T) {
	var b batch
	for i := range 300 {
		origin := []string{"lb1", "lb2", "lb3"}[i%3]
		b.records = append(b.records, wireRecord{key: "moved/" + strings.Repeat("s", i%40), version: Version{uint64(1e12 + i), origin}, ttl: time.Duration(i) * time.Second, value: []byte("node1")})
		b.touches = append(b.touches, wireTouch{key: "t" + strings.Repeat("x", i%50), version: Version{uint64(i + 1), origin}, ttl: time.Minute})
	}
	env := envelope{kind: kindGossip, sender: "lb1", clock: 1e12, digest: 1}
	msgs, ok := pack(env, b, gossipMessageMax)
	if !ok || len(msgs) < 10 {
		t.Fatalf("pack: %d messages, ok %v", len(msgs), ok)
	}
	var got batch
	for _, msg := range msgs {
		if len(msg) > gossipMessageMax {
			t.Errorf("a message of %d bytes, limit %d", len(msg), gossipMessageMax)
		}
		m, err := decodeMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		got.records = append(got.records, m.batch.records...)
		got.touches = append(got.touches, m.batch.touches...)
	}
	if !reflect.DeepEqual(got, b) {
		t.Error("the packed messages do not carry the batch")
	}

	big := batch{records: []wireRecord{{key: "k", version: Version{1, "a"}, value: make([]byte, gossipMessageMax)}}}
	if _, ok := pack(env, big, gossipMessageMax); ok {
		t.Error("a record larger than the limit was packed")
	}
	if msgs, ok := pack(env, batch{}, gossipMessageMax); !ok || len(msgs) != 0 {
		t.Errorf("empty batch: %d messages", len(msgs))
	}
}

// Each decoder is fuzzed on its own (so the fuzzer reaches deep into it
// without first finding a valid envelope), and whatever it accepts must
// encode back to something it decodes the same.

func FuzzDecodeMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := decodeMessage(in)
		if err != nil {
			return
		}
		again, err := decodeMessage(encodeMessage(m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", m, again, err)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &reader{b: in}
		b := decodeBatch(r)
		if r.end(); r.err != nil {
			return
		}
		r = &reader{b: appendBatch(nil, b)}
		again := decodeBatch(r)
		if r.end(); r.err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", b, again, r.err)
		}
	})
}

// fuzzOrigins is the origin table the record and touch targets decode
// against.
var fuzzOrigins = []string{"lb1", "lb2"}

func fuzzOne[T any](f *testing.F, decode func(*reader, []string) T, encode func([]byte, T, map[string]uint64) []byte) {
	index := map[string]uint64{"lb1": 0, "lb2": 1}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &reader{b: in}
		v := decode(r, fuzzOrigins)
		if r.end(); r.err != nil {
			return
		}
		r = &reader{b: encode(nil, v, index)}
		again := decode(r, fuzzOrigins)
		if r.end(); r.err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", v, again, r.err)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) { fuzzOne(f, decodeRecord, appendRecord) }

func FuzzDecodeTouch(f *testing.F) { fuzzOne(f, decodeTouch, appendTouch) }
