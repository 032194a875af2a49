package main

import (
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/mailbox"
)

// storageCollector is the data directory in /metrics, read at each scrape:
// badger's files by kind, and the free space of the filesystems under
// state/ and raft/ next to the reserve under which writes are refused.
type storageCollector struct {
	store        *mailbox.Store
	dataDir      string
	reserve      uint64
	badger, free *prometheus.Desc
	reserveDesc  *prometheus.Desc
}

func storageMetrics(store *mailbox.Store, dataDir string, reserve uint64) prometheus.Collector {
	return &storageCollector{
		store: store, dataDir: dataDir, reserve: reserve,
		badger: prometheus.NewDesc("hub_badger_bytes",
			"Size of the state store (badger) on disk, by part: lsm (tables, manifest, memtable logs) or vlog (the value log).",
			[]string{"part"}, nil),
		free: prometheus.NewDesc("hub_disk_free_bytes",
			"Bytes free to hubd on the filesystem that holds each data directory (state: badger; raft: the log and snapshots).",
			[]string{"dir"}, nil),
		reserveDesc: prometheus.NewDesc("hub_disk_reserve_bytes",
			"Free space under which this node refuses new data (507 disk_full, --disk-reserve); under half of it the store stops applying.",
			nil, nil),
	}
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.badger
	ch <- c.free
	ch <- c.reserveDesc
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	if lsm, vlog, err := c.store.DiskSize(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.badger, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.badger, prometheus.GaugeValue, float64(lsm), "lsm")
		ch <- prometheus.MustNewConstMetric(c.badger, prometheus.GaugeValue, float64(vlog), "vlog")
	}
	for _, dir := range []string{"state", "raft"} {
		if free, err := diskguard.Free(filepath.Join(c.dataDir, dir)); err == nil {
			ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(free), dir)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.reserveDesc, prometheus.GaugeValue, float64(c.reserve))
}
