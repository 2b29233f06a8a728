package netloop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's reads, writes and looks for events on non-blocking
// descriptors go around the Go scheduler (RawSyscall): they do not wait
// for anything, so the loop's goroutine keeps its P through them. (The
// rarer calls, epoll_ctl, connect, close, go the usual way.) Through
// unix.Read and the like, every call marks the P as in a system call; one
// that the kernel preempts (a write on loopback wakes its reader, which
// may take the CPU) then looks blocked to sysmon, which hands the P to
// another thread and from then on wakes every 20 us: context switches
// that cost the loop more than the calls themselves.

// readRaw is read(2) on a non-blocking fd.
func readRaw(fd int, b []byte) (int, error) { return rawIO(unix.SYS_READ, fd, b) }

// writeRaw is write(2) on a non-blocking fd.
func writeRaw(fd int, b []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, b) }

func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// writevRaw is writev(2) on a non-blocking fd.
func writevRaw(fd int, iov []unix.Iovec) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// pollRaw is epoll_wait(2) with a zero timeout: it looks, never waits.
func pollRaw(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// spliceRaw is splice(2) between a non-blocking socket and a non-blocking
// pipe, without offsets, SPLICE_F_NONBLOCK|SPLICE_F_MOVE.
func spliceRaw(from, to, n int) (int, error) {
	m, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if errno != 0 {
		return 0, errno
	}
	return int(m), nil
}
