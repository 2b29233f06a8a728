package admin

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
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
}).Parse(pageHTML))

// tokenCookie holds the admin token in a logged-in browser.
const tokenCookie = "catherd_admin_token"

// pageData is what the template renders.
type pageData struct {
	Status
	Nonce    string
	Actions  []string
	NeedsLog bool   // a token is set and this browser has not logged in
	Message  string // the outcome of the last action, or why it failed
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
		pageTemplate.Execute(w, pageData{Status: Collect(src, time.Now()), Nonce: nonce,
			Actions: []string{"enable", "disable", "drain", "evacuate", "recover"}, NeedsLog: !loggedIn(r), Message: msg})
	}
	// checkForm answers 403 unless the form carries the nonce and, with a
	// token, comes from a logged-in browser.
	checkForm := func(w http.ResponseWriter, r *http.Request, needLogin bool) bool {
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("nonce")), []byte(nonce)) != 1 {
			render(w, r, http.StatusForbidden, "refused: the form's nonce is missing or stale (reload the page)")
			return false
		}
		if needLogin && !loggedIn(r) {
			render(w, r, http.StatusForbidden, "refused: log in with the admin token first")
			return false
		}
		return true
	}

	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, r.URL.Query().Get("msg"))
	})
	mux.HandleFunc("POST /ui/login", func(w http.ResponseWriter, r *http.Request) {
		if !checkForm(w, r, false) {
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
	mux.HandleFunc("POST /ui/members/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		if !checkForm(w, r, true) {
			return
		}
		name, action := r.PathValue("name"), r.PathValue("action")
		m := src.Pool.Member(name)
		if m == nil {
			render(w, r, http.StatusNotFound, "no member "+name)
			return
		}
		if status, err := act(src.Pool, m, action, url.Values{"value": {r.PostFormValue("value")}}); err != nil {
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
