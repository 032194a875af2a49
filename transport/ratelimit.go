package transport

import (
	"container/list"
	"errors"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/notifyhub/hub/mailbox"
)

// Rate limits: token buckets (golang.org/x/time/rate) per client address,
// per user and per mailbox token, checked before a request costs a raft
// entry or a store write. docs/security.md, "Rate limits and quotas", says
// what each one protects; docs/protocol.md, the 429 a client gets.
//
// Each limit keeps its buckets in a sharded LRU of at most MaxKeys keys, so
// that a flood of addresses or made-up tokens costs a bounded amount of
// memory: the least recently used bucket goes (it was idle longest, so it is
// the one most likely full again). Keys are maphash sums of the address,
// user id or token: no secret is kept, and an attacker cannot aim
// collisions at a seed they do not know.

// Rate is one limit: a sustained rate and a burst. PerSecond <= 0 is no
// limit.
type Rate struct {
	PerSecond float64 // events per second, refilled continuously
	Burst     int     // events allowed at once; taken as 1 when less
}

// RateLimits are the limits of a Server. The zero value limits nothing;
// DefaultRateLimits is what hubd runs with.
type RateLimits struct {
	Register     Rate // POST /v1/users per client address (the admin token is not limited)
	AuthFailure  Rate // refused credentials per client address; over it, the address's /v1/ and /admin/v1/ requests are refused
	Ticket       Rate // POST /v1/tickets per user
	Mailbox      Rate // POST /v1/mailboxes per user
	PublishToken Rate // messages per mailbox token (a batch counts its items)
	PublishAddr  Rate // messages per client address (a batch counts its items)

	// MaxKeys bounds the buckets each limit keeps; default 65536.
	MaxKeys int
	// TrustedProxies are the peers whose X-Forwarded-For names the client;
	// empty: the connection's address is the client, whatever it says.
	TrustedProxies []netip.Prefix

	now func() time.Time // for tests; nil is time.Now
}

// DefaultMaxKeys is RateLimits.MaxKeys when it is zero.
const DefaultMaxKeys = 65536

// DefaultRateLimits returns hubd's defaults, sized for a production node:
// a person or a device never meets them, a script hammering the node does.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		Register:     Rate{PerSecond: 0.1, Burst: 10},  // 6 a minute, 10 at once
		AuthFailure:  Rate{PerSecond: 1, Burst: 20},    // 20 mistakes, then 1 a second
		Ticket:       Rate{PerSecond: 1, Burst: 30},    // a reconnecting device takes one a connect
		Mailbox:      Rate{PerSecond: 1, Burst: 20},    //
		PublishToken: Rate{PerSecond: 100, Burst: 200}, // one app's stream to one user
		PublishAddr:  Rate{PerSecond: 1000, Burst: 2000},
	}
}

// errRateLimited is the refusal of a request over a limit: 429
// rate_limited, with Retry-After from the bucket.
var errRateLimited = errors.New("rate limited")

// rateLimits holds a Server's limits; a nil *limiter is a limit that is off.
type rateLimits struct {
	seed    maphash.Seed
	trusted []netip.Prefix
	now     func() time.Time

	register, authFail, ticket, mailbox, pubToken, pubAddr *limiter

	authFailures atomic.Uint64 // refused credentials counted, for /metrics
}

func newRateLimits(c RateLimits) *rateLimits {
	rl := &rateLimits{seed: maphash.MakeSeed(), trusted: c.TrustedProxies, now: c.now}
	if rl.now == nil {
		rl.now = time.Now
	}
	keys := c.MaxKeys
	if keys <= 0 {
		keys = DefaultMaxKeys
	}
	rl.register = newLimiter("register", c.Register, keys)
	rl.authFail = newLimiter("auth_failure", c.AuthFailure, keys)
	rl.ticket = newLimiter("ticket", c.Ticket, keys)
	rl.mailbox = newLimiter("mailbox", c.Mailbox, keys)
	rl.pubToken = newLimiter("publish_token", c.PublishToken, keys)
	rl.pubAddr = newLimiter("publish_address", c.PublishAddr, keys)
	return rl
}

func (rl *rateLimits) all() []*limiter {
	return []*limiter{rl.register, rl.authFail, rl.ticket, rl.mailbox, rl.pubToken, rl.pubAddr}
}

// collectors are the limits' series in /metrics.
func (rl *rateLimits) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "hub", Name: "auth_failures_total",
		Help: "Requests refused for a missing or wrong credential (user secret, admin token, mailbox token, ticket), counted against their address.",
	}, func() float64 { return float64(rl.authFailures.Load()) })}
	for _, l := range rl.all() {
		if l == nil {
			continue
		}
		labels := prometheus.Labels{"limit": l.name}
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "hub", Name: "rate_limited_total", ConstLabels: labels,
				Help: "Requests (or batch items) refused with 429 rate_limited, by limit.",
			}, func() float64 { return float64(l.refused.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "hub", Name: "rate_limit_keys", ConstLabels: labels,
				Help: "Buckets a limit holds (addresses, users or tokens); at most --rate-limit-keys.",
			}, func() float64 { return float64(l.len()) }),
		)
	}
	return cs
}

// client returns the address a request is limited by: the connection's
// peer, or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one. A peer that is no IP address (a test's
// fake RemoteAddr) is the zero Addr, one shared key.
func (rl *rateLimits) client(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if len(rl.trusted) == 0 || !rl.isTrusted(a) {
		return a
	}
	return rl.forwardedFor(r.Header.Values("X-Forwarded-For"), a)
}

// forwardedFor walks X-Forwarded-For from the right (the hops nearest this
// node first) past trusted proxies. Each hop appends what it heard from, so
// the first untrusted address is the one a trusted proxy vouches for;
// anything to its left was written by the client. A hop that wrote garbage
// is answered for by the proxy that passed it on (peer).
func (rl *rateLimits) forwardedFor(values []string, peer netip.Addr) netip.Addr {
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var hop string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				hop, v = v, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				return peer
			}
			a = a.Unmap()
			if !rl.isTrusted(a) {
				return a
			}
			peer = a
		}
	}
	return peer // every hop is a trusted proxy
}

func (rl *rateLimits) isTrusted(a netip.Addr) bool {
	for _, p := range rl.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrKey is the key of an address: IPv4 whole, IPv6 by its /64 (one
// customer's network, where a host may take any address it likes).
func (rl *rateLimits) addrKey(a netip.Addr) uint64 {
	if a.Is6() {
		a = netip.PrefixFrom(a.WithZone(""), 64).Masked().Addr()
	}
	b := a.As16()
	return maphash.Bytes(rl.seed, b[:])
}

// key is the key of a user id or a token.
func (rl *rateLimits) key(s string) uint64 { return maphash.String(rl.seed, s) }

// failed counts a refused credential against the request's address: the
// refusals a guess gets, 401 (wrong user secret, admin token, mailbox token
// for status or receipts, ticket). A publish to an unknown or revoked token
// (404, 410) is not counted: an app's backend meets those in normal work,
// and publishes have their own limits. r is nil where no request is at
// hand (a device hello's ticket); such a failure is counted in /metrics
// only.
func (rl *rateLimits) failed(r *http.Request, err error) {
	if we, _ := lookup(err); we.status != http.StatusUnauthorized {
		return
	}
	rl.authFailures.Add(1)
	if rl.authFail == nil || r == nil {
		return
	}
	rl.authFail.take(rl.authFail.bucket(rl.addrKey(rl.client(r))), 1, rl.now())
}

// credentialed reports whether a path takes credentials, so that an address
// over its failed-authentication limit is refused it: the API, the device
// transports and the admin API. Health checks, /metrics, the static files
// and the calls between nodes are not.
func credentialed(path string) bool {
	if strings.HasPrefix(path, "/v1/") {
		return path != "/v1/hub.js"
	}
	return strings.HasPrefix(path, "/admin/v1/")
}

// authGate refuses every credentialed request of an address whose failed
// authentications are over the limit, right or wrong credentials alike:
// what is tried while it is blocked is not even looked at.
func (s *Server) authGate(next http.Handler) http.Handler {
	l := s.rates.authFail
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if credentialed(r.URL.Path) {
			if d, blocked := l.empty(s.rates.addrKey(s.rates.client(r)), s.rates.now); blocked {
				s.rateLimited(w, r, l, d)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// limitRegister limits POST /v1/users per address. A request with the
// admin token (an app's backend registering its users) is not limited.
func (s *Server) limitRegister(h http.HandlerFunc) http.HandlerFunc {
	l := s.rates.register
	if l == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.adminBearer(r) {
			if d, ok := l.take(l.bucket(s.rates.addrKey(s.rates.client(r))), 1, s.rates.now()); !ok {
				s.rateLimited(w, r, l, d)
				return
			}
		}
		h(w, r)
	}
}

// adminBearer reports whether r bears the admin token, without counting a
// wrong one as a failure (the handler does that).
func (s *Server) adminBearer(r *http.Request) bool {
	cred, ok := bearer(r)
	return ok && s.cfg.AdminToken != "" && cred == s.cfg.AdminToken
}

// limitUser limits a user's calls of h (tickets, mailbox creation). The
// secret is checked here against the local store (no catch-up): only a
// user who proved who they are spends their own bucket, so nobody can
// spend another's. A secret that does not check out goes on to the
// handler, which refuses it (or, made a moment ago through another node,
// lets it through once).
func (s *Server) limitUser(l *limiter, h http.HandlerFunc) http.HandlerFunc {
	if l == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if secret, ok := bearer(r); ok {
			if u, err := s.store.Authenticate(secret); err == nil {
				if d, ok := l.take(l.bucket(s.rates.key(u.ID)), 1, s.rates.now()); !ok {
					s.rateLimited(w, r, l, d)
					return
				}
			}
		}
		h(w, r)
	}
}

// limitPush limits POST /v1/push/{token}: per address first, then per
// token. A token gets a bucket once the store knows it: a flood of made-up
// tokens is limited by its address alone and fills no map.
func (s *Server) limitPush(h http.HandlerFunc) http.HandlerFunc {
	rl := s.rates
	if rl.pubAddr == nil && rl.pubToken == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		now := rl.now()
		if l := rl.pubAddr; l != nil {
			if d, ok := l.take(l.bucket(rl.addrKey(rl.client(r))), 1, now); !ok {
				s.rateLimited(w, r, l, d)
				return
			}
		}
		if l := rl.pubToken; l != nil {
			token := r.PathValue("token")
			if d, ok := l.take(s.tokenBucket(l, token), 1, now); !ok {
				s.rateLimited(w, r, l, d)
				return
			}
		}
		h(w, r)
	}
}

// tokenBucket returns token's bucket in l, made only if the store knows the
// token (looked up once, when the token has no bucket yet); nil if not.
func (s *Server) tokenBucket(l *limiter, token string) *rate.Limiter {
	key := s.rates.key(token)
	if lim := l.find(key); lim != nil {
		return lim
	}
	if !mailbox.ValidToken(token) {
		return nil
	}
	if _, err := s.store.MailboxByToken(token); err != nil {
		return nil // unknown, or the store cannot say: the handler answers
	}
	return l.bucket(key)
}

// limitBatchGate refuses a whole batch before its body is read when its
// address has no room for one message. A batch with room is limited item
// by item (limitBatchItems).
func (s *Server) limitBatchGate(h http.HandlerFunc) http.HandlerFunc {
	l := s.rates.pubAddr
	if l == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if d, blocked := l.empty(s.rates.addrKey(s.rates.client(r)), s.rates.now); blocked {
			s.rateLimited(w, r, l, d)
			return
		}
		h(w, r)
	}
}

// limitBatchItems limits a batch's items that passed validation (errs[i]
// is nil) per address, then per token, in order: the first items within
// the limits go on, the rest get errRateLimited in their results, and the
// answer carries Retry-After. An item refused per token has spent its
// address's room.
func (s *Server) limitBatchItems(w http.ResponseWriter, r *http.Request, msgs []batchItem, errs []error) {
	rl := s.rates
	if rl.pubAddr == nil && rl.pubToken == nil {
		return
	}
	now := rl.now()
	var retry time.Duration
	refuse := func(l *limiter, i int, d time.Duration) {
		errs[i] = errRateLimited
		l.refused.Add(1)
		retry = max(retry, d)
	}
	if l := rl.pubAddr; l != nil {
		n := 0
		for i := range errs {
			if errs[i] == nil {
				n++
			}
		}
		room, d := l.takeUpTo(l.bucket(rl.addrKey(rl.client(r))), n, now)
		for i := range errs {
			if errs[i] == nil {
				if room > 0 {
					room--
				} else {
					refuse(l, i, d)
				}
			}
		}
	}
	if l := rl.pubToken; l != nil {
		want := make(map[string]int)
		for i := range msgs {
			if errs[i] == nil {
				want[msgs[i].Token]++
			}
		}
		type grant struct {
			room  int
			delay time.Duration
		}
		grants := make(map[string]grant, len(want))
		for tok, n := range want {
			room, d := l.takeUpTo(s.tokenBucket(l, tok), n, now)
			grants[tok] = grant{room, d}
		}
		for i := range msgs {
			if errs[i] != nil {
				continue
			}
			g := grants[msgs[i].Token]
			if g.room > 0 {
				g.room--
				grants[msgs[i].Token] = g
			} else {
				refuse(l, i, g.delay)
			}
		}
	}
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfter(retry))
	}
}

// rateLimited answers 429 rate_limited with Retry-After and counts it.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, l *limiter, d time.Duration) {
	l.refused.Add(1)
	w.Header().Set("Retry-After", retryAfter(d))
	s.writeError(w, r, errRateLimited)
}

// retryAfter is d in whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	secs := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(secs, 1), 10)
}

// limiter is one limit's buckets, keyed, in limiterShards LRUs.
type limiter struct {
	name    string // the limit label in /metrics
	limit   rate.Limit
	burst   int
	shards  [limiterShards]limiterShard
	refused atomic.Uint64
}

// limiterShards spreads the keys over locks, so that concurrent requests
// of different clients seldom wait for each other.
const limiterShards = 16

type limiterShard struct {
	mu   sync.Mutex
	keys map[uint64]*list.Element // of *bucket
	lru  list.List                // most recently used at the front
	max  int
}

type bucket struct {
	key uint64
	lim *rate.Limiter
}

// newLimiter returns the limiter of r keeping at most maxKeys buckets, or
// nil when r is no limit.
func newLimiter(name string, r Rate, maxKeys int) *limiter {
	if r.PerSecond <= 0 {
		return nil
	}
	l := &limiter{name: name, limit: rate.Limit(r.PerSecond), burst: max(r.Burst, 1)}
	per := max(maxKeys/limiterShards, 1)
	for i := range l.shards {
		l.shards[i].keys = make(map[uint64]*list.Element)
		l.shards[i].max = per
	}
	return l
}

// find returns key's bucket, or nil if it has none, and marks it used.
func (l *limiter) find(key uint64) *rate.Limiter {
	sh := &l.shards[key%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.touch(key)
}

// touch returns key's bucket, or nil, and marks it used. sh.mu is held.
func (sh *limiterShard) touch(key uint64) *rate.Limiter {
	if e, ok := sh.keys[key]; ok {
		sh.lru.MoveToFront(e)
		return e.Value.(*bucket).lim
	}
	return nil
}

// bucket returns key's bucket, making it if it has none, and dropping the
// least recently used bucket if the shard is full.
func (l *limiter) bucket(key uint64) *rate.Limiter {
	sh := &l.shards[key%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if lim := sh.touch(key); lim != nil {
		return lim
	}
	if sh.lru.Len() >= sh.max {
		old := sh.lru.Back()
		sh.lru.Remove(old)
		delete(sh.keys, old.Value.(*bucket).key)
	}
	b := &bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
	sh.keys[key] = sh.lru.PushFront(b)
	return b.lim
}

// peek returns key's bucket if it has one, without marking it used.
func (l *limiter) peek(key uint64) *rate.Limiter {
	sh := &l.shards[key%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.keys[key]; ok {
		return e.Value.(*bucket).lim
	}
	return nil
}

// take spends n events of lim (nil: no bucket, the request passes). When
// lim has not got them it spends nothing and returns the reservation's
// delay: how long until it would have.
func (l *limiter) take(lim *rate.Limiter, n int, now time.Time) (time.Duration, bool) {
	if lim == nil || lim.AllowN(now, n) {
		return 0, true
	}
	res := lim.ReserveN(now, n)
	if !res.OK() {
		return time.Duration(math.MaxInt64), false // n over the burst: never
	}
	d := res.DelayFrom(now)
	if d == 0 {
		return 0, true // given back by another request meanwhile
	}
	res.CancelAt(now)
	return d, false
}

// takeUpTo spends as many of n events as lim has (nil: all pass), and
// returns how many, and when fewer, the delay until one more.
func (l *limiter) takeUpTo(lim *rate.Limiter, n int, now time.Time) (int, time.Duration) {
	if lim == nil || n == 0 {
		return n, 0
	}
	for range 3 { // another request may spend between the look and the take
		k := min(n, int(lim.TokensAt(now)))
		if k <= 0 {
			break
		}
		if lim.AllowN(now, k) {
			if k == n {
				return k, 0
			}
			return k, delayOfOne(lim, now)
		}
	}
	return 0, delayOfOne(lim, now)
}

// empty reports whether key has a bucket with less than one event in it,
// and how long until it has one. It makes no bucket, and reads the clock
// only when there is one (the gate's common case is no bucket at all).
func (l *limiter) empty(key uint64, now func() time.Time) (time.Duration, bool) {
	lim := l.peek(key)
	if lim == nil {
		return 0, false
	}
	t := now()
	if lim.TokensAt(t) >= 1 {
		return 0, false
	}
	return delayOfOne(lim, t), true
}

// delayOfOne is how long until lim has one event: a reservation's delay,
// given back.
func delayOfOne(lim *rate.Limiter, now time.Time) time.Duration {
	res := lim.ReserveN(now, 1)
	d := res.DelayFrom(now)
	res.CancelAt(now)
	return d
}

// len is how many buckets l holds.
func (l *limiter) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}
