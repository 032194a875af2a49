package transport

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// What one client may hold and how long its bytes may take: the hello
// timeout, body read deadlines, and caps on held waits (long-polls, event
// streams, receipt waits). docs/security.md, "Connections, headers and
// bodies", says why each exists.

// Limits bounds what one client may hold. Zero fields take the defaults.
type Limits struct {
	// HelloTimeout is how long a WebSocket may take to send its hello;
	// past it the connection is closed with 4400. Default 10s.
	HelloTimeout time.Duration
	// BodyTimeout bounds reading a JSON body (users, mailboxes, poll,
	// ack, admin), counted from when the handler starts. Default 10s.
	BodyTimeout time.Duration
	// BatchBodyTimeout bounds reading a POST /v1/push batch body. Default 30s.
	BatchBodyTimeout time.Duration
	// WaitsPerUser caps the long-poll sessions and SSE streams one user
	// holds open on this node at once. Default 64.
	WaitsPerUser int
	// WaitsPerAddr caps the same per client address (IPv4, or IPv6 /64).
	// Default 256.
	WaitsPerAddr int
	// ReceiptWaitsPerToken caps the GET /v1/receipts requests held waiting
	// for one mailbox token at once. Default 4.
	ReceiptWaitsPerToken int
	// ReceiptWaitsPerAddr caps the same per client address. Default 256.
	ReceiptWaitsPerAddr int
}

// The defaults of Limits.
const (
	DefaultHelloTimeout         = 10 * time.Second
	DefaultBodyTimeout          = 10 * time.Second
	DefaultBatchBodyTimeout     = 30 * time.Second
	DefaultWaitsPerUser         = 64
	DefaultWaitsPerAddr         = 256
	DefaultReceiptWaitsPerToken = 4
	DefaultReceiptWaitsPerAddr  = 256
)

func (l Limits) withDefaults() Limits {
	set := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	setN := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	set(&l.HelloTimeout, DefaultHelloTimeout)
	set(&l.BodyTimeout, DefaultBodyTimeout)
	set(&l.BatchBodyTimeout, DefaultBatchBodyTimeout)
	setN(&l.WaitsPerUser, DefaultWaitsPerUser)
	setN(&l.WaitsPerAddr, DefaultWaitsPerAddr)
	setN(&l.ReceiptWaitsPerToken, DefaultReceiptWaitsPerToken)
	setN(&l.ReceiptWaitsPerAddr, DefaultReceiptWaitsPerAddr)
	return l
}

// errTooManyWaits refuses a wait over a cap: 429 too_many_waits.
var errTooManyWaits = errors.New("too many waits")

// AddrKey is the address a client is counted under: its IP, with IPv6
// grouped by /64 (one host usually holds a whole /64) and IPv4-mapped
// IPv6 taken as IPv4. A remote address that does not parse counts as
// itself.
func AddrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// waitCaps counts held waits per key (user, token, address) against caps.
type waitCaps struct {
	mu     sync.Mutex
	n      map[string]int
	kinds  map[string]int         // held, by kind
	refuse *prometheus.CounterVec // by kind
}

// acquire takes a slot under every key (each with its cap), or none of
// them. It returns the release function, or false when a cap is reached.
func (c *waitCaps) acquire(kind string, keys []string, caps []int) (func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		if c.n[k] >= caps[i] {
			if c.refuse != nil {
				c.refuse.WithLabelValues(kind).Inc()
			}
			return nil, false
		}
	}
	if c.n == nil {
		c.n, c.kinds = make(map[string]int), make(map[string]int)
	}
	for _, k := range keys {
		c.n[k]++
	}
	c.kinds[kind]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, k := range keys {
				if c.n[k]--; c.n[k] <= 0 {
					delete(c.n, k)
				}
			}
			c.kinds[kind]--
		})
	}, true
}

// held returns the waits of kind held now.
func (c *waitCaps) held(kind string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(c.kinds[kind])
}

// acquireDeviceWait takes a slot for a long-poll session or an SSE stream
// of userID from the request's address.
func (s *Server) acquireDeviceWait(r *http.Request, userID string) (func(), error) {
	release, ok := s.waits.acquire("device",
		[]string{"u:" + userID, "da:" + AddrKey(r.RemoteAddr)},
		[]int{s.limits.WaitsPerUser, s.limits.WaitsPerAddr})
	if !ok {
		return nil, withDetail(errTooManyWaits, "at most "+strconv.Itoa(s.limits.WaitsPerUser)+
			" long-poll sessions and event streams per user, and "+strconv.Itoa(s.limits.WaitsPerAddr)+" per address")
	}
	return release, nil
}

// acquireReceiptWait takes a slot for a held GET /v1/receipts of the
// mailbox (one token each) from the request's address.
func (s *Server) acquireReceiptWait(r *http.Request, mailboxID string) (func(), error) {
	release, ok := s.waits.acquire("receipts",
		[]string{"t:" + mailboxID, "ra:" + AddrKey(r.RemoteAddr)},
		[]int{s.limits.ReceiptWaitsPerToken, s.limits.ReceiptWaitsPerAddr})
	if !ok {
		return nil, withDetail(errTooManyWaits, "at most "+strconv.Itoa(s.limits.ReceiptWaitsPerToken)+
			" receipt waits per mailbox token, and "+strconv.Itoa(s.limits.ReceiptWaitsPerAddr)+" per address")
	}
	return release, nil
}

// bodyDeadlines bounds the reading of every request body, counted from when
// the request reaches the handler: BatchBodyTimeout for POST /v1/push,
// BodyTimeout for the rest. The bound is absolute (a deadline on the
// connection), so a sender that trickles a byte at a time cannot stretch
// it: its read fails, the request is refused and the connection closed.
// Requests without a body get no deadline: net/http's background read
// would cancel a long handler (an event stream, a backup download) when it
// passed. The handler lifts the deadline once the body is in
// (clearReadDeadline). A restore with the admin token uploads a whole
// backup and is not bounded; without the token it is, like any other.
func (s *Server) bodyDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != http.NoBody && !s.trustedCall(r) {
			d := s.limits.BodyTimeout
			if r.URL.Path == "/v1/push" {
				d = s.limits.BatchBodyTimeout
			}
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}

// trustedCall reports whether r is a restore with the admin token. (The
// node-to-node calls are not on the public port.)
func (s *Server) trustedCall(r *http.Request) bool {
	if r.URL.Path != "/admin/v1/restore" {
		return false
	}
	_, ok := s.isAdmin(r)
	return ok && s.cfg.AdminToken != ""
}

// errBodyTimeout: the request body did not arrive within its deadline.
var errBodyTimeout = errors.New("request body timeout")

// isTimeout reports whether err is a deadline passing on the connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clearReadDeadline lifts the read deadline once a request's body is in:
// net/http reads the connection in the background to see the client go
// away, and a deadline passing there would cancel a held request's
// context. The next request on the connection starts without one.
func clearReadDeadline(w http.ResponseWriter) {
	http.NewResponseController(w).SetReadDeadline(time.Time{})
}

// initLimits applies the defaults and registers the refusal counter.
func (s *Server) initLimits() {
	s.limits = s.cfg.Limits.withDefaults()
	s.waits.refuse = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hub", Name: "waits_refused_total",
		Help: "Held waits refused with 429 too_many_waits, by kind (device: long-poll sessions and SSE streams; receipts: GET /v1/receipts waits).",
	}, []string{"kind"})
	s.metrics.MustRegister(s.waits.refuse)
	for _, kind := range []string{"device", "receipts"} {
		s.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hub", Name: "waits_held", ConstLabels: prometheus.Labels{"kind": kind},
			Help: "Held waits counted against the wait caps, by kind.",
		}, func() float64 { return s.waits.held(kind) }))
	}
}
