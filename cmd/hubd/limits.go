package main

import (
	"errors"
	"flag"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/transport"
)

// What one client may take of the node: connections (capListener), header
// bytes, and the transport's body deadlines and wait caps. docs/security.md,
// "Connections, headers and bodies", says why each default is what it is.

// limitFlags are the flags of the public listener's limits.
type limitFlags struct {
	maxConns        int
	maxConnsPerAddr int
	maxHeaderBytes  int
	limits          transport.Limits
}

// Defaults. The process may hold 20,000 open files (the systemd unit's
// LimitNOFILE, docs/operations.md): 16,000 public connections leave 4,000
// for raft, the internal API, badger's files and the logs.
const (
	defaultMaxConns        = 16_000
	defaultMaxConnsPerAddr = 1_000
	defaultMaxHeaderBytes  = 16 << 10
)

func (f *limitFlags) define(parsed func(flag.Value, string, string)) {
	f.maxConns, f.maxConnsPerAddr, f.maxHeaderBytes = defaultMaxConns, defaultMaxConnsPerAddr, defaultMaxHeaderBytes
	l := &f.limits
	l.HelloTimeout, l.BodyTimeout, l.BatchBodyTimeout = transport.DefaultHelloTimeout, transport.DefaultBodyTimeout, transport.DefaultBatchBodyTimeout
	l.WaitsPerUser, l.WaitsPerAddr = transport.DefaultWaitsPerUser, transport.DefaultWaitsPerAddr
	l.ReceiptWaitsPerToken, l.ReceiptWaitsPerAddr = transport.DefaultReceiptWaitsPerToken, transport.DefaultReceiptWaitsPerAddr
	parsed(intValue{&f.maxConns}, "max-conns", "public HTTP connections open at once; one over it is closed at once")
	parsed(intValue{&f.maxConnsPerAddr}, "max-conns-per-addr", "public HTTP connections from one address (IPv4, or IPv6 /64) at once")
	parsed(intValue{&f.maxHeaderBytes}, "max-header-bytes", "largest request header, in bytes; over it, 431")
	parsed(durationValue{&l.HelloTimeout}, "hello-timeout", "a WebSocket must send its hello within this, or is closed with 4400")
	parsed(durationValue{&l.BodyTimeout}, "body-timeout", "a request body must arrive within this of the request (408 body_timeout)")
	parsed(durationValue{&l.BatchBodyTimeout}, "batch-body-timeout", "the same for a POST /v1/push batch body")
	parsed(intValue{&l.WaitsPerUser}, "waits-per-user", "long-poll sessions and SSE streams one user holds at once (429 too_many_waits)")
	parsed(intValue{&l.WaitsPerAddr}, "waits-per-addr", "long-poll sessions and SSE streams from one address at once")
	parsed(intValue{&l.ReceiptWaitsPerToken}, "receipt-waits-per-token", "GET /v1/receipts waits one mailbox token holds at once")
	parsed(intValue{&l.ReceiptWaitsPerAddr}, "receipt-waits-per-addr", "GET /v1/receipts waits from one address at once")
}

func (f *limitFlags) check() error {
	switch {
	case f.maxConns <= 0 || f.maxConnsPerAddr <= 0 || f.maxHeaderBytes <= 0:
		return errors.New("--max-conns, --max-conns-per-addr and --max-header-bytes must be positive")
	case f.limits.HelloTimeout <= 0 || f.limits.BodyTimeout <= 0 || f.limits.BatchBodyTimeout <= 0:
		return errors.New("--hello-timeout, --body-timeout and --batch-body-timeout must be positive")
	case f.limits.WaitsPerUser <= 0 || f.limits.WaitsPerAddr <= 0 || f.limits.ReceiptWaitsPerToken <= 0 || f.limits.ReceiptWaitsPerAddr <= 0:
		return errors.New("the wait caps must be positive")
	}
	return nil
}

// capListener caps the connections of the public listener, in all and per
// client address. A connection over a cap is closed as soon as it is
// accepted, not left waiting: a listener that stopped accepting would leave
// every client, the good ones too, in the kernel's backlog behind the
// flood, while closing at once costs the node one file for an instant and
// tells the client plainly. Its count goes down when the server closes it.
type capListener struct {
	net.Listener
	max, perAddr int

	mu     sync.Mutex
	open   int
	byAddr map[string]int

	openGauge prometheus.GaugeFunc
	refused   *prometheus.CounterVec // by reason: global, address
}

func newCapListener(ln net.Listener, max, perAddr int) *capListener {
	l := &capListener{Listener: ln, max: max, perAddr: perAddr, byAddr: make(map[string]int)}
	l.openGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hub", Name: "connections_open", Help: "Public HTTP connections open (WebSockets and event streams included).",
	}, func() float64 { l.mu.Lock(); defer l.mu.Unlock(); return float64(l.open) })
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hub", Name: "connections_refused_total",
		Help: "Public HTTP connections closed on accept, by reason: global (--max-conns) or address (--max-conns-per-addr).",
	}, []string{"reason"})
	return l
}

func (l *capListener) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.openGauge, l.refused}
}

// Accept returns the next connection within the caps, closing those over.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := transport.AddrKey(c.RemoteAddr().String())
		l.mu.Lock()
		reason := ""
		switch {
		case l.open >= l.max:
			reason = "global"
		case l.byAddr[key] >= l.perAddr:
			reason = "address"
		default:
			l.open++
			l.byAddr[key]++
		}
		l.mu.Unlock()
		if reason != "" {
			l.refused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l, key: key}, nil
	}
}

func (l *capListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
}

// capConn gives its place back when closed (once, however often Close is
// called; a hijacked WebSocket is closed by the transport).
type capConn struct {
	net.Conn
	l    *capListener
	key  string
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// readHeaderTimeout bounds a request's header: a client that trickles it
// is cut off (the body has its own deadlines, in the transport).
const readHeaderTimeout = 10 * time.Second
