package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one request as the log tells it. Its slices may point into
// the request's buffers: Write copies what it needs before returning.
type Record struct {
	At                time.Time // when the answer ended
	Client            netip.Addr
	Method, Target    []byte
	Proto             []byte // "HTTP/1.1"
	Status            int
	BytesIn, BytesOut int64 // body bytes from the client, to the client
	Member            string
	Sticky            string // hit, new, moved, failover, unknown_route; "-" when no member was picked
	Attempts          int
	MemberTime, Total time.Duration
	Referer, UA       []byte
}

// Write formats r and queues it; it never blocks. A line that finds no
// free buffer is dropped and counted.
func (w *Writer) Write(r *Record) {
	b := w.line()
	if b == nil {
		w.l.Dropped.Add(1)
		return
	}
	if w.l.format == JSON {
		b = w.appendJSON(b, r)
	} else {
		b = w.appendCombined(b, r)
	}
	w.done(b)
}

// appendCombined: host - - [time] "request" status bytes "referer" "ua",
// then catherd's fields.
func (w *Writer) appendCombined(b []byte, r *Record) []byte {
	b = r.Client.AppendTo(b)
	b = append(b, " - - ["...)
	b = append(b, w.stampFor(r.At, combinedTime)...)
	b = append(b, "] \""...)
	if len(r.Method) == 0 {
		b = append(b, '-') // no request line could be read, as Apache logs it
	} else {
		b = appendEscaped(b, r.Method, false)
		b = append(b, ' ')
		b = appendEscaped(b, r.Target, false)
		b = append(b, ' ')
		b = appendEscaped(b, r.Proto, false)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ' ')
	if r.BytesOut > 0 {
		b = strconv.AppendInt(b, r.BytesOut, 10)
	} else {
		b = append(b, '-')
	}
	b = appendQuotedOrDash(append(b, ' '), r.Referer)
	b = appendQuotedOrDash(append(b, ' '), r.UA)
	b = append(b, " member="...)
	b = append(b, orDash(r.Member)...)
	b = append(b, " sticky="...)
	b = append(b, orDash(r.Sticky)...)
	b = append(b, " attempts="...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, " in="...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, " member_ms="...)
	b = appendMillis(b, r.MemberTime)
	b = append(b, " total_ms="...)
	b = appendMillis(b, r.Total)
	return append(b, '\n')
}

func (w *Writer) appendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"time":"`...)
	b = append(b, w.stampFor(r.At, time.RFC3339)...)
	b = append(b, `","client":"`...)
	b = r.Client.AppendTo(b)
	b = append(b, `","method":"`...)
	b = appendEscaped(b, r.Method, true)
	b = append(b, `","target":"`...)
	b = appendEscaped(b, r.Target, true)
	b = append(b, `","proto":"`...)
	b = appendEscaped(b, r.Proto, true)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, `,"member":"`...)
	b = appendEscaped(b, []byte(r.Member), true)
	b = append(b, `","sticky":"`...)
	b = append(b, r.Sticky...)
	b = append(b, `","attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"member_ms":`...)
	b = appendMillis(b, r.MemberTime)
	b = append(b, `,"total_ms":`...)
	b = appendMillis(b, r.Total)
	b = append(b, `,"referer":"`...)
	b = appendEscaped(b, r.Referer, true)
	b = append(b, `","user_agent":"`...)
	b = appendEscaped(b, r.UA, true)
	return append(b, "\"}\n"...)
}

const combinedTime = "02/Jan/2006:15:04:05 -0700"

// stampFor formats t to the second in layout, once per second.
func (w *Writer) stampFor(t time.Time, layout string) []byte {
	if s := t.Unix(); s != w.sec || w.stamp == nil {
		w.sec = s
		w.stamp = t.UTC().AppendFormat(w.stamp[:0], layout)
	}
	return w.stamp
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	b = strconv.AppendInt(b, us/1000, 10)
	b = append(b, '.')
	frac := us % 1000
	b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appendQuotedOrDash(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, `"-"`...)
	}
	b = append(b, '"')
	b = appendEscaped(b, v, false)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends v with what could break a line or a field
// escaped: quotes, backslashes, control characters and invalid UTF-8 as
// \xHH (or, in JSON, \uXXXX), so that a client cannot forge log lines.
func appendEscaped(b, v []byte, json bool) []byte {
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRune(v[i:])
			if r != utf8.RuneError || n > 1 {
				b = append(b, v[i:i+n]...)
				i += n
				continue
			}
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f || c >= 0x80:
			if json {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			} else {
				b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
			}
		default:
			b = append(b, c)
		}
		i++
	}
	return b
}
