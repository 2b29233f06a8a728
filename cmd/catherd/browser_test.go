package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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

// The admin page in a real headless Chromium: it loads, shows the members,
// and its drain button drains one.
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
	args := append([]string{"run", "--listen", listen, "--admin", adminAddr, "--metrics", "", "--health-interval", "0"}, backends...)
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
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("Chromium: text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	members := text("#members")
	stateBefore := text("#member-alpha td.state")
	sctx, cancelStep := context.WithTimeout(ctx, 15*time.Second)
	err = chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`#member-alpha form[action$="/drain"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#message`)))
	cancelStep()
	if err != nil {
		t.Fatalf("Chromium: press drain: %v", err)
	}
	message, stateAfter := text("#message"), text("#member-alpha td.state")
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
}
