package main

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
)

// notifyReady says that catherd serves: to systemd, then to the process
// that started this one as its successor (catherd reload, or SIGUSR2), if
// any. systemd is told first, so that it knows the new main process before
// catherd reload returns.
func notifyReady(log *slog.Logger) {
	notifySystemd(log, "MAINPID="+strconv.Itoa(os.Getpid())+"\nREADY=1\n")
	tellParentReady(log)
}

// notifyMainPID tells systemd that this process is the service's main one
// from now on. A successor says so before its predecessor stops serving
// (takeOver): a predecessor with nothing left to drain exits at once, and
// systemd, if it still took that process for the main one, would count
// the service as stopped and kill the successor with it.
func notifyMainPID(log *slog.Logger) {
	notifySystemd(log, "MAINPID="+strconv.Itoa(os.Getpid())+"\n")
}

// notifySystemd sends state to systemd (Type=notify): that catherd is
// ready, and that this process is the service's main one: after a
// take-over the successor replaces its predecessor without the service
// restarting (NotifyAccess=all in the unit lets a process other than the
// first say so). Outside systemd, NOTIFY_SOCKET is unset and this does
// nothing.
func notifySystemd(log *slog.Logger, state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("telling systemd", "state", strings.TrimSpace(state), "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Warn("telling systemd", "state", strings.TrimSpace(state), "err", err)
	}
}
