// Package session finds the session id a request carries and the route
// (Tomcat's jvmRoute) embedded in it.
//
// A Tomcat session id looks like "9BB776BF9523DDD13603A83FD59C59B3.node1": the
// route is the text after the first separator. memcached-session-manager ids
// ("<id>-n1.node1") put their node id before the separator, so the rule still
// holds. The id travels in a cookie (JSESSIONID by default) or as a path
// parameter (";jsessionid=" in the request path); like Tomcat, the cookie wins
// when both are present.
//
// The package works on raw bytes and allocates nothing: it runs on every
// request.
package session

import (
	"bytes"
	"fmt"
	"strings"
)

// Config names where session ids live. The zero value disables stickiness.
type Config struct {
	// CookieName is the cookie holding the id ("JSESSIONID"); empty disables
	// the cookie form.
	CookieName string
	// PathParam is the path parameter holding the id ("jsessionid"); empty
	// disables the path form.
	PathParam string
	// Separator splits the id from the route: '.' for Tomcat, '!' for WebLogic.
	Separator byte
}

// Default is Tomcat's convention.
var Default = Config{CookieName: "JSESSIONID", PathParam: "jsessionid", Separator: '.'}

// ParseSticky reads the Apache-style stickysession value "COOKIE|param"
// ("JSESSIONID|jsessionid"). A single name is used for both forms, as
// mod_proxy_balancer does; "off" disables stickiness.
func ParseSticky(spec string, sep byte) (Config, error) {
	if spec == "off" || spec == "" {
		return Config{Separator: sep}, nil
	}
	cookie, param, found := strings.Cut(spec, "|")
	if !found {
		param = cookie
	}
	for _, name := range []string{cookie, param} {
		if name == "" || strings.ContainsAny(name, " \t;,=|\"") {
			return Config{}, fmt.Errorf("want COOKIE|param (e.g. JSESSIONID|jsessionid) or off, got %q", spec)
		}
	}
	return Config{CookieName: cookie, PathParam: param, Separator: sep}, nil
}

// Enabled reports whether any session form is configured.
func (c Config) Enabled() bool { return c.CookieName != "" || c.PathParam != "" }

// FromPath returns the value of the session path parameter in a request
// target such as "/app/cart;jsessionid=ABC.node1?x=1", or nil. Only the path
// is searched: a query string or fragment ends the search.
func (c Config) FromPath(target []byte) []byte {
	if c.PathParam == "" {
		return nil
	}
	if end := bytes.IndexAny(target, "?#"); end >= 0 {
		target = target[:end]
	}
	for {
		semi := bytes.IndexByte(target, ';')
		if semi < 0 {
			return nil
		}
		target = target[semi+1:]
		name, rest, ok := cutByte(target, '=')
		if ok && string(name) == c.PathParam {
			end := bytes.IndexAny(rest, ";/")
			if end >= 0 {
				rest = rest[:end]
			}
			if len(rest) == 0 {
				return nil
			}
			return rest
		}
	}
}

// FromCookieHeader returns the value of the session cookie in a Cookie
// header value ("a=1; JSESSIONID=ABC.node1"), or nil. Cookie names are
// case-sensitive, as browsers send them. When a name repeats, the first one
// wins: browsers send the most specific path first.
func (c Config) FromCookieHeader(header []byte) []byte {
	if c.CookieName == "" {
		return nil
	}
	for len(header) > 0 {
		var pair []byte
		pair, header, _ = cutByte(header, ';')
		pair = bytes.TrimLeft(pair, " \t")
		name, value, ok := cutByte(pair, '=')
		if !ok || string(bytes.TrimRight(name, " \t")) != c.CookieName {
			continue
		}
		value = bytes.Trim(value, " \t")
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if len(value) > 0 {
			return value
		}
	}
	return nil
}

// Split cuts a session id at the first separator into the key that names
// the session whatever node holds it, and the route (nil when absent).
func (c Config) Split(id []byte) (key, route []byte) {
	i := bytes.IndexByte(id, c.Separator)
	if i < 0 || i == len(id)-1 {
		return id, nil
	}
	return id[:i], id[i+1:]
}

func cutByte(s []byte, sep byte) (before, after []byte, found bool) {
	if i := bytes.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}
