package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// The raft series in /metrics are read from the Raft API at each scrape
// (State, CurrentTerm, LastContact, CommitIndex, AppliedIndex,
// LastIndex), from the snapshot store's list and from the files' sizes.
// Not hashicorp/raft's go-metrics through its Prometheus sink: that sink
// is process-global (metrics.NewGlobal), so the nodes of one test process,
// which each have their own registry, would share and clobber one set of
// series; and go-metrics emits on raft's hot paths (every append, commit and
// apply takes a timer and a map lookup under a lock in the sink), which the
// publish path would pay for, where a scrape-time read costs nothing
// between scrapes.

// raftStates are the values of hub_raft_state's state label.
var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

type nodeCollector struct {
	n                                          *Node
	state, term, leader, lastContact           *prometheus.Desc
	commit, applied, last, snapIndex, snapTime *prometheus.Desc
	logBytes, snapBytes                        *prometheus.Desc
}

// Collector returns the node's raft series for /metrics.
func (n *Node) Collector() prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hub_raft_"+name, help, labels, nil)
	}
	return &nodeCollector{
		n:           n,
		state:       d("state", "1 for this node's raft state (follower, candidate, leader, shutdown), 0 for the others.", "state"),
		term:        d("term", "This node's current raft term."),
		leader:      d("leader_known", "1 while this node knows a leader (it may be this node), else 0."),
		lastContact: d("last_contact_seconds", "Seconds since this follower last heard from its leader; 0 on the leader; absent before any contact."),
		commit:      d("commit_index", "The highest log index this node knows to be committed."),
		applied:     d("applied_index", "The last log index this node's store reflects."),
		last:        d("last_index", "The last index in this node's raft log or snapshot."),
		snapIndex:   d("last_snapshot_index", "The log index of this node's newest snapshot; absent before the first."),
		snapTime:    d("last_snapshot_timestamp_seconds", "When this node's newest snapshot was taken or received (unix seconds); absent before the first."),
		logBytes:    d("log_bytes", "Size of the raft log (raft.db) on disk."),
		snapBytes:   d("snapshot_bytes", "Size of the retained snapshots on disk."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.term, c.leader, c.lastContact, c.commit,
		c.applied, c.last, c.snapIndex, c.snapTime, c.logBytes, c.snapBytes} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.n.raft
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := r.State()
	for _, s := range raftStates {
		v := 0.0
		if s == st {
			v = 1
		}
		gauge(c.state, v, strings.ToLower(s.String()))
	}
	gauge(c.term, float64(r.CurrentTerm()))
	if addr, _ := r.LeaderWithID(); addr != "" {
		gauge(c.leader, 1)
	} else {
		gauge(c.leader, 0)
	}
	if st == raft.Leader {
		gauge(c.lastContact, 0)
	} else if t := r.LastContact(); !t.IsZero() {
		gauge(c.lastContact, max(time.Since(t).Seconds(), 0))
	}
	gauge(c.commit, float64(r.CommitIndex()))
	gauge(c.applied, float64(c.n.fsm.index.Load()))
	gauge(c.last, float64(r.LastIndex()))
	if metas, err := c.n.snaps.List(); err == nil && len(metas) > 0 {
		gauge(c.snapIndex, float64(metas[0].Index))
		if ms, ok := snapshotMillis(metas[0].ID); ok {
			gauge(c.snapTime, float64(ms)/1e3)
		}
	}
	if fi, err := os.Stat(filepath.Join(c.n.cfg.Dir, "raft.db")); err == nil {
		gauge(c.logBytes, float64(fi.Size()))
	}
	gauge(c.snapBytes, float64(dirBytes(filepath.Join(c.n.cfg.Dir, "snapshots"))))
}

// snapshotMillis reads the time out of a file snapshot's id, which raft
// names term-index-unixmillis.
func snapshotMillis(id string) (int64, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, false
	}
	ms, err := strconv.ParseInt(id[i+1:], 10, 64)
	return ms, err == nil
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // gone since the listing: a retained snapshot was reaped
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
