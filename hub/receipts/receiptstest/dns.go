// Package receiptstest helps tests of receipt URLs, as net/http/httptest
// helps tests of handlers: a real DNS server on loopback whose answers a
// test chooses, behind a net.Resolver for receipts.URLPolicy. It is for
// tests only.
package receiptstest

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
)

// The first labels of names the server answers in a particular way. Every
// other name gets an answer with no address (NOERROR, no records).
const (
	NXDomain = "gone"  // "gone.example": NXDOMAIN, the name does not exist
	ServFail = "flaky" // "flaky.example": SERVFAIL, the server failed
)

// Resolver starts a DNS server on a loopback UDP port for the test's
// lifetime and returns a resolver that asks it and nothing else.
func Resolver(t testing.TB) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		serve(pc)
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// serve answers queries until pc is closed.
func serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := answer(buf[:n]); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

// answer returns the response to one query, or nil to ignore it. (No name
// is left unanswered on purpose: the resolver would keep its goroutines
// for its own timeout, past the test.)
func answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// The question: labels up to a zero byte, then type and class.
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	end := i + 1 + 4
	if len(labels) == 0 || end > len(q) {
		return nil
	}
	var rcode byte
	switch strings.ToLower(labels[0]) {
	case NXDomain:
		rcode = 3
	case ServFail:
		rcode = 2
	}
	out := make([]byte, 0, end)
	out = append(out, q[0], q[1]) // id
	out = append(out, 0x81, 0x80|rcode)
	out = append(out, 0, 1, 0, 0, 0, 0, 0, 0) // one question, no records
	return append(out, q[12:end]...)
}
