package transport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/hub"
)

// transportKind is a device transport, the transport label in /metrics.
type transportKind uint8

const (
	kindWS transportKind = iota
	kindPoll
	kindSSE
	numKinds
)

var kindNames = [numKinds]string{"ws", "poll", "sse"}

// Why a session ended, besides the endReasons the hub or the server
// decide: the reason label of hub_session_ends_total.
const (
	endDisconnected = "disconnected" // the device went (closed, reset, stopped reading)
	endInactive     = "inactive"     // a long-poll session with no request for PollInactivity
	endTerminated   = "terminated"   // a long-poll session the device terminated
	endRefused      = "refused"      // opened, then refused a wait slot (limits.go)
	endOther        = "other"
)

// endReasons are the reasons a WebSocket close may carry, indexed from 1
// (wsConn.why keeps the index, in a byte).
var endReasons = []*endReason{
	&reasonProtocol, &reasonTooBig, &reasonTicketInvalid, &reasonUserRevoked, &reasonDeviceDeleted,
	&reasonTooSlow, &reasonRestored, &reasonQuota, &reasonPingTimeout, &reasonUnavailable,
	&reasonGoingAway, &reasonInternal,
}

func endReasonIndex(r endReason) uint8 {
	for i, e := range endReasons {
		if e.code == r.code {
			return uint8(i + 1)
		}
	}
	return 0
}

func endReasonName(i uint8) string {
	if i == 0 || int(i) > len(endReasons) {
		return endDisconnected
	}
	return endReasons[i-1].code
}

// serverMetrics are the transport's series besides the hub's counters:
// every label value is curried when the server is made, so that the
// request and delivery paths only add and observe.
type serverMetrics struct {
	commitSingle, commitBatch prometheus.Observer
	deliveryBy                [numKinds]prometheus.Observer
	sessionsBy                [numKinds]prometheus.Gauge
	endsBy                    [numKinds]map[string]prometheus.Counter
	http                      *httpMetrics
	collectors                []prometheus.Collector
}

// latencyBuckets span a local commit (a fraction of a millisecond) to a
// cluster struggling with a slow disk or a lost leader (seconds).
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{http: newHTTPMetrics(s.mux)}
	commit := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "hub", Name: "publish_commit_seconds",
		Help:    "From a publish entering the cluster on this node to its commit and local apply (what the 201 waits for), by kind: single or batch (one observation per batch).",
		Buckets: latencyBuckets,
	}, []string{"kind"})
	m.commitSingle = commit.WithLabelValues("single")
	m.commitBatch = commit.WithLabelValues("batch")
	delivery := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "hub", Name: "delivery_seconds",
		Help:    "From a message's acceptance (the leader's clock) to its transport on this node taking it to write to a device, for messages pushed live (not read back from the store), by transport.",
		Buckets: latencyBuckets,
	}, []string{"transport"})
	sessions := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "hub", Name: "transport_sessions",
		Help: "Device sessions open on this node, by transport.",
	}, []string{"transport"})
	ends := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hub", Name: "session_ends_total",
		Help: "Device sessions ended on this node, by transport and reason (a WebSocket close reason or poll/SSE error code, or disconnected, inactive, terminated, refused).",
	}, []string{"transport", "reason"})
	reasons := []string{endDisconnected, endInactive, endTerminated, endRefused, endOther}
	for _, r := range endReasons {
		reasons = append(reasons, r.code)
	}
	for k := range numKinds {
		name := kindNames[k]
		m.deliveryBy[k] = delivery.WithLabelValues(name)
		m.sessionsBy[k] = sessions.WithLabelValues(name)
		m.endsBy[k] = make(map[string]prometheus.Counter, len(reasons))
		for _, r := range reasons {
			m.endsBy[k][r] = ends.WithLabelValues(name, r)
		}
	}
	m.collectors = append([]prometheus.Collector{commit, delivery, sessions, ends}, m.http.collectors()...)
	return m
}

// sessionOpened counts a session its transport opened.
func (s *Server) sessionOpened(k transportKind, sess *hub.Session) {
	s.m.sessionsBy[k].Inc()
	sess.ObserveLive(s.m.deliveryBy[k])
}

// sessionEnded closes a session sessionOpened counted, and counts why it
// ended: the hub's reason when the hub ended it, else why.
func (s *Server) sessionEnded(k transportKind, sess *hub.Session, why string) {
	if err := sess.Err(); err != nil {
		why = reasonOf(err).code
	}
	sess.Close()
	c := s.m.endsBy[k][why]
	if c == nil {
		c = s.m.endsBy[k][endOther]
	}
	c.Inc()
	s.m.sessionsBy[k].Dec()
}
