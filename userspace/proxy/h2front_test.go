package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/proxy/h2test"
)

// refused stands for either way catherd may refuse a malformed HTTP/2
// request (RFC 9113 section 8.1.1): a 400 response or a stream error.
const refused = "refused"

// HTTP/2 requests that cannot be forwarded as HTTP/1.1 as they are, sent
// frame by frame: each is refused and reaches no member, or reaches it in
// one unambiguous form. Each case runs on its own connection and member.
func TestHTTP2Requests(t *testing.T) {
	pseudo := func(method, authority, path string) []string {
		f := []string{":method", method, ":scheme", "https"}
		if authority != "" {
			f = append(f, ":authority", authority)
		}
		return append(f, ":path", path)
	}
	get := pseudo("GET", "front.test", "/a")
	post := pseudo("POST", "front.test", "/a")
	with := func(base []string, fields ...string) []string {
		return append(append([]string(nil), base...), fields...)
	}
	cases := []struct {
		name   string
		fields []string
		body   []byte // nil: END_STREAM on HEADERS
		want   string // the outcome as h2Client.result tells it, or refused
		// forwarded: what the member must have seen, as substrings of
		// its one request; nil when nothing may reach it.
		forwarded []string
	}{
		{"plain GET", get, nil, "200", []string{"GET /a HTTP/1.1\r\n", "\r\nHost: front.test\r\n", "\r\nX-Forwarded-Host: front.test\r\n"}},
		{"host names another authority", with(get, "host", "evil.test"), nil, refused, nil},
		{"host repeats :authority", with(get, "host", "Front.Test"), nil, "200", []string{"\r\nHost: front.test\r\n"}},
		{"two hosts", with(pseudo("GET", "", "/a"), "host", "front.test", "host", "front.test"), nil, refused, nil},
		{"host alone", with(pseudo("GET", "", "/a"), "host", "only.test"), nil, "200", []string{"\r\nHost: only.test\r\n", "\r\nX-Forwarded-Host: only.test\r\n"}},
		{"no authority", pseudo("GET", "", "/a"), nil, refused, nil},
		{"userinfo in :authority", pseudo("GET", "user@front.test", "/a"), nil, refused, nil},
		{"space in :authority", pseudo("GET", "front.test x", "/a"), nil, refused, nil},
		{"space in :path", pseudo("GET", "front.test", "/a b"), nil, refused, nil},
		{"tab in :path", pseudo("GET", "front.test", "/a\tb"), nil, refused, nil},
		{"fragment in :path", pseudo("GET", "front.test", "/a#b"), nil, refused, nil},
		{":path without a slash", pseudo("GET", "front.test", "a"), nil, refused, nil},
		{"asterisk for GET", pseudo("GET", "front.test", "*"), nil, refused, nil},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "front.test:443"}, nil, refused, nil},
		{"content-length agrees", with(post, "content-length", "5"), []byte("hello"), "200", []string{"POST /a HTTP/1.1\r\n", "\r\nContent-Length: 5\r\n", "\r\n\r\nhello"}},
		{"two content-lengths", with(post, "content-length", "5", "content-length", "40"), []byte("hello"), refused, nil},
		{"content-length list", with(post, "content-length", "5, 5"), []byte("hello"), refused, nil},
		{"content-length with a sign", with(post, "content-length", "+5"), []byte("hello"), refused, nil},
		{"content-length above the DATA", with(post, "content-length", "40"), []byte("hello"), refused, nil},
		{"content-length without DATA", with(post, "content-length", "40"), nil, refused, nil},
		{"te: trailers", with(get, "te", "trailers"), nil, "200", []string{"GET /a HTTP/1.1\r\n"}},
		// RFC 9113 section 8.2.2; h2spec 8.1.2.2 wants a stream error.
		{"connection", with(get, "connection", "keep-alive"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"keep-alive", with(get, "keep-alive", "timeout=5"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"proxy-connection", with(get, "proxy-connection", "keep-alive"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"transfer-encoding", with(post, "transfer-encoding", "chunked"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"upgrade", with(get, "upgrade", "websocket"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"te other than trailers", with(get, "te", "trailers, deflate"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
		{"te: gzip", with(get, "te", "gzip"), nil, "RST_STREAM PROTOCOL_ERROR", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			member := newRecBackend(t)
			r := startRig(t, rigOptions{}, [2]string{"a", member.ln.Addr().String()})
			addr, config := r.tlsListener()
			c := h2test.Dial(t, addr, config)
			c.Request(1, tc.body, tc.fields...)
			got, body := c.Result(1)
			switch {
			case tc.want == refused && got != "400" && got != "RST_STREAM PROTOCOL_ERROR":
				t.Fatalf("got %s %q, want a 400 or a stream error PROTOCOL_ERROR", got, body)
			case tc.want != refused && got != tc.want:
				t.Fatalf("got %s %q, want %s", got, body, tc.want)
			}
			seen := member.requests()
			if tc.forwarded == nil {
				if len(seen) != 0 {
					t.Fatalf("refused, yet the member got %q", seen)
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("the member got %d requests, want 1: %q", len(seen), seen)
			}
			for _, want := range tc.forwarded {
				if !strings.Contains(seen[0], want) {
					t.Errorf("the member got %q, want it to contain %q", seen[0], want)
				}
			}
			if n := strings.Count(seen[0], "\r\nHost: "); n != 1 {
				t.Errorf("the member got %d Host fields: %q", n, seen[0])
			}
		})
	}
}

// TestHTTP2RapidReset sends the shape of CVE-2023-44487: streams opened
// and reset at once, 1000 on one connection, each HEADERS and its
// RST_STREAM in one write. A stream the client has reset before catherd
// chose a member must not reach one, and is counted.
func TestHTTP2RapidReset(t *testing.T) {
	const streams = 1000
	member := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, member.spec())
	r.metrics.TLS(func() metrics.TLSStats { return metrics.TLSStats{} })
	addr, config := r.tlsListener()
	c := h2test.Dial(t, addr, config)
	for i := range streams {
		id := uint32(2*i + 1)
		c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
			BlockFragment: c.HeaderBlock(":method", "GET", ":scheme", "https", ":authority", "front.test", ":path", "/burst")})
		c.Framer.WriteRSTStream(id, http2.ErrCodeCancel)
		c.Flush()
	}
	// Frames are processed in order: when this answer comes, every reset
	// has been seen, and what was forwarded has reached the member.
	last := uint32(2*streams + 1)
	c.Get(last, "front.test", "/after")
	if got, body := c.Result(last); got != "200" || body != "a /after" {
		t.Fatalf("after the burst: %s %q", got, body)
	}
	deadline := time.Now().Add(h2test.Wait)
	for r.pool.Members()[0].Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("requests of the burst still in flight on the member")
		}
		time.Sleep(10 * time.Millisecond)
	}
	forwarded := member.hits.Load() - 1
	t.Logf("%d of %d reset streams forwarded", forwarded, streams)
	if forwarded != 0 {
		t.Errorf("%d of %d streams reset on arrival reached the member", forwarded, streams)
	}
	want := fmt.Sprintf("\ncatherd_http2_resets_unforwarded_total %d\n", streams-forwarded)
	if got := r.scrape(); !strings.Contains(got, want) {
		t.Errorf("metrics lack %q", strings.TrimSpace(want))
	}
}

// A stream reset while its small body is read, before a member is chosen,
// reaches no member and is counted as reset, not answered.
func TestHTTP2ResetMidBody(t *testing.T) {
	member := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, member.spec())
	r.metrics.TLS(func() metrics.TLSStats { return metrics.TLSStats{} })
	addr, config := r.tlsListener()
	c := h2test.Dial(t, addr, config)
	c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: c.HeaderBlock(":method", "POST", ":scheme", "https", ":authority", "front.test", ":path", "/up", "content-length", "10")})
	c.Framer.WriteData(1, false, []byte("hello"))
	c.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
	c.Get(3, "front.test", "/after")
	if got, body := c.Result(3); got != "200" || body != "a /after" {
		t.Fatalf("next stream: %s %q", got, body)
	}
	deadline := time.Now().Add(h2test.Wait)
	for !strings.Contains(r.scrape(), "\ncatherd_http2_resets_unforwarded_total 1\n") {
		if time.Now().After(deadline) {
			t.Fatal("the reset stream was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := member.hits.Load(); n != 1 {
		t.Fatalf("the member got %d requests, want 1 (/after)", n)
	}
}

// Drain tells an HTTP/2 client GOAWAY and lets its stream in flight
// finish, behind the frame guard too.
func TestHTTP2Drain(t *testing.T) {
	release := make(chan struct{})
	member := newNamedBackend(t, "a", func(w http.ResponseWriter, _ *http.Request) {
		<-release
		io.WriteString(w, "done")
	})
	r := startRig(t, rigOptions{}, member.spec())
	addr, config := r.tlsListener()
	c := h2test.Dial(t, addr, config)
	c.Get(1, "front.test", "/slow")
	deadline := time.Now().Add(h2test.Wait)
	for member.hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the member")
		}
		time.Sleep(10 * time.Millisecond)
	}
	drained := make(chan error, 1)
	go func() { drained <- r.px.Drain(context.Background()) }()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo || g.LastStreamID < 1 {
				t.Fatalf("GOAWAY %v, last stream %d; want NO_ERROR, stream 1 kept", g.ErrCode, g.LastStreamID)
			}
			break
		}
	}
	close(release)
	if got, body := c.Result(1); got != "200" || body != "done" {
		t.Fatalf("the stream in flight: %s %q", got, body)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

// HTTP/2 framing that net/http's server got wrong for h2spec: several
// values of one setting in a SETTINGS frame, a HEADERS frame over the
// frame size catherd advertises, and fields HTTP/2 forbids, also when
// they come in a CONTINUATION frame.
func TestHTTP2Frames(t *testing.T) {
	member := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, member.spec())
	addr, config := r.tlsListener()
	getFields := []string{":method", "GET", ":scheme", "https", ":authority", "front.test", ":path", "/x"}

	t.Run("a setting repeated", func(t *testing.T) {
		// Processed in order (RFC 9113 section 6.5.3): the last value holds.
		c := h2test.Dial(t, addr, config)
		c.Framer.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		c.Flush()
		c.Get(1, "front.test", "/x")
		if n := c.FirstData(1); n != 1 {
			t.Fatalf("first DATA frame of %d bytes, want 1 (the window the last value set)", n)
		}
	})
	t.Run("an invalid value before a valid one", func(t *testing.T) {
		c := h2test.Dial(t, addr, config)
		c.Framer.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
		c.Flush()
		if got, _ := c.Result(1); got != "GOAWAY FLOW_CONTROL_ERROR" {
			t.Fatalf("got %s, want GOAWAY FLOW_CONTROL_ERROR", got)
		}
	})
	t.Run("HEADERS over the frame size", func(t *testing.T) {
		c := h2test.Dial(t, addr, config)
		fields := append([]string(nil), getFields...)
		for i := range 5 {
			fields = append(fields, fmt.Sprint("x-dummy", i), strings.Repeat("x", 4000))
		}
		c.Request(1, nil, fields...)
		if got, _ := c.Result(1); got != "GOAWAY FRAME_SIZE_ERROR" && got != "closed" {
			t.Fatalf("got %s, want GOAWAY FRAME_SIZE_ERROR", got)
		}
	})
	t.Run("a refused stream reset at once", func(t *testing.T) {
		// Neither the refusal nor the reset costs the connection.
		c := h2test.Dial(t, addr, config)
		c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
			BlockFragment: c.HeaderBlock(append(append([]string(nil), getFields...), "connection", "close")...)})
		c.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
		c.Get(3, "front.test", "/y")
		if got, body := c.Result(3); got != "200" || body != "a /y" {
			t.Fatalf("next stream: %s %q", got, body)
		}
	})
	t.Run("fields across CONTINUATION frames", func(t *testing.T) {
		c := h2test.Dial(t, addr, config)
		for i, extra := range [][]string{{"x-ok", "1"}, {"connection", "close"}, {"x-ok", "2"}} {
			id := uint32(2*i + 1)
			block := c.HeaderBlock(append(append([]string(nil), getFields...), extra...)...)
			c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:3], EndStream: true})
			c.Framer.WriteContinuation(id, false, block[3:len(block)-2])
			c.Framer.WriteContinuation(id, true, block[len(block)-2:])
			c.Flush()
			want := "200"
			if extra[0] == "connection" {
				want = "RST_STREAM PROTOCOL_ERROR"
			}
			if got, body := c.Result(id); got != want {
				t.Fatalf("stream %d with %s: got %s %q, want %s", id, extra[0], got, body, want)
			}
		}
	})
}
