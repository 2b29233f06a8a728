package proxy

import (
	"strings"
	"testing"
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			member := newRecBackend(t)
			r := startRig(t, rigOptions{}, [2]string{"a", member.ln.Addr().String()})
			addr, config := r.tlsListener()
			c := dialH2(t, addr, config)
			c.request(1, tc.body, tc.fields...)
			got, body := c.result(1)
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
