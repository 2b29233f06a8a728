package handoff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/userspace/balancer"
)

// Successor is the new catherd's end: the sockets it inherited, until it
// claims them, and the connection on which it says it is ready.
type Successor struct {
	conn    *net.UnixConn
	pid     int
	sockets map[string]*os.File
	// rest reads what follows the state: the moves made while the
	// predecessor drains.
	rest *json.Decoder
	// The connection closes once both Moves and Serving are done.
	mu                 sync.Mutex
	moved, served, end bool
}

// Take connects to the catherd serving path and receives its listening
// sockets. It returns ErrNoPredecessor when none serves it.
func Take(path string) (*Successor, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w at %s", ErrNoPredecessor, path)
	}
	if err != nil {
		return nil, err
	}
	s := &Successor{conn: c, sockets: map[string]*os.File{}}
	if err := s.receive(); err != nil {
		s.Abort()
		return nil, fmt.Errorf("taking over from %s: %w", path, err)
	}
	return s, nil
}

func (s *Successor) receive() error {
	s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(s.conn, msgTake); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(maxSockets*4))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("reading the offer: %w", err)
	}
	var fds []int
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return err
	}
	for _, m := range cmsgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return err
		}
		fds = append(fds, got...)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "inherited socket")
	}
	// The offer is one line; a long one may need more reads.
	data := buf[:n]
	for !bytes.HasSuffix(data, []byte("\n")) {
		if len(data) == len(buf) {
			closeAll(files)
			return errors.New("offer too long")
		}
		m, err := s.conn.Read(buf[len(data):])
		if err != nil {
			closeAll(files)
			return fmt.Errorf("reading the offer: %w", err)
		}
		data = buf[:len(data)+m]
	}
	var o offer
	if err := json.Unmarshal(data, &o); err != nil {
		closeAll(files)
		return fmt.Errorf("bad offer: %w", err)
	}
	if o.Version != version || len(o.Sockets) != len(files) {
		closeAll(files)
		return fmt.Errorf("incompatible predecessor (protocol version %d, %d names for %d sockets; want version %d)",
			o.Version, len(o.Sockets), len(files), version)
	}
	for i, name := range o.Sockets {
		s.sockets[name] = files[i]
	}
	s.pid = o.Pid
	s.conn.SetDeadline(time.Time{})
	return nil
}

// Pid is the predecessor's process ID.
func (s *Successor) Pid() int { return s.pid }

// Listener claims the inherited socket called name, if there is one.
func (s *Successor) Listener(name string) (net.Listener, bool, error) {
	f, ok := s.sockets[name]
	if !ok {
		return nil, false, nil
	}
	delete(s.sockets, name)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, false, fmt.Errorf("inherited socket %s: %w", name, err)
	}
	return ln, true, nil
}

// Ready tells the predecessor to stop accepting and returns its state.
// Sockets not claimed by then are closed: the successor does not listen
// where its flags no longer say to. On success the connection stays open
// for Moves.
func (s *Successor) Ready() (balancer.Snapshot, error) {
	s.closeSockets()
	var st balancer.Snapshot
	s.conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(s.conn, msgReady); err != nil {
		s.Abort()
		return st, fmt.Errorf("telling the predecessor: %w", err)
	}
	s.rest = json.NewDecoder(s.conn)
	if err := s.rest.Decode(&st); err != nil {
		s.Abort()
		return st, fmt.Errorf("reading the predecessor's state: %w", err)
	}
	s.conn.SetDeadline(time.Time{}) // the predecessor drains for as long as it takes
	return st, nil
}

// Moves calls apply for each session the predecessor moves while it
// drains, after Ready, until the predecessor has drained (or is gone). A
// predecessor that passes no moves on (an older catherd) closes the
// connection after its state.
func (s *Successor) Moves(apply func(balancer.MovedSession)) error {
	defer s.done(&s.moved)
	for {
		var mv balancer.MovedSession
		err := s.rest.Decode(&mv)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("reading the predecessor's moves: %w", err)
		}
		apply(mv)
	}
}

// Serving tells the predecessor, after Ready, that this process serves
// (and has told systemd it is the main process): the predecessor may exit.
func (s *Successor) Serving() {
	defer s.done(&s.served)
	s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(s.conn, msgServing) // a predecessor gone needs no word
}

// done marks one of Moves and Serving done, and closes the connection
// once both are.
func (s *Successor) done(which *bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*which = true
	if s.moved && s.served && !s.end {
		s.end = true
		s.conn.Close()
	}
}

// Abort gives up the take-over (the predecessor goes on serving), or,
// after Ready, stops listening for its moves.
func (s *Successor) Abort() {
	s.closeSockets()
	s.conn.Close()
}

func (s *Successor) closeSockets() {
	for name, f := range s.sockets {
		f.Close()
		delete(s.sockets, name)
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
