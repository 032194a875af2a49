package transport

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newMetrics returns the registry behind GET /metrics: the process (RSS,
// open files, CPU), the Go runtime, and this node's hub. A registry per
// Server, not the global one, so that tests may run many servers in one
// process.
func (s *Server) newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	hubStat := func(name, help string, counter bool, f func() float64) prometheus.Collector {
		opts := prometheus.GaugeOpts{Namespace: "hub", Name: name, Help: help}
		if counter {
			return prometheus.NewCounterFunc(prometheus.CounterOpts(opts), f)
		}
		return prometheus.NewGaugeFunc(opts, f)
	}
	reg.MustRegister(
		hubStat("sessions", "Device sessions open on this node (WebSocket, long-poll, SSE).", false,
			func() float64 { return float64(s.hub.Stats().Sessions) }),
		hubStat("session_users", "Users with at least one device session on this node.", false,
			func() float64 { return float64(s.hub.Stats().Users) }),
		hubStat("published_messages_total", "Messages applied to this node's store (every node counts every publish).", true,
			func() float64 { return float64(s.hub.Stats().Published) }),
		hubStat("delivered_messages_total", "Messages pushed live to this node's device sessions.", true,
			func() float64 { return float64(s.hub.Stats().Delivered) }),
		hubStat("sessions_too_slow_total", "Device sessions ended because their send queue overflowed.", true,
			func() float64 { return float64(s.hub.Stats().TooSlow) }),
		hubStat("acks_total", "Device acks committed through this node.", true,
			func() float64 { return float64(s.hub.Stats().Acks) }),
		hubStat("ack_batches_total", "Raft commands that carried this node's device acks.", true,
			func() float64 { return float64(s.hub.Stats().AckBatches) }),
	)
	return reg
}

// Register adds a collector to GET /metrics, for parts of the node the
// transport does not own (the raft node, the receipt dispatcher).
func (s *Server) Register(c prometheus.Collector) error { return s.metrics.Register(c) }

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{})
}
