package main

import (
	"errors"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/hub/receipts"
)

// receiptFlags are hubd's settings of the receipt webhooks.
type receiptFlags struct {
	allowHTTP    bool
	allowPrivate bool
	retryFor     time.Duration
	timeout      time.Duration
}

func (f *receiptFlags) define(parsed func(v flag.Value, name, usage string)) {
	f.retryFor, f.timeout = receipts.DefaultRetryFor, receipts.DefaultTimeout
	parsed(boolValue{&f.allowHTTP}, "receipt-allow-http", "accept http:// receipt URLs (development only: receipts then travel in clear)")
	parsed(boolValue{&f.allowPrivate}, "receipt-allow-private", "accept receipt URLs that resolve to loopback, private or link-local addresses")
	parsed(durationValue{&f.retryFor}, "receipt-retry-for", "how long a receipt webhook is retried before it is marked failed")
	parsed(durationValue{&f.timeout}, "receipt-timeout", "how long one receipt webhook POST may take")
}

func (f *receiptFlags) check() error {
	switch {
	case f.retryFor < time.Minute:
		return errors.New("--receipt-retry-for must be at least 1m")
	case f.timeout < 100*time.Millisecond:
		return errors.New("--receipt-timeout must be at least 100ms")
	}
	return nil
}

func (f *receiptFlags) policy() receipts.URLPolicy {
	return receipts.URLPolicy{AllowHTTP: f.allowHTTP, AllowPrivate: f.allowPrivate}
}

func (f *receiptFlags) config(log *slog.Logger) receipts.Config {
	return receipts.Config{RetryFor: f.retryFor, Timeout: f.timeout, URLs: f.policy(), Logger: log}
}

// receiptMetrics are the dispatcher's counters on GET /metrics.
func receiptMetrics(d *receipts.Dispatcher) []prometheus.Collector {
	counter := func(name, help string, f func(receipts.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "hub", Name: name, Help: help},
			func() float64 { return float64(f(d.Stats())) })
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hub", Name: "receipts_dispatching",
			Help: "1 while this node is the leader and sends receipt webhooks."},
			func() float64 {
				if d.Stats().Leading {
					return 1
				}
				return 0
			}),
		counter("receipts_sent_total", "Receipts accepted (2xx) by their webhooks, sent by this node.",
			func(s receipts.Stats) uint64 { return s.Sent }),
		counter("receipts_failed_total", "Receipts given up after the retry period (--receipt-retry-for), by this node.",
			func(s receipts.Stats) uint64 { return s.Failed }),
		counter("receipt_posts_total", "Receipt webhook POSTs made by this node.",
			func(s receipts.Stats) uint64 { return s.Attempts }),
		counter("receipt_post_errors_total", "Receipt webhook POSTs that failed (network, timeout, non-2xx, blocked address).",
			func(s receipts.Stats) uint64 { return s.Errors }),
	}
}
