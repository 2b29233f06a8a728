package proxy

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/httpwire"
	"github.com/catherd/catherd/userspace/netloop"
)

// exchange is one client request, from its head to the end of its
// response, across the members tried for it. Exchanges are pooled: an
// idle client connection holds none.
type exchange struct {
	cl      *clientConn
	req     httpwire.Request // points into cl.in, which stays put meanwhile
	headAt  int              // where the head starts in cl.in
	start   time.Time
	br      balancer.Request
	up      *Upstream
	outcome balancer.Outcome
	attempt int
	// freshRetry: the request was sent again on a new connection after a
	// reused one failed before any answer (once per request).
	freshRetry bool
	mc         *memberConn
	waitTimer  *netloop.Timer // bounds a wait for a connection slot
	begun      bool           // counted as in flight on up
	sentAt     int64          // when the request first went to a member

	body requestBody
	// early: the member answered before it had the whole body; the rest is
	// read and dropped (up to discardLimit) before the answer goes out.
	early bool

	resp response
	tun  tunnelState
	// down and up2 are bodies spliced member to client, client to member.
	down, up2 *splice
	ajp       ajpExchange // the AJP transport's state
	tmp       []byte      // room for a field value catherd builds
	iov       [][]byte    // the pieces of a write
}

// maxFreeExchanges bounds the exchanges a loop keeps for reuse: they are
// kept per loop (no lock, and unlike a sync.Pool, not dropped at every
// garbage collection, which would make the next requests allocate them).
const maxFreeExchanges = 1024

func acquireExchange(cl *clientConn) *exchange {
	lp := cl.lp
	var x *exchange
	if n := len(lp.free); n > 0 {
		x, lp.free = lp.free[n-1], lp.free[:n-1]
	} else {
		x = new(exchange)
	}
	x.cl = cl
	return x
}

func releaseExchange(x *exchange) {
	lp := x.lp()
	if x.waitTimer != nil {
		x.waitTimer.Stop()
	}
	x.down.release(lp)
	x.up2.release(lp)
	x.body.release(lp)
	// The slices keep their storage for the next exchange.
	fields, respFields, tmp, iov := x.req.Fields[:0], x.resp.head.Fields[:0], x.tmp[:0], x.iov[:0]
	ajpState := x.ajp.reset()
	*x = exchange{}
	x.req.Fields, x.resp.head.Fields, x.tmp, x.iov, x.ajp = fields, respFields, tmp, iov, ajpState
	if len(lp.free) < maxFreeExchanges {
		lp.free = append(lp.free, x)
	}
}

func (x *exchange) lp() *loop      { return x.cl.lp }
func (x *exchange) p() *Proxy      { return x.cl.lp.p }
func (x *exchange) opts() *Options { return &x.cl.lp.p.opts }

// begin starts the exchange of the head parsed at cl.in[at:at+n].
func (x *exchange) begin(at, n int) {
	cl := x.cl
	x.headAt = at
	cl.r = at + n
	x.start = time.Unix(0, cl.lp.now())
	x.br = balancer.Request{ClientIP: cl.remote.Addr()}
	if id := x.sessionID(); id != nil {
		x.br.SessionKey, x.br.Route = x.opts().Sticky.Split(id)
	}
	x.body.init(x)
	cl.phase = phaseExchange // the member's bounds apply now, or the body's below
	if x.req.Expect100 && x.req.HasBody() && x.req.Minor == 1 {
		// Answered here, and the field not forwarded: catherd reads the
		// body itself, whoever ends up with it.
		if !cl.write(continue100) {
			return
		}
	}
	if x.body.holding {
		cl.phase, cl.since = phaseBody, cl.lp.now()
		x.clientData()
		return
	}
	x.pick()
}

// sessionID finds the session id in a Cookie field, then in the path
// parameter.
func (x *exchange) sessionID() []byte {
	sticky := &x.opts().Sticky
	if !sticky.Enabled() {
		return nil
	}
	for i := range x.req.Fields {
		f := &x.req.Fields[i]
		if httpwire.EqualFold(f.Name, "cookie") {
			if id := sticky.FromCookieHeader(f.Value); id != nil {
				return id
			}
		}
	}
	return sticky.FromPath(x.req.Target)
}

// clientData takes the bytes the client sent during the exchange: body
// bytes to hold, to send on, or to drop.
func (x *exchange) clientData() {
	cl := x.cl
	switch {
	case x.up2 != nil:
		x.spliceUp()
		return
	case x.tun.on:
		x.tunnelUp(nil)
		return
	case x.body.holding:
		if err := x.body.hold(x); err != nil {
			x.refuseBody(err)
			return
		}
		if x.body.holding {
			cl.ResumeRead()
			return
		}
		cl.phase = phaseExchange
		x.pick() // x may be done with after this
		return
	case x.body.discarding:
		err := x.body.discard(x)
		if err != nil {
			// Past the limit, or broken: the answer goes now, and the
			// connection closes after it.
			x.body.gaveUp = true
			x.resp.clientClose = true
			cl.PauseRead()
		}
		if err != nil || x.body.in {
			x.body.discarding = false
			x.resp.afterDiscard(x)
			return
		}
	case x.mc != nil && x.mc.state == mcBusy && x.body.sending:
		if err := x.up.t.sendBody(x); err != nil {
			x.bodyFailed(err)
			return
		}
	}
	// A request the client sends before this one is done waits in the
	// buffer (reading stops when it is full), rather than reads being
	// paused and resumed for every request, two epoll_ctl calls each.
	if x.body.in {
		if cl.phase == phaseBody {
			cl.phase = phaseExchange // the body is in: the member's bounds apply
		}
	} else if cl.r == cl.w {
		cl.ResumeRead()
	}
}

// clientWritable: the client took what was queued; the member's answer
// may flow again.
func (x *exchange) clientWritable() {
	if x.down != nil {
		x.spliceDown()
		return
	}
	if x.tun.on {
		x.mc.resume()
		x.tunnelDown(nil)
		return
	}
	if x.mc != nil && x.mc.state == mcBusy && x.resp.headSent {
		x.mc.resume()
		x.up.t.response(x, nil)
	}
}

// memberWritable: the member took what was queued; the client's body may
// flow again.
func (x *exchange) memberWritable() {
	if x.up2 != nil {
		x.spliceUp()
		return
	}
	if x.tun.on {
		x.cl.ResumeRead()
		x.tunnelUp(nil)
		return
	}
	x.mc.busy()
	x.cl.since = x.lp().now() // the client waited for the member, not the reverse
	if x.body.sending && !x.body.in {
		x.cl.ResumeRead()
		x.clientData()
	}
}

// memberBehind reports whether the member has not taken the body bytes
// sent to it: the client then waits for the member, and its silence is
// not its own.
func (x *exchange) memberBehind() bool {
	return x.mc != nil && x.mc.c != nil && x.mc.c.Queued() > 0
}

// pick asks the balancer for a member and sends the request there.
func (x *exchange) pick() {
	p := x.p()
	m, outcome, err := p.pool.Pick(&x.br)
	if err != nil {
		x.refuse(err)
		return
	}
	x.outcome = outcome
	if x.up = p.upstreams[m.Index()].Load(); x.up == nil || x.up.member != m {
		// Removed since the pick (or its slot given to another):
		// nothing was sent, so it is picked again without it.
		x.br.Tried.Add(m.Index())
		x.pick()
		return
	}
	x.attempt++
	x.connect(false)
}

// connect finds x a connection to x.up: a pooled one unless fresh, else a
// new one, unless the member is at its connection limit.
func (x *exchange) connect(fresh bool) {
	lp := x.lp()
	if !fresh {
		for mc := lp.takeIdle(x.up.index); mc != nil; mc = lp.takeIdle(x.up.index) {
			mc.x, x.mc = x, mc
			if x.up.t.needsCheck(mc, lp.now()) {
				mc.state, mc.since = mcReady, lp.now()
				x.up.t.connected(mc)
				return
			}
			mc.state, mc.since = mcBusy, lp.now()
			x.send(mc)
			return
		}
	}
	if limit := int64(x.opts().MaxConnsPerBackend); limit > 0 && x.up.conns.Load() >= limit {
		lp.waiting[x.up.index] = append(lp.waiting[x.up.index], x)
		if x.waitTimer == nil {
			x.waitTimer = lp.nl.NewTimer(x.waitedTooLong)
		}
		x.waitTimer.Set(x.opts().ConnectTimeout)
		return
	}
	lp.dial(x)
}

// waitedTooLong: no connection to the member came free in time.
func (x *exchange) waitedTooLong() {
	lp := x.lp()
	w := lp.waiting[x.up.index]
	for i, o := range w {
		if o == x {
			lp.waiting[x.up.index] = append(w[:i], w[i+1:]...)
			break
		}
	}
	x.failed(&memberError{failConnect, errors.New("no free connection to the member")})
}

// send writes the request to the member over mc.
func (x *exchange) send(mc *memberConn) {
	cl := x.cl // x may be done with before the end
	if x.waitTimer != nil {
		x.waitTimer.Stop()
	}
	x.mc = mc
	mc.arm()
	if x.sentAt == 0 {
		x.sentAt = cl.lp.now()
	}
	if !x.begun {
		x.begun = true
		x.up.member.Begin()
		x.up.metrics.Begin()
	}
	x.resp.reset()
	if err := x.up.t.sendHead(x); err != nil {
		var tooLarge *errCannotCarry
		if errors.As(err, &tooLarge) {
			mc.release(true)
			x.mc = nil
			x.unbegin()
			x.answerAndEnd(400, "400 request head too large for the backend protocol\n", false)
			return
		}
		x.memberFailed(&memberError{failReset, err})
		return
	}
	if x.body.sending && !x.body.in {
		cl.phase, cl.since = phaseBody, cl.lp.now()
		x.clientData()
	}
	cl.arm()
}

// errCannotCarry marks a request the member's protocol cannot carry (an AJP
// head larger than the packet size): the client gets 400, and neither the
// member nor any other is to blame.
type errCannotCarry struct{ err error }

func (e *errCannotCarry) Error() string { return e.err.Error() }

// memberData: the member sent bytes, or its stream ended (err).
func (x *exchange) memberData(err error) {
	if x.tun.on {
		x.tunnelDown(err)
		return
	}
	x.up.t.response(x, err)
}

// connFailed: a connection to the member could not be opened (or checked).
func (x *exchange) connFailed(mc *memberConn, err error) {
	if x.mc == mc {
		x.mc = nil
	}
	x.failed(err)
}

// memberFailed: the exchange with the member broke. Before any answer
// reached the client, the request may go again, or the client gets an
// error; after, the client connection is cut (the answer cannot be
// completed, and a short one must not look whole).
func (x *exchange) memberFailed(err error) {
	mc := x.mc
	x.mc = nil
	if mc != nil {
		mc.x = nil
		mc.close(err)
	}
	if x.resp.headSent {
		x.up.metrics.Error(kindOf(err).String())
		x.up.member.SetLastError(time.Unix(0, x.lp().now()), err.Error())
		x.end()
		x.cl.close()
		return
	}
	if x.retryFresh(mc, err) {
		return
	}
	x.failed(err)
}

// retryFresh sends the request again on a new connection to the same
// member when a reused connection failed before any byte of an answer
// and before the member can have acted on the request: the member closed
// the connection idle just as the request went out (nginx and HAProxy do
// the same). Once per request, whatever the method, if the body is held.
func (x *exchange) retryFresh(mc *memberConn, err error) bool {
	if x.freshRetry || mc == nil || mc.served == 0 || x.resp.received || kindOf(err) != failReset || !x.body.replayable() {
		return false
	}
	x.freshRetry = true
	x.up.metrics.Retried()
	x.connect(true)
	return true
}

// failed handles a failure before any answer reached the client: the
// member is blamed, and the request moves to another member when the rule
// allows, else the client gets 502, 503 or 504.
func (x *exchange) failed(err error) {
	kind := kindOf(err)
	u := x.up
	now := time.Unix(0, x.lp().now())
	u.metrics.Error(kind.String())
	u.member.SetLastError(now, kind.String()+": "+err.Error())
	if kind == failConnect {
		x.p().pool.MarkError(u.member)
		x.p().loopLog.Warn("member unreachable", "member", u.member.Name, "addr", u.addr, "err", err)
	}
	x.unbegin()
	x.br.Tried.Add(u.index)
	if x.attempt < x.opts().MaxAttempts && x.mayRetry(kind) {
		u.metrics.Retried()
		x.resp.reset()
		x.pick()
		return
	}
	x.p().metrics.Sticky(int(x.outcome))
	code, msg := 502, "502 bad gateway\n"
	switch kind {
	case failConnect:
		code, msg = 503, "503 no backend available\n"
	case failTimeout:
		code, msg = 504, "504 gateway timeout\n"
	}
	x.p().loopLog.Warn("request failed", "member", u.member.Name, "kind", kind.String(), "method", string(x.req.Method), "uri", string(x.req.Target), "err", err)
	x.answerAndEnd(code, msg, x.body.in && !x.early)
}

// mayRetry says whether a request that failed with kind may go to another
// member. A connect error reached no member, so any request may move. A
// connection lost before the answer may have reached the member: only an
// idempotent request whose body catherd still holds may go again.
// Timeouts are never retried: the member may still be working on it.
func (x *exchange) mayRetry(kind failKind) bool {
	switch kind {
	case failConnect:
		return x.body.replayable()
	case failReset:
		return x.body.replayable() && x.req.Idempotent()
	}
	return false
}

// unbegin takes back the count of a request that got no answer from the
// member it was sent to.
func (x *exchange) unbegin() {
	if x.begun {
		x.begun = false
		x.up.member.End(uint64(x.body.sent), 0)
		x.up.metrics.Abort()
	}
	x.body.rewind()
}

// refuse answers a request no member could take.
func (x *exchange) refuse(err error) {
	msg := "503 no backend available\n"
	switch {
	case errors.Is(err, balancer.ErrNoFailover):
		msg = "503 the member holding this session is unavailable\n"
	case errors.Is(err, balancer.ErrNoPartner):
		msg = "503 no member of this session's replication domain is available\n"
	}
	x.answerAndEnd(503, msg, x.body.in)
}

// refuseBody answers a request whose body could not be read: malformed
// chunking, cut short, too slow. The member, if it saw any of it, saw an
// incomplete request and is not blamed; the connection is closed.
func (x *exchange) refuseBody(err error) {
	if mc := x.mc; mc != nil {
		x.mc = nil
		mc.x = nil
		mc.close(nil)
	}
	x.unbegin()
	code := 400
	var he *httpwire.Error
	if errors.As(err, &he) {
		code = he.Status
	}
	if x.resp.headSent {
		x.end()
		x.cl.close()
		return
	}
	body := "400 malformed request body\n"
	if code == 408 {
		body = "408 request timeout\n"
	}
	x.answerAndEnd(code, body, false)
}

// bodyFailed: sending the body on failed, on the client's side or the
// member's.
func (x *exchange) bodyFailed(err error) {
	var me *memberError
	if errors.As(err, &me) {
		x.memberFailed(err)
		return
	}
	x.refuseBody(err)
}

// bodyTimedOut: the client's body stalled past --client-body-timeout.
func (x *exchange) bodyTimedOut() {
	if x.tun.on {
		x.endTunnel()
		return
	}
	x.refuseBody(errClientTimeout)
}

// clientGone: the client's stream ended or failed during the exchange.
func (x *exchange) clientGone(err error) {
	switch {
	case x.tun.on:
		x.tunnelUp(err)
	case !x.body.in && errors.Is(err, io.EOF):
		// A body cut short: whatever reached a member is incomplete.
		x.refuseBody(httpwire.ErrChunk)
	case !errors.Is(err, io.EOF):
		x.cl.close() // reset: nothing can reach the client any more
	default:
		// A half-close after a whole request: the answer still goes out,
		// then the connection closes.
		x.cl.PauseRead()
		x.resp.clientClose = true
	}
}

// answerAndEnd ends the exchange with a response of catherd's own.
func (x *exchange) answerAndEnd(code int, body string, keep bool) {
	cl := x.cl
	x.p().none.Done(code, x.start, 0, 0, false)
	if x.up != nil { // the last member tried
		x.logAccess(code, x.up.member.Name, x.outcome.String())
	} else {
		x.logAccess(code, "", "")
	}
	x.release()
	cl.answer(code, body, keep)
	cl.done(keep)
}

// abandon: the client connection closed under the exchange.
func (x *exchange) abandon() {
	if mc := x.mc; mc != nil {
		x.mc = nil
		mc.x = nil
		mc.close(nil)
	}
	if x.waitTimer != nil {
		x.waitTimer.Stop()
		lp := x.lp()
		if x.up != nil {
			w := lp.waiting[x.up.index]
			for i, o := range w {
				if o == x {
					lp.waiting[x.up.index] = append(w[:i], w[i+1:]...)
					break
				}
			}
		}
	}
	if x.begun {
		x.end()
	}
	x.release()
}

// end records the request as served by its member, with the status the
// client got (or began to get).
func (x *exchange) end() {
	if !x.begun {
		return
	}
	x.begun = false
	u := x.up
	u.member.End(uint64(x.body.sent), uint64(x.resp.received64()))
	u.metrics.Done(x.resp.status, x.start, x.body.sent, x.resp.received64(), true)
	x.p().metrics.Sticky(int(x.outcome))
	x.logAccess(x.resp.status, u.member.Name, x.outcome.String())
}

// logAccess writes the request's access log line, if there is a log.
func (x *exchange) logAccess(status int, member, sticky string) {
	w := x.lp().alog
	if w == nil {
		return
	}
	now := x.lp().now()
	r := &x.lp().record
	*r = accesslog.Record{At: time.Unix(0, now), Client: x.cl.remote.Addr(), Method: x.req.Method, Target: x.req.Target,
		Proto: x.req.Version, Status: status, BytesIn: x.body.sent, BytesOut: x.resp.bytes, Member: member, Sticky: sticky,
		Attempts: x.attempt, Total: time.Duration(now - x.start.UnixNano())}
	if x.sentAt > 0 {
		r.MemberTime = time.Duration(now - x.sentAt)
	}
	for i := range x.req.Fields {
		switch f := &x.req.Fields[i]; {
		case httpwire.EqualFold(f.Name, "referer"):
			r.Referer = f.Value
		case httpwire.EqualFold(f.Name, "user-agent"):
			r.UA = f.Value
		}
	}
	w.Write(r)
}

// release gives back what the exchange holds; the client connection's
// buffer is the client's again.
func (x *exchange) release() {
	cl := x.cl
	if cl.ex == x {
		cl.ex = nil
	}
	releaseExchange(x)
}

// kindOf is the failure kind of an error from an exchange.
func kindOf(err error) failKind {
	var me *memberError
	if errors.As(err, &me) {
		return me.kind
	}
	return failProtocol
}

func (x *exchange) String() string {
	return fmt.Sprintf("%s %s", x.req.Method, x.req.Target)
}
