package ajp

import "testing"

// BenchmarkAppendForwardRequest encodes a request head into a reused
// buffer, as Client.Do does into its connection's buffer.
func BenchmarkAppendForwardRequest(b *testing.B) {
	r := sampleRequest()
	buf := make([]byte, 0, DefaultPacketSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendForwardRequest(buf[:0], r, DefaultPacketSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseSendHeaders decodes a response head like Tomcat's for a
// static page, reusing the header slice as Client.Do does.
func BenchmarkParseSendHeaders(b *testing.B) {
	pkt, err := AppendSendHeaders(nil, 200, "OK", []Header{
		{[]byte("Accept-Ranges"), []byte("bytes")},
		{[]byte("ETag"), []byte(`W/"150-1700000000000"`)},
		{[]byte("Last-Modified"), []byte("Tue, 14 Nov 2023 22:13:20 GMT")},
		{[]byte("Content-Type"), []byte("text/html")},
		{[]byte("Content-Length"), []byte("150")},
		{[]byte("Set-Cookie"), []byte("JSESSIONID=4F2A9C1B7E.a; Path=/; HttpOnly")},
	}, DefaultPacketSize)
	if err != nil {
		b.Fatal(err)
	}
	var sh SendHeaders
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseSendHeaders(pkt[headerLen:], &sh); err != nil {
			b.Fatal(err)
		}
	}
}
