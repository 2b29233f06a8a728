// Package failover drives a bounded, continuous session load through the
// front ends of a Tomcat cluster (scripts/tomcat-rig.sh's counter.jsp) and
// checks what a session-replication-aware balancer promises, phase by
// phase: no request fails, no session loses an update (its counter never
// goes back), every front end sends a session to the same node (a session
// moves at most once per phase), and no session returns to the node it
// left. The catherd tests and scripts/failover/compare (the same scenario
// behind Apache) use it, so both are judged by the same rules.
package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape the load.
type Options struct {
	// Fronts are the balancers' base URLs ("http://10.77.0.1:8080");
	// each session's requests go round them in turn.
	Fronts []string
	// Sessions to create and keep busy (default 200).
	Sessions int
	// Workers send requests concurrently, each for its share of the
	// sessions, one at a time (default 8).
	Workers int
	// Pause between two requests of a worker bounds the rate (default
	// 10ms: at most Workers*100 requests a second).
	Pause time.Duration
	// MaxRequests bounds the whole run (default 200000).
	MaxRequests int64
	// Timeout per request (default 10s).
	Timeout time.Duration
}

// Report is what one phase saw.
type Report struct {
	Phase    string
	Requests int64
	// Failed requests: a transport error or a status other than 200.
	Failed int64
	// Lost: a session answered with a count not above its last one (an
	// update lost), or as a new session (the session lost).
	Lost int64
	// Recounted: a count that went up by more than one. A request that a
	// dying node applied and replicated but never answered, retried by
	// the balancer elsewhere: counted twice, nothing lost.
	Recounted int64
	// Moves: sessions served by another node than the request before.
	Moves int64
	// Split: moves of a session that already moved in this phase: front
	// ends (or one front end over time) disagree on where it lives.
	Split int64
	// Back: flap-backs. Moves to a node the session had left because
	// that node failed or was taken out of service (see Load.Out), from
	// a node still in service: the returned node's copy may be stale.
	// (A session whose new node goes out in turn may go anywhere.)
	Back int64
	// Errors are the first few failures of each kind, for the log.
	Errors []string

	logged map[*int64]int // errors kept, by the counter they count in
}

// Clean reports whether nothing failed, was lost, split or came back.
func (r Report) Clean() bool { return r.Failed == 0 && r.Lost == 0 && r.Split == 0 && r.Back == 0 }

func (r Report) String() string {
	return fmt.Sprintf("%-22s requests %6d  failed %4d  lost %4d  recounted %3d  moves %4d  split %4d  back %4d",
		r.Phase, r.Requests, r.Failed, r.Lost, r.Recounted, r.Moves, r.Split, r.Back)
}

// Load is a running load.
type Load struct {
	o        Options
	fronts   atomic.Pointer[[]string] // Options.Fronts, or what UseFronts set
	client   *http.Client
	sessions []*session
	sent     atomic.Int64
	stop     chan struct{}
	done     sync.WaitGroup
	stopOnce sync.Once

	mu      sync.Mutex
	reports []Report
	out     map[string]bool // nodes that failed or were taken out
}

// session is one client session; only its worker touches it.
type session struct {
	id, node string // node: the one that served it last
	count    int
	requests int
	movedIn  int             // phase number of its last move
	left     map[string]bool // nodes it moved away from while they were out
}

var counterLine = regexp.MustCompile(`^node=(\S+) session=(\S+) count=(\d+)\n?$`)

// Start creates the sessions (each by a request without one, through the
// fronts in turn) and keeps them busy until Stop. The first phase is
// named first.
func Start(ctx context.Context, o Options, first string) (*Load, error) {
	o.Sessions = cmp(o.Sessions, 200)
	o.Workers = cmp(o.Workers, 8)
	o.MaxRequests = int64(cmp(int(o.MaxRequests), 200000))
	if o.Pause == 0 {
		o.Pause = 10 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if len(o.Fronts) == 0 {
		return nil, errors.New("no front ends")
	}
	l := &Load{o: o, stop: make(chan struct{}), out: map[string]bool{}, reports: []Report{{Phase: first}},
		client: &http.Client{Timeout: o.Timeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2 * o.Workers}}}
	l.fronts.Store(&o.Fronts)
	for i := 0; i < o.Sessions; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		node, id, count, err := l.get(o.Fronts[i%len(o.Fronts)], "")
		if err != nil {
			return nil, fmt.Errorf("create session %d: %w", i, err)
		}
		if count != 1 {
			return nil, fmt.Errorf("create session %d: a new session counts 1, got %d", i, count)
		}
		l.sessions = append(l.sessions, &session{id: id, node: node, count: 1, requests: 1, left: map[string]bool{}})
	}
	for w := 0; w < o.Workers; w++ {
		l.done.Add(1)
		go l.work(ctx, w)
	}
	return l, nil
}

func cmp(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Out records that node failed or is being taken out of service: sessions
// that move away from it from now on must not come back to it.
func (l *Load) Out(node string) {
	l.mu.Lock()
	l.out[node] = true
	l.mu.Unlock()
}

// In records that node is back in service.
func (l *Load) In(node string) {
	l.mu.Lock()
	delete(l.out, node)
	l.mu.Unlock()
}

// UseFronts replaces the front ends the sessions' requests go round, from
// the next request on: to keep the load off one while it restarts, or to
// send every session through one.
func (l *Load) UseFronts(fronts ...string) {
	if len(fronts) > 0 {
		l.fronts.Store(&fronts)
	}
}

// Phase closes the current phase and opens the next.
func (l *Load) Phase(name string) {
	l.mu.Lock()
	l.reports = append(l.reports, Report{Phase: name})
	l.mu.Unlock()
}

// Stop ends the load, sends one last request in every session (so that
// none is left unchecked), and returns the reports, one per phase. Called
// again (say, by a test's cleanup), it returns the same reports.
func (l *Load) Stop() []Report {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.done.Wait()
		l.Phase("final sweep")
		for _, s := range l.sessions {
			l.step(s)
		}
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Report(nil), l.reports...)
}

func (l *Load) work(ctx context.Context, w int) {
	defer l.done.Done()
	for n := 0; ; n++ {
		for i := w; i < len(l.sessions); i += l.o.Workers {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(l.o.Pause):
			}
			if l.sent.Add(1) > l.o.MaxRequests {
				return
			}
			l.step(l.sessions[i])
		}
	}
}

// step sends one request of s and checks the answer.
func (l *Load) step(s *session) {
	fronts := *l.fronts.Load()
	front := fronts[s.requests%len(fronts)]
	s.requests++
	node, id, count, err := l.get(front, s.id)
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &l.reports[len(l.reports)-1]
	phase := len(l.reports)
	r.Requests++
	fail := func(counter *int64, format string, a ...any) {
		*counter++
		if r.logged == nil {
			r.logged = map[*int64]int{}
		}
		if r.logged[counter] < 4 {
			r.logged[counter]++
			r.Errors = append(r.Errors, fmt.Sprintf("session %s via %s: ", s.id, front)+fmt.Sprintf(format, a...))
		}
	}
	switch {
	case err != nil:
		fail(&r.Failed, "%v", err)
		return
	case id != s.id:
		fail(&r.Lost, "answered as session %s on %s (count %d): the session was lost", id, node, count)
		s.id, s.count, s.node = id, count, node
		return
	case count <= s.count:
		fail(&r.Lost, "count %d on %s after %d on %s: an update was lost", count, node, s.count, s.node)
	case count > s.count+1:
		r.Recounted++
	}
	s.count = count
	if node == s.node {
		return
	}
	r.Moves++
	if s.movedIn == phase {
		fail(&r.Split, "moved again in this phase: %s -> %s", s.node, node)
	}
	if s.left[node] && !l.out[s.node] {
		fail(&r.Back, "back on %s from %s: it had left %s when that node went out", node, s.node, node)
	}
	if l.out[s.node] {
		s.left[s.node] = true
	}
	s.movedIn, s.node = phase, node
}

// get requests counter.jsp in session id ("" for a new session) through
// front, by cookie.
func (l *Load) get(front, id string) (node, gotID string, count int, err error) {
	req, err := http.NewRequest(http.MethodGet, front+"/counter.jsp", nil)
	if err != nil {
		return "", "", 0, err
	}
	if id != "" {
		req.Header.Set("Cookie", "JSESSIONID="+id)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", "", 0, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", 0, fmt.Errorf("status %d: %.80q", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	m := counterLine.FindStringSubmatch(string(body))
	if m == nil {
		return "", "", 0, fmt.Errorf("not a counter: %.80q", body)
	}
	count, _ = strconv.Atoi(m[3])
	return m[1], m[2], count, nil
}
