package proxy

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// transport is how a member is spoken to: HTTP/1.1 (httpTransport) or
// AJP/1.3 (ajpTransport). The exchange does the rest the same way for
// both: the pick, retries, the client's side, accounting.
type transport interface {
	// connected: a new connection is up. The transport checks it (AJP's
	// CPING) or hands it on at once (mc.ready).
	connected(mc *memberConn)
	// checked delivers the answer to a check, or why there was none.
	checked(mc *memberConn, err error)
	// checkTimeout bounds a check.
	checkTimeout() time.Duration
	// needsCheck says whether a pooled connection must be checked before
	// it carries a request.
	needsCheck(mc *memberConn, now int64) bool
	// idleCheck is how often an idle pooled connection is checked (0:
	// never); idleTimeout runs then and reports whether it took the
	// connection out of the pool.
	idleCheck() time.Duration
	idleTimeout(mc *memberConn, now int64) bool

	// sendHead writes the request's head, and what is held of its body,
	// to x.mc.
	sendHead(x *exchange) error
	// sendBody sends on the body bytes that have come from the client
	// since, as far as the member's flow control allows.
	sendBody(x *exchange) error
	// response reads what the member sent (rerr: how its stream ended)
	// and passes the answer on to the client.
	response(x *exchange, rerr error)
	// readSize is the least a member connection's read buffer holds: a
	// whole packet of the protocol, which is parsed where it landed (0:
	// any buffer).
	readSize() int
}

// readFailure is the kind of failure a member's stream ending (or
// failing) mid-exchange is: before any answer, the connection was lost
// (it may not have reached the member); within one, the answer is cut.
func readFailure(err error, answered bool) error {
	if answered {
		return &memberError{failProtocol, fmt.Errorf("answer cut short: %w", err)}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("connection closed before an answer")
	}
	return &memberError{failReset, err}
}

// writeFailure is a failed write to a member: the connection was lost.
func writeFailure(err error) error {
	return &memberError{failReset, fmt.Errorf("sending the request: %w", err)}
}
