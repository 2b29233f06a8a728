package session

import "testing"

func TestFromCookieHeader(t *testing.T) {
	c := Default
	tests := []struct{ header, want string }{
		{"JSESSIONID=ABC.node1", "ABC.node1"},
		{"a=1; JSESSIONID=ABC.node2; b=2", "ABC.node2"},
		{"a=1;JSESSIONID=X.n", "X.n"},
		{`JSESSIONID="Q.r"`, "Q.r"},
		{"JSESSIONID=; JSESSIONID=B.n3", "B.n3"},
		{"JSESSIONID=first.n1; JSESSIONID=second.n2", "first.n1"},
		{"jsessionid=ABC.node1", ""}, // cookie names are case-sensitive
		{"XJSESSIONID=ABC.node1", ""},
		{"", ""},
		{"JSESSIONID", ""},
	}
	for _, tt := range tests {
		if got := string(c.FromCookieHeader([]byte(tt.header))); got != tt.want {
			t.Errorf("FromCookieHeader(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestFromPath(t *testing.T) {
	c := Default
	tests := []struct{ target, want string }{
		{"/app/cart;jsessionid=ABC.node1?x=1", "ABC.node1"},
		{"/app/cart;jsessionid=ABC.node1", "ABC.node1"},
		{"/app;jsessionid=ABC.node1/more", "ABC.node1"},
		{"/app;v=1;jsessionid=ABC.node1;z=2", "ABC.node1"},
		{"/app?q=;jsessionid=ABC.node1", ""}, // in the query, not the path
		{"/app#;jsessionid=ABC.node1", ""},
		{"/app;jsessionid=", ""},
		{"/app;JSESSIONID=ABC.node1", ""},
		{"/app;jsessionidx=ABC.node1", ""},
		{"/app", ""},
	}
	for _, tt := range tests {
		if got := string(c.FromPath([]byte(tt.target))); got != tt.want {
			t.Errorf("FromPath(%q) = %q, want %q", tt.target, got, tt.want)
		}
	}
}

func TestRoute(t *testing.T) {
	tests := []struct {
		sep      byte
		id, want string
	}{
		{'.', "9BB776BF9523DDD13603A83FD59C59B3.tomcat1", "tomcat1"},
		{'.', "602FE178-n1.tomcat0", "tomcat0"}, // memcached-session-manager
		{'.', "602FE178-n1", ""},
		{'.', "A.b.c", "b.c"}, // first separator
		{'.', "A.", ""},
		{'!', "ABC!weblogic2", "weblogic2"},
		{'!', "ABC.x", ""},
	}
	for _, tt := range tests {
		c := Config{Separator: tt.sep}
		if _, route := c.Split([]byte(tt.id)); string(route) != tt.want {
			t.Errorf("route of %q (separator %q) = %q, want %q", tt.id, tt.sep, route, tt.want)
		}
	}
}

func TestParseSticky(t *testing.T) {
	c, err := ParseSticky("JSESSIONID|jsessionid", '.')
	if err != nil || c.CookieName != "JSESSIONID" || c.PathParam != "jsessionid" {
		t.Fatalf("got %+v, %v", c, err)
	}
	c, err = ParseSticky("SID", '.')
	if err != nil || c.CookieName != "SID" || c.PathParam != "SID" {
		t.Fatalf("single name: got %+v, %v", c, err)
	}
	c, err = ParseSticky("off", '.')
	if err != nil || c.Enabled() {
		t.Fatalf("off: got %+v, %v", c, err)
	}
	for _, bad := range []string{"|x", "x|", "a b|c", "a=b"} {
		if _, err := ParseSticky(bad, '.'); err == nil {
			t.Errorf("ParseSticky(%q) accepted", bad)
		}
	}
}

func FuzzSessionParsing(f *testing.F) {
	f.Add([]byte("a=1; JSESSIONID=ABC.node1"), []byte("/x;jsessionid=ABC.n2?q"))
	f.Add([]byte(`JSESSIONID="Q.r"`), []byte("/;jsessionid=;"))
	f.Fuzz(func(t *testing.T, cookie, target []byte) {
		c := Default
		if id := c.FromCookieHeader(cookie); id != nil {
			if len(id) == 0 {
				t.Fatal("empty cookie id returned as present")
			}
			c.Split(id)
		}
		if id := c.FromPath(target); id != nil {
			if len(id) == 0 {
				t.Fatal("empty path id returned as present")
			}
			if _, r := c.Split(id); r != nil && len(r) >= len(id) {
				t.Fatal("route longer than id")
			}
		}
	})
}
