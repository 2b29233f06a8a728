package ajp

import (
	"bytes"
	"strings"
)

// Header is one header or request attribute as a name/value pair.
type Header struct {
	Name, Value []byte
}

// ForwardRequest is the head of a request forwarded to the container.
// Strings are byte slices so that a proxy can point them into its own
// request buffers.
type ForwardRequest struct {
	Method     []byte
	Protocol   []byte // "HTTP/1.1"
	URI        []byte // the path, without the query string
	RemoteAddr []byte
	RemoteHost []byte
	ServerName []byte
	ServerPort int
	IsSSL      bool
	Headers    []Header

	// Attributes; empty ones are not sent.
	QueryString []byte
	Route       []byte
	Secret      []byte
	RemoteUser  []byte
	AuthType    []byte
	SSLCert     []byte
	SSLCipher   []byte
	SSLSession  []byte
	SSLKeySize  int // 0: not sent
	// Attributes sent as request attributes (0x0A), such as AJP_REMOTE_PORT.
	// Tomcat refuses names outside allowedRequestAttributesPattern, except
	// AJP_REMOTE_PORT, AJP_LOCAL_ADDR and AJP_SSL_PROTOCOL.
	Attributes []Header
}

// maxPlainNameLen keeps plain header names from colliding with the 0xA0nn
// codes that share the length field.
const maxPlainNameLen = 0x9FFF

// AppendForwardRequest appends r as one FORWARD_REQUEST packet. It fails
// with ErrTooLarge when the head does not fit packetSize: the proxy then
// answers the client 400, as the request cannot be carried.
func AppendForwardRequest(dst []byte, r *ForwardRequest, packetSize int) ([]byte, error) {
	dst, start := beginPacket(dst, magicToContainer)
	dst = append(dst, TypeForwardRequest)
	code := methodCode(r.Method)
	dst = append(dst, code)
	dst = appendString(dst, r.Protocol)
	dst = appendString(dst, r.URI)
	dst = appendString(dst, r.RemoteAddr)
	dst = appendString(dst, r.RemoteHost)
	dst = appendString(dst, r.ServerName)
	dst = appendUint16(dst, r.ServerPort)
	dst = appendBool(dst, r.IsSSL)
	var err error
	if dst, err = appendHeaders(dst, r.Headers, requestHeaderCode); err != nil {
		return dst[:start], err
	}
	for _, a := range []struct {
		code  byte
		value []byte
	}{
		{attrRemoteUser, r.RemoteUser}, {attrAuthType, r.AuthType}, {attrQueryString, r.QueryString},
		{attrRoute, r.Route}, {attrSSLCert, r.SSLCert}, {attrSSLCipher, r.SSLCipher},
		{attrSSLSession, r.SSLSession}, {attrSecret, r.Secret},
	} {
		if len(a.value) > 0 {
			dst = append(dst, a.code)
			dst = appendString(dst, a.value)
		}
	}
	if r.SSLKeySize > 0 {
		dst = append(dst, attrSSLKeySize)
		dst = appendUint16(dst, r.SSLKeySize)
	}
	for _, a := range r.Attributes {
		dst = append(dst, attrReqAttribute)
		dst = appendString(dst, a.Name)
		dst = appendString(dst, a.Value)
	}
	if code == methodStored {
		dst = append(dst, attrStoredMethod)
		dst = appendString(dst, r.Method)
	}
	dst = append(dst, attrTerminator)
	return endPacket(dst, start, packetSize)
}

func methodCode(m []byte) byte {
	for code, name := range methods {
		if name != "" && string(m) == name {
			return byte(code)
		}
	}
	return methodStored
}

func requestHeaderCode(name []byte) byte {
	if len(name) < 4 || len(name) > 15 {
		return 0
	}
	for code, h := range requestHeaders {
		if h != "" && len(h) == len(name) && bytes.EqualFold(name, []byte(h)) {
			return byte(code)
		}
	}
	return 0
}

// ParseForwardRequest decodes a FORWARD_REQUEST payload (type byte
// included). The result points into payload, and a coded method or header
// name into a table shared by all decodes: neither may be modified. Header
// names sent as codes come back in lower case, as Tomcat's table has them.
func ParseForwardRequest(payload []byte) (*ForwardRequest, error) {
	d := decoder{b: payload}
	if t := d.byte("type"); d.err == nil && t != TypeForwardRequest {
		return nil, malformed("type %d, want FORWARD_REQUEST", t)
	}
	r := &ForwardRequest{}
	code := d.byte("method")
	if int(code) < len(methodNames) && methodNames[code] != nil {
		r.Method = methodNames[code]
	} else if code != methodStored && d.err == nil {
		return nil, malformed("unknown method code %d", code)
	}
	r.Protocol = d.string("protocol")
	r.URI = d.string("uri")
	r.RemoteAddr = d.string("remote address")
	r.RemoteHost = d.string("remote host")
	r.ServerName = d.string("server name")
	r.ServerPort = d.uint16("server port")
	r.IsSSL = d.byte("is_ssl") != 0
	r.Headers = d.headers(nil, requestHeaderNames)
	for d.err == nil {
		switch a := d.byte("attribute"); a {
		case attrTerminator:
			if code == methodStored && r.Method == nil {
				return nil, malformed("stored method without its name")
			}
			return r, d.err
		case attrRemoteUser:
			r.RemoteUser = d.string("remote user")
		case attrAuthType:
			r.AuthType = d.string("auth type")
		case attrQueryString:
			r.QueryString = d.string("query string")
		case attrRoute:
			r.Route = d.string("route")
		case attrSSLCert:
			r.SSLCert = d.string("ssl cert")
		case attrSSLCipher:
			r.SSLCipher = d.string("ssl cipher")
		case attrSSLSession:
			r.SSLSession = d.string("ssl session")
		case attrSSLKeySize:
			r.SSLKeySize = d.uint16("ssl key size")
		case attrSecret:
			r.Secret = d.string("secret")
		case attrStoredMethod:
			r.Method = d.string("stored method")
		case attrReqAttribute:
			name := d.string("attribute name")
			r.Attributes = append(r.Attributes, Header{Name: name, Value: d.string("attribute value")})
		default:
			if d.err == nil {
				return nil, malformed("unknown attribute code %#x", a)
			}
		}
	}
	return nil, d.err
}

// Header returns the first header with the given name, ignoring case.
func (r *ForwardRequest) Header(name string) []byte {
	for _, h := range r.Headers {
		if strings.EqualFold(string(h.Name), name) {
			return h.Value
		}
	}
	return nil
}
