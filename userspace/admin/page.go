package admin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The page is catherd's balancer-manager: one HTML document, no script and
// no external asset, whose buttons are forms. Every form carries the
// page's nonce, which a page of another site cannot read, so it cannot
// make a browser act for it (CSRF). With an admin token, the browser must
// also have logged in with it (a SameSite=Strict, HttpOnly cookie).
// html/template escapes everything the backends or the network supplied.

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":   humanBytes,
	"deref":   deref,
	"percent": func(f float64) int { return int(100*f + 0.5) },
	"ago":     func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() },
	"ratio":   func(n uint64, of int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(max(of, 1))) },
	"seconds": func(s float64) string { return time.Duration(s * float64(time.Second)).Round(time.Second).String() },
	"ms":      func(s float64) string { return fmt.Sprintf("%.1f ms", 1000*s) },
	"actions": applicableActions,
}).Parse(pageHTML))

// refreshChoices are the auto-refresh periods the page offers, in seconds.
var refreshChoices = []int{5, 30}

// maxRefresh bounds ?refresh=N.
const maxRefresh = 3600

// tokenCookie holds the admin token in a logged-in browser.
const tokenCookie = "catherd_admin_token"

// pageData is what the template renders.
type pageData struct {
	Status
	Nonce    string
	NeedsLog bool   // a token is set and this browser has not logged in
	Message  string // the outcome of the last action, or why it failed
	// Refresh is the auto-refresh period in seconds, 0 for none (the
	// default: a page that reloads under an operator about to press a
	// button, or typing a weight, would lose it).
	Refresh        int
	RefreshChoices []int
	// Roster: members can be added and removed here.
	Roster bool
}

// applicableActions are the buttons worth showing for a member: those
// that would change something (enable a member that is disabled, stopped
// or draining; recover one in the error state; ...). Weight is always
// offered, as its own form.
func applicableActions(m Member) []string {
	off := strings.ContainsAny(m.Flags, "DS")
	var out []string
	if off || strings.Contains(m.Flags, "N") {
		out = append(out, "enable")
	}
	if !strings.Contains(m.Flags, "D") {
		out = append(out, "disable")
	}
	if !off && !strings.Contains(m.Flags, "N") {
		out = append(out, "drain")
	}
	if !off {
		out = append(out, "evacuate")
	}
	if m.State == "error" {
		out = append(out, "recover")
	}
	return out
}

// refreshOf reads ?refresh=N (seconds), 0 when absent or not in 1..maxRefresh.
func refreshOf(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("refresh"))
	if err != nil || n < 1 || n > maxRefresh {
		return 0
	}
	return n
}

func servePage(mux *http.ServeMux, src Sources, token string) {
	var raw [16]byte
	rand.Read(raw[:])
	nonce := hex.EncodeToString(raw[:])
	loggedIn := func(r *http.Request) bool {
		if token == "" {
			return true
		}
		c, err := r.Cookie(tokenCookie)
		return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(token)) == 1
	}
	render := func(w http.ResponseWriter, r *http.Request, status int, msg string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		pageTemplate.Execute(w, pageData{Status: Collect(src, time.Now()), Nonce: nonce, NeedsLog: !loggedIn(r), Message: msg,
			Refresh: refreshOf(r), RefreshChoices: refreshChoices, Roster: src.Roster != nil})
	}
	// checkForm answers 403 unless the form carries the nonce and, with a
	// token, comes from a logged-in browser; it returns why it refused.
	checkForm := func(w http.ResponseWriter, r *http.Request, needLogin bool) error {
		var err error
		switch {
		case subtle.ConstantTimeCompare([]byte(r.PostFormValue("nonce")), []byte(nonce)) != 1:
			err = errors.New("the form's nonce is missing or stale (reload the page)")
		case needLogin && !loggedIn(r):
			err = errors.New("log in with the admin token first")
		}
		if err != nil {
			render(w, r, http.StatusForbidden, "refused: "+err.Error())
		}
		return err
	}

	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, r.URL.Query().Get("msg"))
	})
	mux.HandleFunc("POST /ui/login", func(w http.ResponseWriter, r *http.Request) {
		if checkForm(w, r, false) != nil {
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(token)) != 1 || token == "" {
			render(w, r, http.StatusForbidden, "refused: wrong token")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: token, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/?msg="+url.QueryEscape("logged in"), http.StatusSeeOther)
	})
	mux.HandleFunc("POST /ui/members", func(w http.ResponseWriter, r *http.Request) {
		spec := strings.TrimSpace(r.PostFormValue("spec"))
		name, _, _ := strings.Cut(spec, "=") // a spec may hold an AJP secret: not logged
		err := checkForm(w, r, true)
		if err == nil {
			if _, err = src.addMember(spec); err != nil {
				render(w, r, rosterStatus(err), err.Error())
			}
		}
		src.logAction(r, "page", "add", name, "", err)
		if err == nil {
			http.Redirect(w, r, "/?msg="+url.QueryEscape(name+": added"), http.StatusSeeOther)
		}
	})
	mux.HandleFunc("POST /ui/members/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		name, action := r.PathValue("name"), r.PathValue("action")
		if err := checkForm(w, r, true); err != nil {
			src.logAction(r, "page", action, name, r.PostFormValue("value"), err)
			return
		}
		if action == "remove" { // drained first, as catherd member remove does
			ctx, cancel := context.WithTimeout(r.Context(), DefaultDrainWait)
			err := src.removeMember(ctx, name, true)
			cancel()
			src.logAction(r, "page", action, name, "", err)
			if err != nil {
				render(w, r, rosterStatus(err), err.Error())
				return
			}
			http.Redirect(w, r, "/?msg="+url.QueryEscape(name+": removed"), http.StatusSeeOther)
			return
		}
		m := src.Pool.Member(name)
		if m == nil {
			render(w, r, http.StatusNotFound, "no member "+name)
			return
		}
		status, err := src.act(m, action, url.Values{"value": {r.PostFormValue("value")}})
		src.logAction(r, "page", action, name, r.PostFormValue("value"), err)
		if err != nil {
			render(w, r, status, err.Error())
			return
		}
		msg := name + ": " + action
		if action == "weight" {
			msg += " " + strings.TrimSpace(r.PostFormValue("value"))
		}
		http.Redirect(w, r, "/?msg="+url.QueryEscape(msg), http.StatusSeeOther)
	})
}

// humanBytes renders a byte count with a binary unit.
func humanBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n)/1024, 0
	for f >= 1024 && unit < 5 {
		f /= 1024
		unit++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[unit])
}

// deref reads a pointer the template was given (nil reads as zero).
func deref(v any) any {
	switch p := v.(type) {
	case *bool:
		return p != nil && *p
	case *time.Time:
		if p == nil {
			return time.Time{}
		}
		return *p
	}
	return v
}
