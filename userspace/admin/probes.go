package admin

import (
	"fmt"
	"net/http"
)

// HandleProbes serves the process's own health on mux, for a supervisor
// or a load balancer in front of catherd (Kubernetes-style names):
//
//	GET /healthz  200 while the process answers at all (liveness)
//	GET /readyz   200 when ready() is nil, else 503 with its reason
//	              (readiness: listening, and a member to send requests to)
//
// catherd serves both on the admin and on the metrics address, so either
// can be the one a probe is allowed to reach. A nil ready is always ready.
func HandleProbes(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				plain(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %v", err))
				return
			}
		}
		plain(w, http.StatusOK, "ready")
	})
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}
