package proxy

import (
	"errors"
	"net/http"
	"testing"
)

func TestCheckHTTP2Request(t *testing.T) {
	// req is a request as net/http's HTTP/2 server hands it over: Host
	// from :authority (else from host), RequestURI from :path, and
	// ContentLength from the first content-length when a body follows.
	req := func(method, host, target string, contentLength int64, fields ...string) *http.Request {
		h := http.Header{}
		for i := 0; i+1 < len(fields); i += 2 {
			h.Add(fields[i], fields[i+1])
		}
		return &http.Request{Method: method, Host: host, RequestURI: target, ContentLength: contentLength, Header: h}
	}
	for _, tt := range []struct {
		name string
		r    *http.Request
		want error
	}{
		{"GET", req("GET", "shop.test", "/a?b=c", 0), nil},
		{"authority with port", req("GET", "shop.test:8443", "/", 0), nil},
		{"IPv6 authority", req("GET", "[::1]:8443", "/", 0), nil},
		{"no authority", req("GET", "", "/", 0), errH2Authority},
		{"userinfo", req("GET", "u@shop.test", "/", 0), errH2Authority},
		{"space in authority", req("GET", "shop.test x", "/", 0), errH2Authority},
		{"slash in authority", req("GET", "shop.test/x", "/", 0), errH2Authority},
		{"non-ASCII authority", req("GET", "shöp.test", "/", 0), errH2Authority},
		{"host equal to :authority", req("GET", "shop.test", "/", 0, "Host", "SHOP.test"), nil},
		{"host other than :authority", req("GET", "shop.test", "/", 0, "Host", "evil.test"), errH2Host},
		{"host twice", req("GET", "shop.test", "/", 0, "Host", "shop.test", "Host", "shop.test"), errH2Host},
		{"OPTIONS *", req("OPTIONS", "shop.test", "*", 0), nil},
		{"GET *", req("GET", "shop.test", "*", 0), errH2Path},
		{"empty path", req("GET", "shop.test", "", 0), errH2Path},
		{"relative path", req("GET", "shop.test", "a/b", 0), errH2Path},
		{"absolute URI", req("GET", "shop.test", "https://shop.test/", 0), errH2Path},
		{"space in path", req("GET", "shop.test", "/a b", 0), errH2Path},
		{"space in query", req("GET", "shop.test", "/a?b c", 0), errH2Path},
		{"tab in path", req("GET", "shop.test", "/a\tb", 0), errH2Path},
		{"DEL in path", req("GET", "shop.test", "/a\x7fb", 0), errH2Path},
		{"fragment", req("GET", "shop.test", "/a#b", 0), errH2Path},
		{"encoded space", req("GET", "shop.test", "/a%20b;jsessionid=X.a", 0), nil},
		{"UTF-8 in path", req("GET", "shop.test", "/späti", 0), nil},
		{"CONNECT", req("CONNECT", "shop.test:443", "shop.test:443", 0), errH2Connect},
		{"content-length with its body", req("POST", "shop.test", "/", 5, "Content-Length", "5"), nil},
		{"content-length 0", req("POST", "shop.test", "/", 0, "Content-Length", "0"), nil},
		{"no content-length", req("POST", "shop.test", "/", -1), nil},
		{"content-length twice", req("POST", "shop.test", "/", 5, "Content-Length", "5", "Content-Length", "40"), errH2ContentLength},
		{"content-length twice, equal", req("POST", "shop.test", "/", 5, "Content-Length", "5", "Content-Length", "5"), errH2ContentLength},
		{"content-length list", req("POST", "shop.test", "/", 0, "Content-Length", "5, 5"), errH2ContentLength},
		{"content-length with a sign", req("POST", "shop.test", "/", 0, "Content-Length", "+5"), errH2ContentLength},
		{"empty content-length", req("POST", "shop.test", "/", 0, "Content-Length", ""), errH2ContentLength},
		{"huge content-length", req("POST", "shop.test", "/", 0, "Content-Length", "99999999999999999999"), errH2ContentLength},
		// The HEADERS frame ended the stream: there is no body at all.
		{"content-length without a body", req("POST", "shop.test", "/", 0, "Content-Length", "40"), errH2ContentLength},
	} {
		if err := checkHTTP2Request(tt.r); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}
