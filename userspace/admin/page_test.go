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
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/version"
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
	h := Handler(Sources{Pool: pool, Target: func(m *balancer.Member) string {
		if m.Name == "a" {
			return "ajp://10.0.0.1:8009"
		}
		return ""
	}}, "")
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

// fetch returns the page at path.
func fetch(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d", path, rec.Code)
	}
	return rec.Body.String()
}

// memberRow returns the table row of member name.
func memberRow(t *testing.T, body, name string) string {
	t.Helper()
	_, row, ok := strings.Cut(body, `<tr id="member-`+name+`">`)
	if !ok {
		t.Fatalf("no row for %s", name)
	}
	row, _, _ = strings.Cut(row, "</tr>")
	return row
}

// The page explains: the process, the client side, each member's health
// check and how long it has been in its state, errors that are over shown
// as past, only the actions that apply, and auto-refresh when asked.
func TestPageExplains(t *testing.T) {
	a, b := balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a.SetLastError(time.Now().Add(-10*time.Minute), "connect: connection refused") // long over: a is ok
	a.SetFlags(balancer.Drain)
	pool.MarkError(b)
	b.SetLastError(time.Now(), "reset: connection reset by peer")
	checked := time.Now().Add(-2 * time.Second)
	src := Sources{Pool: pool, Version: version.Info{Version: "1.2.3"}, Started: time.Now().Add(-time.Hour),
		ClientConns: func() (uint64, uint64, int) { return 3, 41, 100 },
		Health: func(m *balancer.Member) (health.Status, bool) {
			return health.Status{Last: &health.Result{At: checked, Duration: 1500 * time.Microsecond}, Failures: 1, Fall: 2, Rise: 2}, true
		}}
	h := Handler(src, "")
	body := fetch(t, h, "/")
	for _, want := range []string{"1.2.3", "up <span id=\"uptime\">1h0m0s</span>", `<b>3</b> open of 100`, `3.0%`, "41 accepted",
		`auto-refresh: <span id="refresh">off</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("the page refreshes itself without being asked to")
	}
	rowA, rowB := memberRow(t, body, "a"), memberRow(t, body, "b")
	for _, want := range []string{`data-state="drain"`, "for 0s", `data-result="pass"`, "took 1.5 ms", "1 of 2 failures to down",
		`<span class="past" data-current="false">past: connect: connection refused</span>`} {
		if !strings.Contains(rowA, want) {
			t.Errorf("a's row lacks %q:\n%s", want, rowA)
		}
	}
	if !strings.Contains(rowB, `<span class="err" data-current="true">reset: connection reset by peer</span>`) {
		t.Errorf("b's current error is not shown as current:\n%s", rowB)
	}
	buttons := func(row string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`name="do" value="([a-z]+)"`).FindAllStringSubmatch(row, -1) {
			out = append(out, m[1])
		}
		return out
	}
	if got := strings.Join(buttons(rowA), " "); got != "enable disable evacuate weight" {
		t.Errorf("actions of a draining member: %s", got)
	}
	if got := strings.Join(buttons(rowB), " "); got != "disable drain evacuate recover weight" {
		t.Errorf("actions of a member in error: %s", got)
	}

	body = fetch(t, h, "/?refresh=5")
	if !strings.Contains(body, `<meta http-equiv="refresh" content="5">`) || !strings.Contains(body, `every 5 s`) {
		t.Error("?refresh=5 does not refresh every 5 s")
	}
	for _, bad := range []string{"/?refresh=0", "/?refresh=x", "/?refresh=99999"} {
		if strings.Contains(fetch(t, h, bad), `http-equiv="refresh"`) {
			t.Errorf("%s refreshes", bad)
		}
	}
}
