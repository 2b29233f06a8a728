// Package ajptest runs an AJP/1.3 container for tests: it decodes forward
// requests, hands them to a handler with a streaming body, answers CPING,
// checks the secret as Tomcat does (403, connection closed), and lets the
// handler misbehave on purpose: raw bytes, no END_RESPONSE, refused reuse.
package ajptest

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/catherd/catherd/ajp"
)

// Request is a decoded forward request with its body.
type Request struct {
	*ajp.ForwardRequest
	Body io.Reader
}

// Handler answers one request.
type Handler func(*Request, *ResponseWriter)

// Server is a test container listening on loopback.
type Server struct {
	Addr       string
	Secret     string
	PacketSize int

	Conns  atomic.Int64 // connections accepted
	CPings atomic.Int64 // CPINGs answered

	handler atomic.Pointer[Handler]
	ln      net.Listener
	wg      sync.WaitGroup
}

// SetHandler replaces the handler; connections use it from their next
// request on.
func (s *Server) SetHandler(h Handler) { s.handler.Store(&h) }

// NewServer starts a container requiring secret (empty: none), with
// Tomcat's default packet size.
func NewServer(secret string, h Handler) (*Server, error) {
	return NewServerPackets(secret, ajp.DefaultPacketSize, h)
}

// NewServerPackets is NewServer with packets of up to packetSize bytes
// (Tomcat's packetSize).
func NewServerPackets(secret string, packetSize int, h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), Secret: secret, PacketSize: packetSize, ln: ln}
	s.SetHandler(h)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops accepting; connections end when their peers close them.
func (s *Server) Close() {
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.Conns.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	pr := ajp.NewProxyReader(c, s.PacketSize)
	for {
		p, err := pr.Next()
		if err != nil || len(p) == 0 {
			return
		}
		switch p[0] {
		case ajp.TypeCPing:
			s.CPings.Add(1)
			if _, err := c.Write(ajp.AppendCPong(nil)); err != nil {
				return
			}
			continue
		case ajp.TypeForwardRequest:
		default:
			return
		}
		fr, err := ajp.ParseForwardRequest(bytes.Clone(p))
		if err != nil {
			return
		}
		w := &ResponseWriter{conn: c, packetSize: s.PacketSize, Reuse: true}
		if s.Secret != "" && string(fr.Secret) != s.Secret {
			w.Reuse = false
			w.WriteHeader(403)
			w.end()
			return
		}
		body := &bodyReader{pr: pr, conn: c, packetSize: s.PacketSize, left: -1}
		if cl := fr.Header("content-length"); cl != nil {
			body.left, _ = strconv.ParseInt(string(cl), 10, 64)
			body.first = body.left > 0
		}
		(*s.handler.Load())(&Request{ForwardRequest: fr, Body: body}, w)
		if w.closed {
			return
		}
		if !w.wroteHeader {
			w.WriteHeader(200)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return
		}
		w.end()
		if !w.Reuse || w.err != nil {
			return
		}
	}
}

// ResponseWriter sends a response as AJP messages.
type ResponseWriter struct {
	// Reuse is the END_RESPONSE reuse flag; false also closes the
	// connection after the response.
	Reuse       bool
	conn        net.Conn
	packetSize  int
	wroteHeader bool
	closed      bool
	err         error
}

// WriteHeader sends SEND_HEADERS.
func (w *ResponseWriter) WriteHeader(status int, headers ...ajp.Header) {
	w.wroteHeader = true
	pkt, err := ajp.AppendSendHeaders(nil, status, "", headers, w.packetSize)
	if err == nil {
		_, err = w.conn.Write(pkt)
	}
	w.setErr(err)
}

// Write sends body data as SEND_BODY_CHUNK messages.
func (w *ResponseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	max := ajp.MaxSendChunk(w.packetSize)
	written := 0
	for len(b) > 0 && w.err == nil {
		n := min(len(b), max)
		pkt, err := ajp.AppendSendBodyChunk(nil, b[:n], w.packetSize)
		if err == nil {
			_, err = w.conn.Write(pkt)
		}
		w.setErr(err)
		written += n
		b = b[n:]
	}
	return written, w.err
}

// Raw writes bytes as they are: for malformed answers.
func (w *ResponseWriter) Raw(b []byte) {
	_, err := w.conn.Write(b)
	w.setErr(err)
}

// Abort closes the connection without END_RESPONSE.
func (w *ResponseWriter) Abort() {
	w.closed = true
	w.conn.Close()
}

func (w *ResponseWriter) end() {
	_, err := w.conn.Write(ajp.AppendEndResponse(nil, w.Reuse))
	w.setErr(err)
}

func (w *ResponseWriter) setErr(err error) {
	if w.err == nil {
		w.err = err
	}
}

// bodyReader reads a request body: the first packet arrives unasked when
// the length is known; after that, each packet is asked for with
// GET_BODY_CHUNK, as Tomcat does. An empty packet ends the body.
type bodyReader struct {
	pr         *ajp.PacketReader
	conn       net.Conn
	packetSize int
	left       int64 // bytes still expected; -1: unknown
	first      bool  // a packet is on its way unasked
	pending    []byte
	done       bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.done || b.left == 0 {
			return 0, io.EOF
		}
		if !b.first {
			ask := ajp.MaxBodyChunk(b.packetSize)
			if b.left > 0 && b.left < int64(ask) {
				ask = int(b.left)
			}
			if _, err := b.conn.Write(ajp.AppendGetBodyChunk(nil, ask)); err != nil {
				return 0, err
			}
		}
		b.first = false
		pkt, err := b.pr.Next()
		if err == io.EOF {
			// The connection closed before the body's end, which
			// Tomcat reports to the servlet as an error too.
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
		data, err := ajp.ParseBodyPacket(pkt)
		if err != nil {
			return 0, err
		}
		if len(data) == 0 {
			b.done = true
			continue
		}
		b.pending = data
		if b.left > 0 {
			b.left -= int64(len(data))
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}
