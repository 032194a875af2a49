package transport

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTP requests in /metrics: hub_http_requests_total{route, code} and
// hub_http_request_duration_seconds{route}. The route is the ServeMux
// pattern that took the request ("POST /v1/push/{token}"), never the raw
// path, so the label's values are the routes and nothing a client sends;
// a request refused before routing (a preflight, an address over its
// authentication-failure limit) is counted under the pattern it would have
// taken, and one no route takes under "other".
//
// The request path allocates nothing for this in the steady state: the
// routes' counters are found in a map that is only copied when a route is
// first seen, the status codes are atomic counters in an array per route,
// the histogram is curried per route once, and the response writer that
// notes the status comes from a pool.
type httpMetrics struct {
	mux      *http.ServeMux
	routes   atomic.Pointer[map[string]*routeStats] // copied on write
	mu       sync.Mutex                             // serialises writers of routes
	duration *prometheus.HistogramVec
	desc     *prometheus.Desc
	writers  sync.Pool // *statusWriter
}

// routeStats are one route's counters.
type routeStats struct {
	route    string
	duration prometheus.Observer
	codes    [500]atomic.Uint64 // by status code - 100
}

const otherRoute = "other"

func newHTTPMetrics(mux *http.ServeMux) *httpMetrics {
	m := &httpMetrics{
		mux: mux,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hub", Name: "http_request_duration_seconds",
			Help: "Time from a request's headers to the end of its handler, by route; held long-polls, event streams and receipt waits last as long as they are held, a WebSocket until its upgrade.",
			// From a cached read to a long-poll's full wait.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		desc: prometheus.NewDesc("hub_http_requests_total",
			"HTTP requests answered, by route (the pattern, not the path) and status code.",
			[]string{"route", "code"}, nil),
	}
	empty := map[string]*routeStats{}
	m.routes.Store(&empty)
	m.writers.New = func() any { return new(statusWriter) }
	return m
}

// stats returns the counters of route, made on first use.
func (m *httpMetrics) stats(route string) *routeStats {
	if rs := (*m.routes.Load())[route]; rs != nil {
		return rs
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	if rs := old[route]; rs != nil {
		return rs
	}
	rs := &routeStats{route: route, duration: m.duration.WithLabelValues(route)}
	next := make(map[string]*routeStats, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[route] = rs
	m.routes.Store(&next)
	return rs
}

// wrap counts the requests next answers.
func (m *httpMetrics) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := m.writers.Get().(*statusWriter)
		sw.ResponseWriter, sw.code = w, 0
		next.ServeHTTP(sw, r)
		code := sw.code
		sw.ResponseWriter = nil
		m.writers.Put(sw)
		if code == 0 {
			code = http.StatusOK // nothing written: net/http answers 200
		}
		route := r.Pattern
		if route == "" {
			// Answered before the mux saw it: the route it would have taken.
			_, route = m.mux.Handler(r)
		}
		if route == "" || route == "/" {
			route = otherRoute
		}
		rs := m.stats(route)
		if code >= 100 && code < 600 {
			rs.codes[code-100].Add(1)
		}
		rs.duration.Observe(time.Since(start).Seconds())
	})
}

func (m *httpMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, (*httpCounts)(m)}
}

// httpCounts is hub_http_requests_total, read from the routes' arrays at
// scrape time.
type httpCounts httpMetrics

func (c *httpCounts) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *httpCounts) Collect(ch chan<- prometheus.Metric) {
	for _, rs := range *c.routes.Load() {
		for i := range rs.codes {
			if n := rs.codes[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n),
					rs.route, strconv.Itoa(i+100))
			}
		}
	}
}

// statusWriter notes the status a handler answers. Unwrap lets
// http.ResponseController (flushes, deadlines, the WebSocket's hijack)
// reach the connection's own writer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 || w.code < 200 { // a 1xx may precede the real answer
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
