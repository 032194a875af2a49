// Package receiptstest helps tests of receipt URLs, as net/http/httptest
// helps tests of handlers: a real DNS server on loopback whose answers a
// test chooses, behind a net.Resolver for receipts.URLPolicy. It is for
// tests only.
package receiptstest

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// The first labels of names the server answers in a particular way. Every
// other name gets an answer with no address (NOERROR, no records).
const (
	NXDomain = "gone"  // "gone.example": NXDOMAIN, the name does not exist
	ServFail = "flaky" // "flaky.example": SERVFAIL, the server failed
)

// V6Name returns a name the server resolves to ip, an IPv6 address (one
// AAAA record, no A record): "v6-" and ip with its colons as dashes, then
// ".example".
func V6Name(ip netip.Addr) string {
	return "v6-" + strings.ReplaceAll(ip.StringExpanded(), ":", "-") + ".example"
}

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
	var aaaa []byte
	first := strings.ToLower(labels[0])
	switch {
	case first == NXDomain:
		rcode = 3
	case first == ServFail:
		rcode = 2
	case strings.HasPrefix(first, "v6-"):
		ip, err := netip.ParseAddr(strings.ReplaceAll(first[3:], "-", ":"))
		qtype := binary.BigEndian.Uint16(q[end-4 : end-2])
		if err == nil && ip.Is6() && qtype == 28 {
			b := ip.As16()
			aaaa = b[:]
		}
	}
	out := make([]byte, 0, end+28)
	out = append(out, q[0], q[1]) // id
	out = append(out, 0x81, 0x80|rcode)
	answers := byte(0)
	if aaaa != nil {
		answers = 1
	}
	out = append(out, 0, 1, 0, answers, 0, 0, 0, 0) // one question
	out = append(out, q[12:end]...)
	if aaaa != nil {
		// The name (a pointer to the question's), AAAA, IN, TTL 60, 16 bytes.
		out = append(out, 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16)
		out = append(out, aaaa...)
	}
	return out
}
