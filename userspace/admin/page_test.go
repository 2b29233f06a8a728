package admin

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

var nonceField = regexp.MustCompile(`name="nonce" value="([0-9a-f]+)"`)

// page fetches the page with the given cookies and returns its body and
// nonce.
func page(t *testing.T, h http.Handler, cookies ...*http.Cookie) (string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("GET /: %d", rec.Code)
	}
	m := nonceField.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no nonce in the page:\n%s", rec.Body)
	}
	return rec.Body.String(), m[1]
}

func submit(h http.Handler, path string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func testPool(t *testing.T) (*balancer.Pool, *balancer.Member) {
	t.Helper()
	a := balancer.NewMember("a", "a", 1, 0)
	b := balancer.NewMember("b", "b", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return pool, a
}

func TestPageShowsMembersEscaped(t *testing.T) {
	pool, a := testPool(t)
	a.SetLastError(time.Now(), `connect: <script>alert("x")</script>`)
	h := Handler(Sources{Pool: pool, Targets: map[string]string{"a": "ajp://10.0.0.1:8009"}}, "")
	body, _ := page(t, h)
	for _, want := range []string{`id="member-a"`, `id="member-b"`, "ajp://10.0.0.1:8009", `data-state="ok"`,
		`connect: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("a backend-supplied string reached the page unescaped")
	}
}

func TestPageActionsNeedTheNonce(t *testing.T) {
	pool, a := testPool(t)
	h := Handler(Sources{Pool: pool}, "")
	_, nonce := page(t, h)
	if rec := submit(h, "/ui/members/a/drain", url.Values{}); rec.Code != 403 || a.Flags() != 0 {
		t.Fatalf("no nonce: %d, flags %v", rec.Code, a.Flags())
	}
	if rec := submit(h, "/ui/members/a/drain", url.Values{"nonce": {"00" + nonce[2:]}}); rec.Code != 403 || a.Flags() != 0 {
		t.Fatalf("wrong nonce: %d, flags %v", rec.Code, a.Flags())
	}
	rec := submit(h, "/ui/members/a/drain", url.Values{"nonce": {nonce}})
	if rec.Code != http.StatusSeeOther || a.Flags() != balancer.Drain {
		t.Fatalf("drain: %d, flags %v", rec.Code, a.Flags())
	}
	if rec := submit(h, "/ui/members/a/weight", url.Values{"nonce": {nonce}, "value": {"9"}}); rec.Code != http.StatusSeeOther || a.Weight() != 9 {
		t.Fatalf("weight: %d, weight %d", rec.Code, a.Weight())
	}
	// a drains, so b is the last member that takes sessions: refused.
	if rec := submit(h, "/ui/members/b/evacuate", url.Values{"nonce": {nonce}}); rec.Code != http.StatusConflict ||
		!strings.Contains(rec.Body.String(), "cannot evacuate b") {
		t.Fatalf("evacuate b: %d", rec.Code)
	}
	if rec := submit(h, "/ui/members/zz/enable", url.Values{"nonce": {nonce}}); rec.Code != 404 {
		t.Fatalf("unknown member: %d", rec.Code)
	}
}

func TestPageLogin(t *testing.T) {
	pool, a := testPool(t)
	const token = "page-test-token-0123456789"
	h := Handler(Sources{Pool: pool}, token)
	body, nonce := page(t, h)
	if !strings.Contains(body, `id="login"`) {
		t.Fatal("no login form though a token is set")
	}
	if rec := submit(h, "/ui/members/a/disable", url.Values{"nonce": {nonce}}); rec.Code != 403 || a.Flags() != 0 {
		t.Fatalf("action before login: %d", rec.Code)
	}
	if rec := submit(h, "/ui/login", url.Values{"nonce": {nonce}, "token": {"wrong"}}); rec.Code != 403 || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("wrong token: %d", rec.Code)
	}
	rec := submit(h, "/ui/login", url.Values{"nonce": {nonce}, "token": {token}})
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d, cookies %+v", rec.Code, cookies)
	}
	if body, _ := page(t, h, cookies...); strings.Contains(body, `id="login"`) {
		t.Error("logged in, still asked to log in")
	}
	if rec := submit(h, "/ui/members/a/disable", url.Values{"nonce": {nonce}}, cookies...); rec.Code != http.StatusSeeOther || a.Flags() != balancer.Disabled {
		t.Fatalf("action after login: %d, flags %v", rec.Code, a.Flags())
	}
}
