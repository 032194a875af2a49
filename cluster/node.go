package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/notifyhub/hub/mailbox"
)

// Node is one member of the raft cluster, applying the log into a
// mailbox.Store. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	store *mailbox.Store
	fsm   *fsm

	raft  *raft.Raft
	trans *raft.NetworkTransport
	net   *nodeNet     // the authenticated listener and dialer under trans and client
	creds *credentials // what nodeNet authenticates with
	mux   *http.ServeMux
	inner *http.Server // the internal HTTP, served on nodeNet's HTTP streams
	bolt  *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore // read by the metrics (metrics.go)
	obs   *raft.Observer

	// replayTo is the index of the last command in the local log at Open:
	// the node is not ready before its FSM reached it.
	replayTo uint64
	changed  broadcast // leader, raft state or applied index changed
	fresh    bool      // Dir held no raft state at Open

	// membership serialises the leader's membership changes (members.go),
	// so that each checks the configuration and changes it alone.
	membership sync.Mutex

	client  *http.Client           // calls to other nodes over nodeNet (forward.go)
	apiAddr atomic.Pointer[string] // this node's API base URL, once set
	apiSet  chan struct{}          // cap 1: SetAPIAddr was called

	reqs      chan *request // to the committer
	toWaiter  chan *entry   // committer to waiter, in log order
	slots     chan struct{} // in-flight entry window
	pipeDone  chan struct{} // closed when the waiter, the pipeline's last stage, returns
	closing   chan struct{} // closed when Close begins
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex // guards closed and wg.Add against Close
	closed    bool
	closeOnce sync.Once
	closeErr  error
	replayed  atomic.Bool
}

// Stats is a point-in-time view of a node's raft state.
type Stats struct {
	ID           string `json:"id"`
	State        string `json:"state"`      // Follower, Candidate, Leader, Shutdown
	Leader       string `json:"leader"`     // the leader's raft address, "" if none is known
	LeaderID     string `json:"leader_id"`  // the leader's server id, "" if none is known
	LeaderAPI    string `json:"leader_api"` // the leader's API base URL, "" if not known
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"` // last entry in the local log (or snapshot)
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"` // last entry the store reflects
	Ready        bool   `json:"ready"`
	// RefusedConns counts node-to-node connections refused since the node
	// started: they did not authenticate (see Node-to-node traffic in doc.go).
	RefusedConns uint64 `json:"refused_conns"`
}

// Open starts a raft node that applies the log into store. applied may be
// nil. The caller keeps ownership of store and closes it after Node.Close.
func Open(cfg Config, store *mailbox.Store, applied Applied) (n *Node, err error) {
	if store == nil {
		return nil, errors.New("cluster: open: nil store")
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster: open: no Dir")
	}
	if cfg.RaftAddr == "" {
		return nil, errors.New("cluster: open: no RaftAddr")
	}
	cfg.setDefaults()
	hl := newHCLog(cfg.Logger)

	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: open: %w", err)
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft log: %w", err)
	}
	closers = append(closers, bolt.Close)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, snapshotsRetained, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("cluster: open snapshot store: %w", err)
	}
	creds, err := newCredentials(cfg)
	if err != nil {
		return nil, err
	}
	nn, err := listenNodeNet(cfg.RaftAddr, creds, cfg.logger())
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %s: %w", cfg.RaftAddr, err)
	}
	closers = append(closers, nn.Close)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  nn,
		MaxPool: transportPool,
		Timeout: transportTimeout,
		Logger:  hl.Named("transport"),
	})
	closers = append(closers, trans.Close)

	replayTo, raftLast, err := lastCommand(bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: open: %w", err)
	}
	if a := store.Applied(); a > raftLast {
		// The store would skip every entry up to a: a new log would be lost.
		return nil, fmt.Errorf("cluster: open: the store has applied raft index %d but the raft state in %s ends at %d: "+
			"raft state was lost or belongs to another store (remove the store's directory to rebuild it from the cluster)",
			a, cfg.Dir, raftLast)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 1024
	// An unbuffered apply channel: raft.Apply blocks while the leader loop
	// writes the previous entries, which is what lets batches grow with load.
	rc.BatchApplyCh = false
	rc.NoSnapshotRestoreOnStart = false

	has, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: open: %w", err)
	}
	if cfg.Bootstrap {
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter,
				ID:       rc.LocalID,
				Address:  trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, bolt, bolt, snaps, trans, conf); err != nil {
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
		}
	}

	n = &Node{
		cfg:      cfg,
		store:    store,
		fsm:      newFSM(store, applied),
		trans:    trans,
		net:      nn,
		creds:    creds,
		mux:      http.NewServeMux(),
		bolt:     bolt,
		snaps:    snaps,
		replayTo: replayTo,
		fresh:    !has,
		client:   newClient(nn),
		apiSet:   make(chan struct{}, 1),
		reqs:     make(chan *request, queueLen),
		toWaiter: make(chan *entry, maxInflight),
		slots:    make(chan struct{}, maxInflight),
		pipeDone: make(chan struct{}),
		closing:  make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.fsm.onApply = n.onApply
	n.fsm.fatal = func(err error) {
		cfg.logger().Error(err.Error())
		stopProcess(err)
	}

	// NewRaft restores the newest snapshot before it returns, then replays
	// the log after it on the FSM goroutine.
	r, err := raft.NewRaft(rc, n.fsm, bolt, bolt, snaps, trans)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	if err := n.checkCredentials(); err != nil {
		r.Shutdown()
		n.cancel()
		return nil, err
	}
	n.checkReplayed(n.fsm.index.Load())
	n.routes()
	var h http.Handler = n.mux
	if cfg.WrapInternal != nil {
		h = cfg.WrapInternal(h)
	}
	n.inner = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.logger().Handler(), slog.LevelWarn),
	}
	n.goFunc(func(context.Context) { n.inner.Serve(nn.httpLn) })

	obsCh := make(chan raft.Observation, 16)
	n.obs = raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.obs)

	n.goFunc(func(ctx context.Context) { n.observe(ctx, obsCh) })
	n.goFunc(func(ctx context.Context) { n.expireLoop(ctx) })
	n.goFunc(func(context.Context) { n.commitLoop() })
	n.goFunc(func(context.Context) { n.waitLoop() })
	n.goFunc(func(ctx context.Context) { n.announceLoop(ctx) })
	return n, nil
}

// lastCommand returns the index of the last command entry in the log after
// the newest snapshot (the snapshot itself is restored inside raft.NewRaft),
// or 0 if there is none; and the last index of the raft state, log or
// snapshot.
func lastCommand(logs raft.LogStore, snaps raft.SnapshotStore) (cmd, last uint64, err error) {
	var snapIndex uint64
	metas, err := snaps.List()
	if err != nil {
		return 0, 0, fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, 0, fmt.Errorf("read raft log: %w", err)
	}
	last, err = logs.LastIndex()
	if err != nil {
		return 0, 0, fmt.Errorf("read raft log: %w", err)
	}
	lo := max(first, snapIndex+1, 1)
	var l raft.Log
	for i := last; i >= lo && i > 0; i-- {
		if err := logs.GetLog(i, &l); err != nil {
			return 0, 0, fmt.Errorf("read raft entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, max(last, snapIndex), nil
		}
	}
	return 0, max(last, snapIndex), nil
}

// goFunc runs f on a goroutine owned by the node: Close cancels its context
// and waits for it. It does nothing once Close has begun.
func (n *Node) goFunc(f func(ctx context.Context)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// observe turns raft's leader and state observations into ready changes.
func (n *Node) observe(ctx context.Context, ch <-chan raft.Observation) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			n.changed.notify()
		}
	}
}

// onApply runs on the FSM goroutine after each applied entry or restore.
func (n *Node) onApply(index uint64) {
	if !n.replayed.Load() {
		n.checkReplayed(index)
	}
	n.changed.notify() // forwarded writes wait for their index (waitApplied)
}

func (n *Node) checkReplayed(index uint64) {
	if index >= n.replayTo && !n.replayed.Swap(true) {
		n.changed.notify()
	}
}

// Ready reports whether a leader is known and this node has applied every
// command that was in its log when it opened. A node that is not ready
// serves stale reads.
//
// On a follower whose log ended with entries the new leader never
// committed, Ready waits for the next command to be applied.
func (n *Node) Ready() bool {
	if !n.replayed.Load() {
		return false
	}
	addr, _ := n.raft.LeaderWithID()
	return addr != ""
}

// WaitReady blocks until the node is Ready, ctx ends, or the node closes.
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		ch := n.changed.wait()
		if n.Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cluster: wait ready: %w", ctx.Err())
		case <-n.closing:
			return fmt.Errorf("cluster: wait ready: %w", ErrClosed)
		}
	}
}

// Snapshot takes a raft snapshot now and compacts the log. It returns nil
// when nothing was applied since the last snapshot.
func (n *Node) Snapshot() error {
	if n.isClosed() {
		return fmt.Errorf("cluster: snapshot: %w", ErrClosed)
	}
	err := n.raft.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: snapshot: %w", raftErr(err))
	}
	return nil
}

// Stats returns the node's raft state.
func (n *Node) Stats() Stats {
	addr, id := n.raft.LeaderWithID()
	return Stats{
		ID:           n.cfg.NodeID,
		State:        n.raft.State().String(),
		Leader:       string(addr),
		LeaderID:     string(id),
		LeaderAPI:    n.fsm.meta.get(string(id)),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.index.Load(),
		Ready:        n.Ready(),
		RefusedConns: n.net.refused.total.Load(),
	}
}

// Fresh reports whether the node started without raft state: a new node,
// which joins a cluster (or bootstraps one).
func (n *Node) Fresh() bool { return n.fresh }

// SetAPIAddr tells the node the base URL of its own HTTP API (such as
// "http://10.0.0.5:8080"), where the other nodes reach it. The node records
// it in the replicated metadata as soon as it can (see meta.go), and again
// whenever the recorded one differs.
func (n *Node) SetAPIAddr(url string) {
	n.apiAddr.Store(&url)
	select {
	case n.apiSet <- struct{}{}:
	default:
	}
}

// APIAddr returns the base URL set by SetAPIAddr, or "".
func (n *Node) APIAddr() string {
	if p := n.apiAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// announceLoop keeps this node's API address in the replicated metadata:
// whenever the node is ready and the recorded address differs from its own,
// it announces it (through the leader), at most once a second while that
// fails.
func (n *Node) announceLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var next time.Time
	for {
		ch := n.changed.wait()
		api := n.APIAddr()
		if api != "" && n.Ready() && n.fsm.meta.get(n.cfg.NodeID) != api && !time.Now().Before(next) {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.announce(actx, api)
			cancel()
			if err != nil {
				n.cfg.logger().Debug("cluster: announce the API address", "api", api, "err", err)
				next = time.Now().Add(time.Second)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.closing:
			return
		case <-ch:
		case <-n.apiSet:
		case <-t.C:
		}
	}
}

// handOver transfers leadership to another voter before this node stops,
// so that the cluster does not wait an election timeout to notice. It is
// best effort: a failure only means the others elect a leader as after a
// crash.
func (n *Node) handOver() {
	if n.raft.State() != raft.Leader {
		return
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	others := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			others++
		}
	}
	if others == 0 {
		return
	}
	f := n.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			n.cfg.logger().Warn("cluster: leadership transfer on close", "err", err)
		}
	case <-time.After(transferTimeout):
		n.cfg.logger().Warn("cluster: leadership transfer on close timed out")
	}
}

// checkCredentials refuses a node without credentials whose raft
// configuration has other servers: it could reach none of them.
func (n *Node) checkCredentials() error {
	if !n.creds.none() {
		return nil
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("cluster: open: %w", err)
	}
	if k := len(cf.Configuration().Servers); k > 1 {
		return fmt.Errorf("cluster: open: the raft configuration has %d servers but %v", k, errNoCredentials)
	}
	return nil
}

// Addr returns the raft address the node advertises.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// ID returns the node's raft server id.
func (n *Node) ID() string { return n.cfg.NodeID }

func (n *Node) isClosed() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// Close stops the node: it stops taking requests, waits for the entries in
// flight, shuts raft down, waits for its goroutines and closes the transport
// and the raft log. It does not close the mailbox.Store. Close is idempotent;
// later calls return the first call's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		close(n.closing)
		n.mu.Unlock()

		<-n.pipeDone // entries in flight end while raft still runs: see the package doc
		n.handOver()
		n.raft.DeregisterObserver(n.obs)
		errs := []error{}
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: shut down raft: %w", err))
		}
		n.cancel()
		n.inner.Close() // its Serve, one of the node's goroutines, returns
		n.wg.Wait()
		// Close drops the listener only: the pooled connections to the
		// other nodes go too, so their handlers of them end.
		n.trans.CloseStreams()
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close transport: %w", err))
		}
		n.client.CloseIdleConnections()
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close raft log: %w", err))
		}
		n.changed.notify()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// broadcast wakes every goroutine waiting on it, each time notify is called.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
