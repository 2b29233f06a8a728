// Package handoff lets a new catherd process take over from a running one
// without dropping a connection, as HAProxy's seamless reload and nginx's
// binary upgrade do. The running process listens on a unix socket; its
// successor connects and receives duplicates of every listening socket
// (SCM_RIGHTS), so both accept from the same kernel queues while the
// successor starts. Once the successor is ready, the predecessor stops
// accepting, sends its state (members as operators and health checks left
// them, moved sessions) and drains, passing on the sessions it moves
// meanwhile. Connections waiting in the queues are
// accepted by the successor: none is refused, none is reset.
//
// The exchange on the socket:
//
//	successor -> predecessor  "TAKE\n"
//	predecessor -> successor  offer as one JSON line, the sockets attached
//	successor -> predecessor  "READY\n"   (or it closes: take-over aborted)
//	predecessor -> successor  the pool's state (balancer.Snapshot) as JSON
//	predecessor -> successor  each session it moves while it drains (balancer.MovedSession), as JSON; then it shuts its side
//	successor -> predecessor  "SERVING\n" once it serves and has told systemd it is the main process; the predecessor exits after that
//
// A successor that fails before READY (a bad flag, a verifier error)
// changes nothing: the predecessor goes on serving.
package handoff

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// version changes whenever the exchange or the state changes incompatibly; a
// successor refuses a predecessor of another version.
const version = 1

const (
	msgTake    = "TAKE\n"
	msgReady   = "READY\n"
	msgServing = "SERVING\n"
)

// maxSockets bounds the listening sockets passed in one offer.
const maxSockets = 64

// offer is the first message of the predecessor: the names of the sockets
// attached to it, in order.
type offer struct {
	Version int      `json:"version"`
	Pid     int      `json:"pid"`
	Sockets []string `json:"sockets"`
}

// ErrRunning is returned by Listen when a catherd already serves the
// socket.
var ErrRunning = errors.New("another catherd is running")

// ErrNoPredecessor is returned by Take when no catherd serves the socket.
var ErrNoPredecessor = errors.New("no catherd to take over from")

// Running reports whether a catherd serves the hand-off socket at path:
// whether a successor would find one to take over from.
func Running(path string) bool { return alive(path) }

// alive reports whether a process accepts connections on the socket path.
func alive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// listenUnix binds path, removing a stale socket file left by a process
// that died, and lets only the owner connect.
func listenUnix(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if alive(path) {
			return nil, fmt.Errorf("%w (%s answers)", ErrRunning, path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// dupSocket returns a duplicate of a listening socket's descriptor, to be
// closed by the caller. Not through (*net.TCPListener).File: its Fd puts
// the descriptor in blocking mode, and that mode belongs to the socket, so
// the listener's own Accept would stop answering Close.
func dupSocket(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T cannot be passed on", ln)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup, dupErr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return dup, dupErr
}

// isGone reports errors that mean the peer went away.
func isGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}
