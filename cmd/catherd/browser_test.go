package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catherd/catherd/userspace/admin"
)

// requireChromium returns the path of Debian's chromium, skipping the test
// without it (failing under CI=true).
func requireChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs chromium (apt-get install chromium); under CI=true that is a failure")
	}
	t.Skip("needs chromium (apt-get install chromium)")
	return ""
}

// The admin page in a real headless Chromium: it loads, shows the members
// with their health checks, the process and the client side, its drain
// button drains one (whose drain button then goes, and enable comes), and
// with ?refresh=1 it follows a change made elsewhere without being told.
func TestAdminPageInChromium(t *testing.T) {
	chromium := requireChromium(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	var backends []string
	for _, name := range []string{"alpha", "beta"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello from " + name + "\n"))
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, "--backend", name+"="+srv.URL)
	}
	listen, adminAddr := tcFreeAddr(t), tcFreeAddr(t)
	args := append([]string{"run", "--listen", listen, "--admin", adminAddr, "--metrics", "", "--health-interval", "100ms"}, backends...)
	tcStartCatherd(t, bin, args, filepath.Join(tmp, "catherd.log"), tmp)
	client := &http.Client{Timeout: 5 * time.Second}
	tcWaitReady(t, client, "http://"+listen+"/", 10*time.Second)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // as root, Chromium's sandbox will not start
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	watchdog := time.AfterFunc(2*time.Minute, cancel) // bounds the whole browser session
	defer watchdog.Stop()

	// The first Run starts the browser: no timeout on its context (see
	// chromedp.Run); each step gets one.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/")); err != nil {
		t.Fatalf("Chromium: open the page: %v", err)
	}
	tryText := func(sel string) (string, error) {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		return strings.TrimSpace(s), err
	}
	text := func(sel string) string {
		t.Helper()
		s, err := tryText(sel)
		if err != nil {
			t.Fatalf("Chromium: text of %s: %v", sel, err)
		}
		return s
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	members := text("#members")
	stateBefore := text("#member-alpha span.state")
	sctx, cancelStep := context.WithTimeout(ctx, 15*time.Second)
	err = chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`#member-alpha form[action$="/drain"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#message`)))
	cancelStep()
	if err != nil {
		t.Fatalf("Chromium: press drain: %v", err)
	}
	message, stateAfter := text("#message"), text("#member-alpha span.state")
	if title != "catherd" || !strings.Contains(members, "alpha") || !strings.Contains(members, "beta") {
		t.Fatalf("page %q shows members:\n%s", title, members)
	}
	if stateBefore != "ok" || stateAfter != "drain" || message != "alpha: drain" {
		t.Fatalf("drain from the page: state %q -> %q, message %q", stateBefore, stateAfter, message)
	}
	c := adminClient{base: "http://" + adminAddr, http: *client}
	var m admin.Member
	if err := c.do("GET", "/api/v1/members/alpha", &m); err != nil || m.Flags != "N" {
		t.Fatalf("the API after the page's drain: %+v, %v", m, err)
	}
	count := func(sel string) int {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		n, err := chromedp.Run(sctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
		if err != nil {
			t.Fatalf("Chromium: count %s: %v", sel, err)
		}
		return n
	}
	if count(`#member-alpha form[action$="/drain"]`) != 0 || count(`#member-alpha form[action$="/enable"]`) != 1 ||
		count(`#member-beta form[action$="/recover"]`) != 0 {
		t.Error("the actions shown are not those that apply: a draining member offers drain, or not enable; a member not in error offers recover")
	}

	// With auto-refresh, a change made through the API shows by itself;
	// by then the health checks have run too.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/?refresh=1")); err != nil {
		t.Fatalf("Chromium: open the page with ?refresh=1: %v", err)
	}
	if err := c.do("POST", "/api/v1/members/beta/disable", &m); err != nil {
		t.Fatal(err)
	}
	var state string
	for deadline := time.Now().Add(30 * time.Second); state != "disabled" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		state, _ = tryText("#member-beta span.state") // may meet the page mid-reload
	}
	if state != "disabled" {
		t.Fatalf("with ?refresh=1 the page still shows beta %q after it was disabled", state)
	}
	// The rest is read from a page that stays put (for an hour).
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/?refresh=3600")); err != nil {
		t.Fatalf("Chromium: open the page: %v", err)
	}
	if r := text("#refresh"); r != "every 3600 s" {
		t.Errorf("the refresh indicator: %q", r)
	}
	if h := text("#member-alpha td.health"); !strings.HasPrefix(h, "pass") || !strings.Contains(h, "ms") {
		t.Errorf("alpha's health check on the page: %q", h)
	}
	if p := text("#process"); !strings.Contains(p, "pid") || !strings.Contains(p, "up ") {
		t.Errorf("the process line: %q", p)
	}
	if cl := text("#clients"); !strings.Contains(cl, "open of 65536") {
		t.Errorf("the client line: %q", cl)
	}

	// A member added through the page's form, then removed with its
	// button.
	gamma := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from gamma\n")) }))
	t.Cleanup(gamma.Close)
	sctx, cancelStep = context.WithTimeout(ctx, 15*time.Second)
	err = chromedp.Do(sctx,
		chromedp.SendKeys(chromedp.CSS(`#add-member input[name="spec"]`), "gamma="+gamma.URL+",weight=3"),
		chromedp.Click(chromedp.CSS(`#add-member button`)),
		chromedp.WaitVisible(chromedp.CSS(`#member-gamma`)))
	cancelStep()
	if err != nil {
		t.Fatalf("Chromium: add gamma: %v", err)
	}
	if msg := text("#message"); msg != "gamma: added" {
		t.Errorf("the message after adding gamma: %q", msg)
	}
	if err := c.do("GET", "/api/v1/members/gamma", &m); err != nil || m.Weight != 3 || m.Target != gamma.URL {
		t.Errorf("the API after the page added gamma: %+v, %v", m, err)
	}
	// Drained first: someone else must be able to take its sessions.
	if err := c.do("POST", "/api/v1/members/alpha/enable", &m); err != nil {
		t.Fatal(err)
	}
	sctx, cancelStep = context.WithTimeout(ctx, 15*time.Second)
	err = chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`#member-gamma form[action$="/remove"] button`)),
		// The page before the click shows a message too (gamma's
		// addition): wait for the page after it, which has no gamma.
		chromedp.WaitNotPresent(chromedp.CSS(`#member-gamma`)),
		chromedp.WaitVisible(chromedp.CSS(`#message`)))
	cancelStep()
	if err != nil {
		t.Fatalf("Chromium: remove gamma: %v", err)
	}
	if msg := text("#message"); msg != "gamma: removed" || count(`#member-gamma`) != 0 {
		t.Errorf("after removing gamma from the page: message %q, %d rows of gamma", msg, count(`#member-gamma`))
	}
}
