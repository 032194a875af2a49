package transport

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// clock is a settable time for the limiter's tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiterTakesTheBurstThenRefillsAtTheRate(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := newLimiter("test", Rate{PerSecond: 2, Burst: 3}, 100) // one every 500 ms
	for i := range 3 {
		if d, ok := l.take(l.bucket(1), 1, c.now()); !ok {
			t.Fatalf("take %d of the burst refused (delay %v)", i+1, d)
		}
	}
	d, ok := l.take(l.bucket(1), 1, c.now())
	if ok || d != 500*time.Millisecond {
		t.Fatalf("take over the burst: ok=%v delay=%v, want refused with 500ms", ok, d)
	}
	if _, ok := l.take(l.bucket(2), 1, c.now()); !ok {
		t.Fatal("another key is refused: keys share a bucket")
	}
	c.advance(499 * time.Millisecond)
	if d, ok := l.take(l.bucket(1), 1, c.now()); ok || d != time.Millisecond {
		t.Fatalf("1 ms before the refill: ok=%v delay=%v, want refused with 1ms", ok, d)
	}
	c.advance(time.Millisecond)
	if _, ok := l.take(l.bucket(1), 1, c.now()); !ok {
		t.Fatal("refused once the bucket refilled one")
	}
	if _, ok := l.take(l.bucket(1), 1, c.now()); ok {
		t.Fatal("a refusal spent nothing, but the bucket gave two after one refill")
	}
}

func TestLimiterTakeUpToAndEmpty(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := newLimiter("test", Rate{PerSecond: 1, Burst: 5}, 100)
	if _, blocked := l.empty(7, c.now); blocked {
		t.Fatal("a key with no bucket reads empty")
	}
	if got, d := l.takeUpTo(l.bucket(7), 3, c.now()); got != 3 || d != 0 {
		t.Fatalf("takeUpTo(3) of 5 = %d, %v; want 3, 0", got, d)
	}
	if got, d := l.takeUpTo(l.bucket(7), 4, c.now()); got != 2 || d != time.Second {
		t.Fatalf("takeUpTo(4) of 2 = %d, %v; want 2, 1s", got, d)
	}
	if d, blocked := l.empty(7, c.now); !blocked || d != time.Second {
		t.Fatalf("empty bucket: blocked=%v delay=%v, want true, 1s", blocked, d)
	}
	if got, _ := l.takeUpTo(l.bucket(7), 1, c.now()); got != 0 {
		t.Fatalf("takeUpTo of an empty bucket gave %d", got)
	}
	c.advance(time.Second)
	if _, blocked := l.empty(7, c.now); blocked {
		t.Fatal("still empty after a refill")
	}
}

func TestLimiterFindMakesNoBucket(t *testing.T) {
	l := newLimiter("test", Rate{PerSecond: 1, Burst: 1}, 100)
	for k := range uint64(10) {
		if l.find(k) != nil || l.peek(k) != nil {
			t.Fatalf("key %d has a bucket nobody made", k)
		}
	}
	if d, ok := l.take(l.find(3), 1, time.Now()); !ok || d != 0 {
		t.Fatal("a key with no bucket is refused; it should pass")
	}
	if n := l.len(); n != 0 {
		t.Fatalf("%d buckets made by find and peek", n)
	}
}

func TestLimiterStaysBoundedUnderManyKeys(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newLimiter("test", Rate{PerSecond: 1, Burst: 1}, 256)
	const spread = 0x9E3779B97F4A7C15 // over the shards, as maphash would
	var last uint64
	for k := range uint64(100_000) {
		last = k * spread
		l.take(l.bucket(last), 1, now)
	}
	if n := l.len(); n > 256 {
		t.Fatalf("%d buckets after 100,000 keys, want at most 256", n)
	}
	for i := range l.shards {
		sh := &l.shards[i]
		if len(sh.keys) != sh.lru.Len() {
			t.Fatalf("shard %d: map %d entries, LRU %d", i, len(sh.keys), sh.lru.Len())
		}
	}
	// The most recent key kept its bucket (and is still empty).
	if _, blocked := l.empty(last, func() time.Time { return now }); !blocked {
		t.Fatal("the most recently used key lost its bucket")
	}
}

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{"peer", nil, "192.0.2.7:5000", nil, "192.0.2.7"},
		{"XFF ignored without trusted proxies", nil, "192.0.2.7:5000", []string{"198.51.100.1"}, "192.0.2.7"},
		{"XFF ignored from an untrusted peer", proxies, "192.0.2.7:5000", []string{"198.51.100.1"}, "192.0.2.7"},
		{"trusted proxy", proxies, "10.1.1.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"the client's own XFF is not believed", proxies, "10.1.1.1:5000", []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", proxies, "10.1.1.1:5000", []string{"198.51.100.1, 10.2.2.2", "10.3.3.3"}, "198.51.100.1"},
		{"garbage from a hop", proxies, "10.1.1.1:5000", []string{"nonsense, 10.2.2.2"}, "10.2.2.2"},
		{"only proxies", proxies, "10.1.1.1:5000", []string{"10.2.2.2"}, "10.2.2.2"},
		{"mapped IPv4", nil, "[::ffff:192.0.2.7]:5000", nil, "192.0.2.7"},
		{"not an address", nil, "pipe", nil, "invalid IP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rl := newRateLimits(RateLimits{TrustedProxies: tc.trusted})
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := rl.client(r).String(); got != tc.want {
				t.Fatalf("client = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAddressKeysGroupIPv6By64(t *testing.T) {
	rl := newRateLimits(RateLimits{})
	k := func(s string) uint64 { return rl.addrKey(netip.MustParseAddr(s)) }
	if k("2001:db8:1:2::1") != k("2001:db8:1:2:ffff:ffff:ffff:ffff") {
		t.Error("two addresses of one /64 have different keys")
	}
	if k("2001:db8:1:2::1") == k("2001:db8:1:3::1") {
		t.Error("two /64s share a key")
	}
	if k("192.0.2.1") == k("192.0.2.2") {
		t.Error("two IPv4 addresses share a key")
	}
}

func TestRetryAfterIsWholeSecondsAtLeastOne(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 90 * time.Second: "90",
	} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%v) = %s, want %s", d, got, want)
		}
	}
}

// BenchmarkRateLimitPush is the per-request cost of the limits on the
// publish path (the failed-authentication gate, then the per-address and
// per-token buckets), around a handler that does nothing: what a publish
// pays for them. The tokens' buckets exist, as they do for a token in use.
func BenchmarkRateLimitPush(b *testing.B) {
	lim := DefaultRateLimits()
	lim.PublishToken = Rate{PerSecond: 1e12, Burst: 1e9} // never refuse: measure the pass
	lim.PublishAddr = Rate{PerSecond: 1e12, Burst: 1e9}
	s := &Server{rates: newRateLimits(lim)}
	noop := func(w http.ResponseWriter, r *http.Request) {}
	h := s.authGate(s.limitPush(noop))
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = "tok" + strconv.Itoa(i)
		s.rates.pubToken.bucket(s.rates.key(tokens[i]))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		r := httptest.NewRequest("POST", "/v1/push/x", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		for pb.Next() {
			r.SetPathValue("token", tokens[i%len(tokens)])
			i++
			h.ServeHTTP(nil, r)
		}
	})
}
