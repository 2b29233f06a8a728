package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/handoff"
)

const reloadUsage = `Usage: catherd reload [flags of catherd run]

Replaces the running catherd (the one serving --handoff-socket) by a new
process started with the given flags, without refusing or failing a
request: it starts "catherd run --takeover FLAGS" from this program's file
and waits until the new process serves. The new process has then taken
over the listening sockets, member states and moved sessions, and the old
one drains and exits.

Exit status: 0 once the new process serves; 1 when it could not start (its
error is printed, and the running catherd serves on, unchanged); 2 for bad
flags or when no catherd is running.

systemctl reload catherd runs "catherd run --check" and then this, with the
flags in /etc/default/catherd: an edited file takes effect without a
restart. SIGUSR2 does the same with the running process's own flags.
`

// reload is `catherd reload FLAGS...`.
func reload(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
		fmt.Fprint(stdout, reloadUsage)
		return 0
	}
	cfg, err := config.Parse(args, io.Discard)
	if err == nil {
		_, err = readAdminToken(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "catherd reload: %v\n", err)
		return 2
	}
	if cfg.HandoffSocket == "" || !handoff.Running(cfg.HandoffSocket) {
		fmt.Fprintf(stderr, "catherd reload: no catherd serves --handoff-socket %q to take over from (start one with catherd run)\n", cfg.HandoffSocket)
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "catherd reload: cannot find this program's file: %v\n", err)
		return 1
	}
	succ, err := startSuccessor(exe, args, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(stderr, "catherd reload: %v\n", err)
		return 1
	}
	if err := succ.wait(); err != nil {
		fmt.Fprintf(stderr, "catherd reload: the new catherd (pid %d) did not start: %v; the running one serves on\n", succ.pid(), err)
		return 1
	}
	fmt.Fprintf(stdout, "catherd reload: pid %d serves with the new flags; the previous process drains\n", succ.pid())
	return 0
}

// restartSelf starts a successor with this process's own flags (SIGUSR2):
// nginx's binary upgrade, from the program file now at this process's
// path. If it fails, this process serves on; either way it is logged.
func restartSelf(args []string, log *slog.Logger) {
	exe, err := os.Executable()
	if err != nil {
		log.Error("SIGUSR2: cannot find this program's file", "err", err)
		return
	}
	succ, err := startSuccessor(exe, args, os.Stdout, os.Stderr)
	if err != nil {
		log.Error("SIGUSR2: starting the successor", "exe", exe, "err", err)
		return
	}
	log.Info("SIGUSR2: successor started", "exe", exe, "pid", succ.pid())
	go func() {
		if err := succ.wait(); err != nil {
			log.Error("the successor did not start; serving on", "pid", succ.pid(), "err", err)
		}
	}()
}

// readyFDEnv names, in a successor's environment, the descriptor on which
// it says it serves. Its parent (catherd reload, or a process restarting
// itself) learns that way that the take-over is done, or, when the pipe
// closes with nothing said, that the successor failed.
const readyFDEnv = "CATHERD_READY_FD"

// readyMessage is what a successor writes once it serves.
const readyMessage = "READY\n"

// successor is a `catherd run --takeover` this process started.
type successor struct {
	cmd    *exec.Cmd
	ready  chan bool  // receives whether it said it serves before its pipe closed
	exited chan error // receives its exit
}

// startSuccessor runs `exe run --takeover ARGS` (a --takeover in args is
// not repeated), writing to stdout and stderr.
func startSuccessor(exe string, args []string, stdout, stderr io.Writer) (*successor, error) {
	argv := []string{"run", "--takeover"}
	for _, a := range args {
		if a != "--takeover" && a != "-takeover" {
			argv = append(argv, a)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	cmd := exec.Command(exe, argv...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{w} // descriptor 3 in the successor
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	err = cmd.Start()
	w.Close() // the successor holds the only write end now
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	s := &successor{cmd: cmd, ready: make(chan bool, 1), exited: make(chan error, 1)}
	go func() {
		defer r.Close()
		line, _ := bufio.NewReader(r).ReadString('\n')
		s.ready <- line == readyMessage
	}()
	go func() { s.exited <- cmd.Wait() }()
	return s, nil
}

func (s *successor) pid() int { return s.cmd.Process.Pid }

// wait returns nil once the successor serves, or why it did not: its exit
// status, when it ended first (its own error is on its stderr).
func (s *successor) wait() error {
	if <-s.ready {
		return nil
	}
	err := <-s.exited
	if err == nil {
		err = errors.New("it exited without serving")
	}
	return err
}

// readyPipe is where this process, if a successor started by
// startSuccessor, says it serves; nil otherwise. takeReadyPipe takes it
// from the environment at start, so that no process this one starts
// inherits the variable without the descriptor.
var readyPipe *os.File

func takeReadyPipe() {
	v, ok := os.LookupEnv(readyFDEnv)
	if !ok {
		return
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || fd < 3 {
		return
	}
	// Only a pipe: a descriptor that is something else was not given
	// for this, and writing to it could damage whatever it is.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	unix.CloseOnExec(fd)
	readyPipe = os.NewFile(uintptr(fd), "ready")
}

// tellParentReady writes the ready message on readyPipe, if any, and
// closes it.
func tellParentReady(log *slog.Logger) {
	if readyPipe == nil {
		return
	}
	if _, err := io.WriteString(readyPipe, readyMessage); err != nil {
		log.Warn("telling the process that started this one that it serves", "err", err)
	}
	readyPipe.Close()
	readyPipe = nil
}
