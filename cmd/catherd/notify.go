package main

import (
	"log/slog"
	"net"
	"os"
	"strconv"
)

// notifyReady says that catherd serves: to systemd, then to the process
// that started this one as its successor (catherd reload, or SIGUSR2), if
// any. systemd is told first, so that it knows the new main process before
// catherd reload returns.
func notifyReady(log *slog.Logger) {
	notifySystemd(log)
	tellParentReady(log)
}

// notifySystemd tells systemd (Type=notify) that catherd is ready, and
// that this process is now the service's main one: after a take-over the
// successor replaces its predecessor without the service restarting
// (NotifyAccess=all in the unit lets a process other than the first say
// so). Outside systemd, NOTIFY_SOCKET is unset and this does nothing.
func notifySystemd(log *slog.Logger) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("telling systemd catherd is ready", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1\n")); err != nil {
		log.Warn("telling systemd catherd is ready", "err", err)
	}
}
