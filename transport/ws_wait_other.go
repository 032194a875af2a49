//go:build !unix

package transport

import "net"

// awaitReadable returns at once on systems without a socket peek: the
// caller's read does the waiting, with its deeper stack.
func awaitReadable(net.Conn) error { return nil }
