package handoff

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/userspace/balancer"
)

// successorStartup bounds how long a successor may take between receiving
// the sockets and saying it is ready (loading the XDP program included).
const successorStartup = 2 * time.Minute

// errProbe is a connection closed at once: Listen checking whether a
// catherd is running.
var errProbe = errors.New("probe")

// Predecessor is what a running catherd offers the process that takes over
// from it.
type Predecessor struct {
	// Sockets are its listening sockets by name; the successor claims
	// those its own flags name the same way.
	Sockets map[string]net.Listener
	// Release is called once the successor is ready: stop accepting on
	// every socket (closing them here leaves the successor's copies open).
	Release func()
	// State is called after Release; the successor gets what it returns.
	State func() balancer.Snapshot
	// Relay, if set, passes on the sessions this process moves while it
	// drains, from Release on (make it the moved-session table's
	// observer there), until it is closed.
	Relay *Relay
}

// Server is the running catherd's end of the socket.
type Server struct {
	ln      *net.UnixListener
	log     *slog.Logger
	done    chan struct{}
	passing sync.WaitGroup // the relay of moves to the successor
}

// Listen binds the socket at path. It fails with ErrRunning if another
// catherd serves it: two instances would fight over the same ports and
// pinned XDP state.
func Listen(path string, log *slog.Logger) (*Server, error) {
	ln, err := listenUnix(path)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, log: log, done: make(chan struct{})}, nil
}

// Done is closed once a successor has taken over.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops listening for successors (at shutdown).
func (s *Server) Close() error { return s.ln.Close() }

// Serve answers successors, one at a time, until one takes over or Close.
func (s *Server) Serve(p Predecessor) {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		if err := s.handOver(c, p); err != nil {
			if err != errProbe {
				s.log.Warn("take-over aborted; serving on", "err", err)
			}
			c.Close()
			continue
		}
		close(s.done)
		return
	}
}

// handOver runs the exchange with one successor. An error before READY
// leaves everything as it was.
func (s *Server) handOver(c *net.UnixConn, p Predecessor) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if line == "" && errors.Is(err, io.EOF) {
		return errProbe
	}
	if err != nil || line != msgTake {
		return fmt.Errorf("want %q from the successor, got %q: %v", msgTake, line, err)
	}
	names := make([]string, 0, len(p.Sockets))
	for name := range p.Sockets {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > maxSockets {
		return fmt.Errorf("%d listening sockets, at most %d can be passed on", len(names), maxSockets)
	}
	fds := make([]int, 0, len(names))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, name := range names {
		fd, err := dupSocket(p.Sockets[name])
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fds = append(fds, fd)
	}
	msg, err := json.Marshal(offer{Version: version, Pid: os.Getpid(), Sockets: names})
	if err != nil {
		return err
	}
	if _, _, err := c.WriteMsgUnix(append(msg, '\n'), unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("passing the sockets: %w", err)
	}
	s.log.Info("successor connected; sockets passed, waiting for it to start", "sockets", len(names))

	c.SetDeadline(time.Now().Add(successorStartup))
	if line, err := rd.ReadString('\n'); err != nil || line != msgReady {
		return fmt.Errorf("the successor did not start (%q, %v)", line, err)
	}
	p.Release()
	s.ln.Close() // and unlink the path: the successor binds it next
	c.SetDeadline(time.Now().Add(time.Minute))
	enc := json.NewEncoder(c)
	if err := enc.Encode(p.State()); err != nil {
		if !isGone(err) {
			s.log.Warn("sending state to the successor", "err", err)
		}
		c.Close()
		return nil
	}
	s.passing.Add(1)
	go func() {
		defer s.passing.Done()
		defer c.Close()
		if p.Relay != nil {
			s.relay(c, enc, p.Relay)
		}
		// Then wait for the successor to say it serves (it has told
		// systemd it is the main process): exiting before would have
		// systemd take the service for dead.
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(successorStartup))
		if line, err := rd.ReadString('\n'); line != msgServing && !errors.Is(err, io.EOF) {
			s.log.Warn("the successor did not say it serves", "got", line, "err", err)
		}
	}()
	return nil
}

// relay passes on the moves r carries until it is closed, or the
// successor is gone.
func (s *Server) relay(c *net.UnixConn, enc *json.Encoder, r *Relay) {
	for mv := range r.ch {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := enc.Encode(mv); err != nil {
			if !isGone(err) { // else a successor that takes no moves (an older catherd)
				s.log.Warn("passing a session moved while draining to the successor; the rest are not passed on", "err", err)
			}
			return
		}
	}
	if n := r.Dropped(); n > 0 {
		s.log.Warn("sessions moved while draining not passed on: too many at once", "dropped", n)
	}
}

// Finish waits, at most timeout, until the successor has what this
// process passes on (the moves its Relay carried, once the Relay is
// closed) and has said it serves, or is gone: the last thing before this
// process exits after a hand-over.
func (s *Server) Finish(timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.passing.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
