//go:build unix

package transport

import (
	"net"
	"syscall"
)

// awaitReadable blocks until conn has bytes to read, has reached its end or
// has failed, and reads nothing: it peeks at the socket and parks in the
// poller while there is nothing to see, a few frames deep. A conn that is
// not a socket returns at once, and the caller's read does the waiting.
func awaitReadable(conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc.Read(peekReadable)
}

// peekReadable reports whether a read of the socket fd would not wait: a
// byte is there, the stream has ended (no error, no byte), or the socket has
// an error for the read to see.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
