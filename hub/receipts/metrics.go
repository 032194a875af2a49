package receipts

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/mailbox"
)

// dispatchMetrics are the dispatcher's histograms, curried when it is
// made: a POST and a settled batch only observe.
type dispatchMetrics struct {
	postOK, postFailed prometheus.Observer
	post               *prometheus.HistogramVec
	delay              *prometheus.HistogramVec
	delayBy            map[mailbox.State]prometheus.Observer
	delayOther         prometheus.Observer
}

func newDispatchMetrics() *dispatchMetrics {
	m := &dispatchMetrics{
		post: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hub", Name: "receipt_post_seconds",
			Help:    "Receipt webhook POSTs made by this node, from the request to the end of the answer's body, by result: ok (2xx) or error.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hub", Name: "receipt_delay_seconds",
			Help: "From a message's fate being decided (for delivered: the device's ack) to its receipt's webhook answering 2xx, by state; the leader's clock on both ends.",
			// Seconds when endpoints answer; hours while one is down.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400},
		}, []string{"state"}),
	}
	m.postOK = m.post.WithLabelValues("ok")
	m.postFailed = m.post.WithLabelValues("error")
	m.delayBy = make(map[mailbox.State]prometheus.Observer)
	for _, st := range []mailbox.State{mailbox.StateDelivered, mailbox.StateExpired, mailbox.StateReplaced, mailbox.StateRevoked} {
		m.delayBy[st] = m.delay.WithLabelValues(string(st))
	}
	m.delayOther = m.delay.WithLabelValues("other")
	return m
}

// sent observes the delays of a batch its endpoint took.
func (m *dispatchMetrics) sent(entries []mailbox.OutboxEntry, now time.Time) {
	ns := now.UnixNano()
	for i := range entries {
		o := m.delayBy[entries[i].State]
		if o == nil {
			o = m.delayOther
		}
		o.Observe(float64(max(ns-entries[i].At, 0)) / 1e9)
	}
}

// outboxStats is what a store may also answer, for the outbox gauges;
// *mailbox.Store does.
type outboxStats interface {
	OutboxStats() (depth int, oldest int64, err error)
}

// Collectors returns the dispatcher's series for /metrics: the POST and
// delay histograms, and the outbox's depth and the age of its oldest
// receipt (read from the store at each scrape; the outbox is replicated,
// so every node reports the cluster's).
func (d *Dispatcher) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{d.m.post, d.m.delay}
	st, ok := d.store.(outboxStats)
	if !ok {
		return cs
	}
	return append(cs, &outboxCollector{
		st: st,
		depth: prometheus.NewDesc("hub_receipt_outbox_depth",
			"Receipts waiting in the outbox for their webhook (sent or given up ones have left it).", nil, nil),
		age: prometheus.NewDesc("hub_receipt_outbox_oldest_age_seconds",
			"Age of the oldest receipt in the outbox (from its fate's decision, the leader's clock), 0 when it is empty.", nil, nil),
	})
}

type outboxCollector struct {
	st         outboxStats
	depth, age *prometheus.Desc
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.age }

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	depth, oldest, err := c.st.OutboxStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	var age float64
	if oldest > 0 {
		age = max(time.Since(time.Unix(0, oldest)).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(depth))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}
