package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/internal/version"
)

// buildInfoMetric is hub_build_info on GET /metrics: always 1, its labels
// say which build runs, so a dashboard can show versions across the cluster
// and an alert can see a mixed-version cluster during a rolling upgrade.
func buildInfoMetric(v version.Info) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hub",
		Name:      "build_info",
		Help:      "A metric with a constant 1 value labelled by the version, commit and Go version hubd was built from.",
		ConstLabels: prometheus.Labels{
			"version":   v.Version,
			"commit":    v.Commit,
			"goversion": v.GoVersion,
		},
	}, func() float64 { return 1 })
}
