package cluster

import (
	"log/slog"
	"net/http"
	"time"
)

// Config configures a Node. The zero value of each field means its default.
type Config struct {
	// NodeID is the raft server id; default "node1".
	NodeID string
	// RaftAddr is the TCP address raft binds and advertises, such as
	// "127.0.0.1:8079". A port of 0 picks a free port, and the bound address
	// is advertised. The host must be an address peers can dial (not 0.0.0.0).
	RaftAddr string
	// Dir holds the raft state: raft.db (raft-boltdb: log and stable store)
	// and snapshots/ (file snapshots, two retained).
	Dir string
	// Bootstrap makes this node the single voter of a new cluster when Dir
	// holds no raft state yet. It is ignored when state exists.
	Bootstrap bool
	// Logger receives raft's warnings and errors; nil discards them.
	Logger *slog.Logger
	// MaxBatch is the most publish items in one raft entry; default 512.
	MaxBatch int
	// ExpireEvery is how often the leader checks for expiry work; default 1s.
	ExpireEvery time.Duration
	// SnapshotThreshold is how many new log entries trigger a snapshot;
	// default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks SnapshotThreshold; default 2m.
	SnapshotInterval time.Duration
	// HeartbeatTimeout is raft's heartbeat and election timeout; default
	// 400ms. A follower that hears nothing for a random time between one and
	// two of it starts an election, so a dead leader is replaced in about
	// 0.4 to 0.9 s; heartbeats go out every tenth of it, so a busy 2-core
	// machine does not miss enough of them to cause spurious elections. The
	// leader lease is half of it.
	HeartbeatTimeout time.Duration
	// TrailingLogs is how many log entries a snapshot leaves behind, so that
	// a follower that lags by less catches up from the log instead of a
	// snapshot; default 10240.
	TrailingLogs uint64

	// Secret authenticates the nodes of a cluster to each other: every
	// node-to-node connection (raft and the internal HTTP, all on RaftAddr)
	// proves it inside its TLS session, and the secret itself never travels
	// (see "Node-to-node traffic" in doc.go). Every node of a cluster has the
	// same one; make it long and random (32 random bytes, hex).
	Secret string
	// TLSCAFile, TLSCertFile and TLSKeyFile (PEM files, all three or none)
	// turn on mutual TLS between nodes: each node presents its certificate
	// and accepts only peers whose certificate the CA signed. With Secret as
	// well, both are required. With neither, the node refuses every
	// node-to-node connection, which is right for a single node only: Open
	// refuses a raft configuration with other servers.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// WrapInternal, if set, wraps the handler of the internal HTTP (the
	// calls between nodes), for tests that watch those calls.
	WrapInternal func(http.Handler) http.Handler
	// ForwardTimeout bounds a write that a follower forwards to the leader,
	// including the wait for a leader to be elected and for the follower to
	// apply the write; past it the write fails with ErrNoQuorum. Default 10s.
	ForwardTimeout time.Duration
	// LeaderWait is how long a write waits for a leader when none is known
	// before it fails with ErrNoQuorum; default 2s (several election
	// timeouts: a failover finishes well within it, a lost quorum does not).
	LeaderWait time.Duration
}

const (
	defaultNodeID            = "node1"
	defaultMaxBatch          = 512
	defaultExpireEvery       = time.Second
	defaultSnapshotThreshold = 8192
	defaultSnapshotInterval  = 2 * time.Minute
	defaultHeartbeatTimeout  = 400 * time.Millisecond
	defaultTrailingLogs      = 10240
	defaultForwardTimeout    = 10 * time.Second
	defaultLeaderWait        = 2 * time.Second

	// maxBatchBytes bounds the payload of one publish entry (about 1 MiB).
	// A single item larger than that still goes alone.
	maxBatchBytes = 1 << 20
	// maxInflight is how many entries may be proposed and not yet applied.
	// Two keep the disk busy (one entry syncing while the next waits) and let
	// the batch after them gather what arrives meanwhile.
	maxInflight = 2
	// queueLen is the capacity of the request queue in front of the committer.
	queueLen = 4096
	// enqueueTimeout bounds how long the committer waits for raft to take an
	// entry; past it the entry fails with ErrNoQuorum.
	enqueueTimeout = 10 * time.Second
	// expireLimit bounds the work of one Expire command.
	expireLimit = 1000
	// transportTimeout is the raft transport's I/O deadline.
	transportTimeout = 10 * time.Second
	// transportPool is how many connections the transport keeps per peer.
	transportPool = 3
	// snapshotsRetained is how many snapshots stay on disk.
	snapshotsRetained = 2
	// membershipTimeout bounds raft's wait to take a membership change.
	membershipTimeout = 10 * time.Second
	// transferTimeout bounds a leadership transfer on Close.
	transferTimeout = 3 * time.Second
	// maxForwardBody bounds a forwarded command: a full batch of large
	// payloads, JSON-escaped, fits.
	maxForwardBody = 64 << 20
)

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = defaultNodeID
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = defaultMaxBatch
	}
	if c.ExpireEvery <= 0 {
		c.ExpireEvery = defaultExpireEvery
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = defaultSnapshotInterval
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = defaultHeartbeatTimeout
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = defaultTrailingLogs
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = defaultForwardTimeout
	}
	if c.LeaderWait <= 0 {
		c.LeaderWait = defaultLeaderWait
	}
}
