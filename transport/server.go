package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/mailbox"
)

// Config configures a Server. Zero fields take the defaults below, except
// OpenRegistration and AdminToken, whose zero values are the closed ones.
type Config struct {
	PayloadLimit     int           // bytes of one message's payload; default 4096
	DefaultTTL       time.Duration // TTL of a publish without a TTL header; default 24h (whole seconds)
	MaxTTL           time.Duration // largest TTL accepted; default 28 days (2419200 s)
	OpenRegistration bool          // POST /v1/users without the admin token
	AdminToken       string        // Bearer token for admin calls; "" refuses them all
	TicketTTL        time.Duration // lifetime of a connect ticket; default 60s
	MaxBatch         int           // items in one POST /v1/push batch; default 1000
	PingInterval     time.Duration // how often WebSockets are pinged and SSE streams get a comment; default 25s
	PollWaitMax      time.Duration // longest wait of a long-poll request; default 60s (whole seconds)
	PollInactivity   time.Duration // a long-poll session with no request for this long ends; default 60s
	Logger           *slog.Logger  // nil discards

	// PublicURL is the base URL clients reach this hub at, such as
	// "https://hub.example" or "https://example.com/hub": every URL the hub
	// hands out (a mailbox's push_url, the Location of a new message or
	// mailbox) is built from it. "" builds push_url from each request's
	// scheme and Host, and Locations are path-absolute ("/v1/...").
	// New panics on a PublicURL that is not an absolute http(s) URL
	// without query or fragment (see CheckPublicURL).
	PublicURL string

	// ReceiptURLs decides which receipt URLs a new mailbox may have; the
	// zero value is https to public addresses only (hub/receipts).
	ReceiptURLs receipts.URLPolicy
	// Receipts wakes GET /v1/receipts long-polls; nil answers them at once.
	Receipts ReceiptFeed
	// Limits bounds what one client may hold (limits.go).
	Limits Limits
	// Quotas bounds what one user may hold (quotas.go).
	Quotas Quotas
	// RateLimits are the per-address, per-user and per-token limits
	// (ratelimit.go); the zero value limits nothing.
	RateLimits RateLimits
}

// The defaults of Config.
const (
	DefaultPayloadLimit = 4096
	DefaultDefaultTTL   = 24 * time.Hour
	DefaultMaxTTL       = 28 * 24 * time.Hour
	DefaultTicketTTL    = 60 * time.Second
	DefaultMaxBatch     = 1000
	DefaultPingInterval = 25 * time.Second
	DefaultPollWaitMax  = 60 * time.Second
	DefaultPollInactive = 60 * time.Second
)

// Cluster is what the transport needs from the replicated log; *cluster.Node
// satisfies it. Every method is called from many request goroutines at once
// and must be safe for concurrent use. Publish and Propose return only once
// the command is committed and applied to the local store (or has failed);
// their error is the cluster's (ErrNotLeader, ErrNoQuorum, ErrClosed, or the
// context's), and refusals of the state machine come back inside the results.
type Cluster interface {
	Publish(ctx context.Context, items []mailbox.PublishItem) ([]mailbox.PublishedItem, error)
	Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error)
	Ready() bool
}

// Server is the publisher and user HTTP API. It holds no state of its own
// beyond buffers: every change goes through the Cluster, every read through
// the Store. It is safe for concurrent use.
type Server struct {
	cfg     Config
	store   *mailbox.Store
	cluster Cluster
	hub     *hub.Hub
	log     *slog.Logger
	mux     *http.ServeMux // every route: Handler
	pubMux  *http.ServeMux // the public API: PublicHandler
	opMux   *http.ServeMux // the operators' routes: InternalHandler

	maxTTLSeconds     int64
	defaultTTLSeconds int64
	batchBodyLimit    int64
	bufs              sync.Pool // *[]byte of cap PayloadLimit+1, for push bodies

	publicURL  string // cfg.PublicURL without its trailing slash; "" when unset
	pathPrefix string // its path without the trailing slash, for Locations

	metrics *prometheus.Registry // GET /metrics
	m       *serverMetrics       // the transport's own series (sessionmetrics.go)

	ws        wsConns
	sids      sidRegistry        // long-poll and SSE sessions
	stopBG    context.CancelFunc // stops the background goroutines
	bg        sync.WaitGroup
	closeOnce sync.Once

	receiptPolls receiptPolls // held GET /v1/receipts, ended by BeginClose
	catchups     catchups     // coalesced catch-ups after lookups missed (consistency.go)

	limits Limits      // cfg.Limits with defaults
	waits  waitCaps    // held waits per user, token and address
	rates  *rateLimits // ratelimit.go
}

// New returns a Server over store (for reads), c (for writes) and h (the
// sessions of devices connected to this node).
func New(cfg Config, store *mailbox.Store, c Cluster, h *hub.Hub) *Server {
	if cfg.PayloadLimit <= 0 {
		cfg.PayloadLimit = DefaultPayloadLimit
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultDefaultTTL
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = DefaultTicketTTL
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PollWaitMax <= 0 {
		cfg.PollWaitMax = DefaultPollWaitMax
	}
	if cfg.PollInactivity <= 0 {
		cfg.PollInactivity = DefaultPollInactive
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:           cfg,
		store:         store,
		cluster:       c,
		hub:           h,
		log:           cfg.Logger,
		maxTTLSeconds: int64(cfg.MaxTTL / time.Second),

		receiptPolls: receiptPolls{done: make(chan struct{})},
	}
	if cfg.PublicURL != "" {
		u, err := CheckPublicURL(cfg.PublicURL)
		if err != nil {
			panic("transport: " + err.Error())
		}
		s.publicURL, s.pathPrefix = strings.TrimRight(cfg.PublicURL, "/"), strings.TrimRight(u.Path, "/")
	}
	s.defaultTTLSeconds = min(int64(cfg.DefaultTTL/time.Second), s.maxTTLSeconds)
	if int64(cfg.DefaultTTL/time.Second) > s.maxTTLSeconds {
		s.log.Warn("transport: DefaultTTL is over MaxTTL; using MaxTTL",
			slog.Duration("default_ttl", cfg.DefaultTTL), slog.Duration("max_ttl", cfg.MaxTTL))
	}
	// A batch item's payload may take twice its size once JSON-escaped, plus
	// its envelope (token, topic, key, field names).
	s.batchBodyLimit = int64(cfg.MaxBatch) * (2*int64(cfg.PayloadLimit) + batchItemEnvelope)
	limit := cfg.PayloadLimit + 1
	s.bufs.New = func() any { b := make([]byte, 0, limit); return &b }
	s.metrics = s.newMetrics()
	s.initLimits()
	s.rates = newRateLimits(cfg.RateLimits)
	s.metrics.MustRegister(s.rates.collectors()...)
	s.routes()
	s.m = newServerMetrics(s)
	s.metrics.MustRegister(s.m.collectors...)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBG = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.pingLoop(ctx)
	}()
	return s
}

// Close closes every WebSocket with going_away, ends every long-poll and
// SSE session (a held poll answers 410 going_away, a stream sends its error
// event; their inactivity timers stop), stops the server's background
// goroutines and waits for the connections' goroutines, until ctx ends.
// Plain HTTP requests are http.Server's to drain.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.ws.closeAll()
		s.sids.closeAll()
		s.BeginClose()
		s.stopBG()
	})
	done := make(chan struct{})
	go func() {
		s.ws.wg.Wait()
		s.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("transport: close: %w", ctx.Err())
	}
}

// CheckPublicURL parses a Config.PublicURL: an absolute http or https URL
// with a host and no query, fragment or user information.
func CheckPublicURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("public URL %q: %w", raw, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("public URL %q: need an absolute http:// or https:// URL", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "":
		return nil, fmt.Errorf("public URL %q: no query, fragment or user information", raw)
	}
	return u, nil
}

// batchItemEnvelope is the room a batch item takes besides its data.
const batchItemEnvelope = 512

// Handler returns the HTTP handler of the API. Unknown paths and methods get
// JSON error bodies like everything else. The /v1/ paths answer pages of any
// origin (see cors). An address over its failed-authentication limit is
// refused the credentialed paths (authGate, ratelimit.go).
// Every request is counted by route and status (httpmetrics.go).
func (s *Server) Handler() http.Handler {
	return s.m.http.wrap(cors(s.authGate(s.bodyDeadlines(s.mux))))
}

// PublicHandler is Handler without the operators' routes (/metrics, /admin
// and /admin/v1/...): what a node serves on its public port when it has an
// internal listener for those. /healthz and /readyz stay on both.
func (s *Server) PublicHandler() http.Handler {
	return s.m.http.wrap(cors(s.authGate(s.bodyDeadlines(s.pubMux))))
}

// InternalHandler serves the operators' routes only (/metrics, /admin,
// /admin/v1/..., /healthz, /readyz), for an internal listener. It sends no
// CORS headers: no page of another origin is meant to call it.
func (s *Server) InternalHandler() http.Handler {
	return s.m.http.wrap(s.authGate(s.bodyDeadlines(s.opMux)))
}

func (s *Server) routes() {
	s.mux, s.pubMux, s.opMux = http.NewServeMux(), http.NewServeMux(), http.NewServeMux()
	// Every route is on mux (Handler); the public API also on pubMux
	// (PublicHandler), the operators' routes also on opMux (InternalHandler).
	pub := func(pattern string, h http.HandlerFunc) {
		s.mux.Handle(pattern, h)
		s.pubMux.Handle(pattern, h)
	}
	op := func(pattern string, h http.Handler) {
		s.mux.Handle(pattern, h)
		s.opMux.Handle(pattern, h)
	}

	// Health checks answer on both ports: load balancers probe the public
	// one, orchestrators often the internal one.
	for _, m := range []*http.ServeMux{s.mux, s.pubMux, s.opMux} {
		m.HandleFunc("GET /healthz", s.handleHealthz)
		m.HandleFunc("GET /readyz", s.handleReadyz)
	}
	op("GET /metrics", s.metricsHandler())

	// Publishers.
	pub("POST /v1/push/{token}", s.limitPush(s.handlePush))
	pub("DELETE /v1/push/{token}", s.handleRevokeToken)
	pub("POST /v1/push", s.limitBatchGate(s.handleBatch))
	pub("GET /v1/messages/{id}", s.handleMessageStatus)
	pub("GET /v1/receipts", s.handleReceipts)

	// Devices.
	pub("GET /v1/ws", s.handleWS)
	pub("POST /v1/poll", s.handlePoll)
	pub("GET /v1/sse", s.handleSSE)
	pub("POST /v1/ack", s.handleAck)

	// The browser client and the demo page (web.go).
	pub("GET /v1/hub.js", s.handleHubJS)
	pub("GET /{$}", s.handleDemo)
	pub("GET /demo/{file}", s.handleDemoAsset)

	// Users.
	pub("POST /v1/users", s.limitRegister(s.handleCreateUser))
	pub("DELETE /v1/users/me", s.handleDeleteUser)
	pub("POST /v1/mailboxes", s.limitUser(s.rates.mailbox, s.handleCreateMailbox))
	pub("GET /v1/mailboxes", s.handleListMailboxes)
	pub("GET /v1/mailboxes/{id}", s.handleGetMailbox)
	pub("DELETE /v1/mailboxes/{id}", s.handleRevokeMailbox)
	pub("POST /v1/tickets", s.limitUser(s.rates.ticket, s.handleIssueTicket))
	pub("GET /v1/devices", s.handleListDevices)
	pub("DELETE /v1/devices/{id}", s.handleDeleteDevice)

	// Operators, and the calls between nodes (admin.go).
	s.adminRoutes(op)

	// Everything else: 404 or 405, as JSON.
	for _, m := range []*http.ServeMux{s.mux, s.pubMux, s.opMux} {
		m.HandleFunc("/", s.noRoute(m))
	}
}

// probeMethods are the methods tried to tell a 405 from a 404.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// noRoute answers a request no route of m took: 405 with Allow when the path
// exists on m for other methods, else 404.
func (s *Server) noRoute(m *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.handleNoRoute(m, w, r) }
}

func (s *Server) handleNoRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range probeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) == 0 {
		s.writeError(w, r, errNotFound)
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.writeError(w, r, errMethodNotAllowed)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeRaw(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.cluster.Ready() {
		s.writeError(w, r, errNotReady)
		return
	}
	if df, ok := s.cluster.(interface{ DiskFull() bool }); ok && df.DiskFull() {
		s.writeError(w, r, fmt.Errorf("%w: %w", errNotReady, diskguard.ErrDiskFull))
		return
	}
	writeRaw(w, http.StatusOK, []byte(`{"status":"ready"}`))
}
