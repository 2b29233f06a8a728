package proxy

import (
	"net/http"
	"strconv"
)

// Responses of catherd's own: refusals and failures. Their bodies say
// what went wrong in one line.

// appendPlainHead appends the head of a plain-text response of n bytes.
func appendPlainHead(dst []byte, code, n int, closing bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(code)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	if closing {
		dst = append(dst, "\r\nConnection: close"...)
	}
	return append(dst, "\r\n\r\n"...)
}

// statusBody is the one line a response of catherd's own carries.
func statusBody(code int, err error) string {
	switch code {
	case 400, 505:
		if err != nil {
			return err.Error() + "\n"
		}
	case 408:
		return "408 request timeout\n"
	case 414:
		return "414 URI too long\n"
	case 431:
		return "431 request header fields too large\n"
	case 502:
		return "502 bad gateway\n"
	case 504:
		return "504 gateway timeout\n"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
}

// continue100 is the interim answer to a client that waits before sending
// its body (Expect: 100-continue).
var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")
