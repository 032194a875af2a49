package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/mailbox"
)

// Cluster is several nodes in this process, each with its own store, raft
// state and HTTP server on loopback, started by StartCluster. Its nodes
// authenticate each other with a random cluster secret (the
// zero-configuration mode), with mutual TLS (WithMutualTLS), or both.
type Cluster struct {
	Secret  string // "" with WithoutSecret
	CA      *CA    // the cluster CA with WithMutualTLS, else nil
	Members []*Member
	opts    options
}

// Member is one node of a Cluster. Its HTTP server (URL) outlives restarts.
type Member struct {
	Index int
	ID    string
	URL   string // base URL of its HTTP server: the node's API address
	Store *mailbox.Store
	Node  *cluster.Node
	// Server is its HTTP server (URL); it answers 503 while the node is
	// stopped.
	Server *httptest.Server

	dir      string
	raftAddr string
	tlsCert  string // with WithMutualTLS: its certificate and key files
	tlsKey   string
	handler  atomic.Pointer[http.Handler]
	running  bool
}

// A Wiring builds what runs around member i over its store: the Applied the
// node reports to (nil for none), and a function that, once the node runs,
// returns the handler its HTTP server serves (nil: 404 to everything; the
// node's internal calls are served on its raft address). Whatever it starts, it stops in t.Cleanup.
type Wiring func(i int, store *mailbox.Store) (cluster.Applied, func(*Member) http.Handler)

// WithWiring wires each member of a cluster with w.
func WithWiring(w Wiring) Option { return func(o *options) { o.wiring = w } }

// StartCluster runs n nodes: node 0 bootstraps, the others join it. It
// returns once every node is ready and knows every member's API address.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{opts: o}
	if !o.noSecret {
		secret := make([]byte, 16)
		rand.Read(secret)
		c.Secret = hex.EncodeToString(secret)
	}
	if o.mtls {
		c.CA = NewCA(t)
	}
	for i := range n {
		c.Add(t)
		if i == 0 {
			WaitReady(t, c.Members[0].Node)
		}
	}
	c.WaitMembers(t)
	return c
}

// Add starts a new member and joins it to the cluster (the first one
// bootstraps it). It returns once the new node is ready.
func (c *Cluster) Add(t testing.TB) *Member {
	t.Helper()
	m := c.newMember(t)
	if m.Index > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		leader := c.Members[0].Node
		if err := leader.Join(ctx, cluster.JoinRequest{ID: m.ID, RaftAddr: m.raftAddr, APIAddr: m.URL}); err != nil {
			t.Fatalf("join %s: %v", m.ID, err)
		}
		c.waitJoined(t, m)
	}
	return m
}

// AddConcurrently starts k new members and has them all ask to join at once,
// each through another running member (as k hubd --join started together
// would, with Node.JoinVia). It returns once every new node is ready, and
// fails t if any join is refused.
func (c *Cluster) AddConcurrently(t testing.TB, k int) []*Member {
	t.Helper()
	via := c.Running()
	var ms []*Member
	for range k {
		ms = append(ms, c.newMember(t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			errs[i] = m.Node.JoinVia(ctx, via[i%len(via)].Node.Addr(), cluster.JoinRequest{ID: m.ID, RaftAddr: m.raftAddr, APIAddr: m.URL})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join %s: %v", ms[i].ID, err)
		}
	}
	for _, m := range ms {
		c.waitJoined(t, m)
	}
	return ms
}

// waitJoined waits until m, just joined, is ready and has caught up with
// what the cluster had when it joined.
func (c *Cluster) waitJoined(t testing.TB, m *Member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	WaitReady(t, m.Node)
	if err := m.Node.WaitApplied(ctx, c.Running()[0].Node.Stats().CommitIndex); err != nil {
		t.Fatal(err)
	}
}

// newMember starts a new member's server and node (bootstrapping it when it
// is the first), without joining it.
func (c *Cluster) newMember(t testing.TB) *Member {
	t.Helper()
	i := len(c.Members)
	m := &Member{Index: i, ID: "n" + string(rune('0'+i)), dir: t.TempDir(), raftAddr: "127.0.0.1:0"}
	if i >= 10 {
		t.Fatal("clustertest: at most 10 members")
	}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := m.handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "node down", http.StatusServiceUnavailable)
	}))
	m.URL = m.Server.URL
	if c.CA != nil {
		m.tlsCert, m.tlsKey = c.CA.Issue(t, m.ID)
	}
	// Registered after t.TempDir, so it runs before the directory goes.
	t.Cleanup(func() {
		c.Stop(t, i)
		m.Server.Close()
	})
	c.Members = append(c.Members, m)
	c.start(t, m, i == 0)
	return m
}

// Config returns the config member m runs with.
func (c *Cluster) Config(m *Member, bootstrap bool) cluster.Config {
	cfg := c.opts.cfg
	cfg.NodeID = m.ID
	cfg.RaftAddr = m.raftAddr
	cfg.Dir = filepath.Join(m.dir, "raft")
	cfg.Bootstrap = bootstrap
	cfg.Secret = c.Secret
	if c.CA != nil {
		cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = c.CA.File, m.tlsCert, m.tlsKey
	}
	if cfg.HeartbeatTimeout == 0 {
		// Long enough that a race-instrumented test on a busy 2-core machine
		// does not see spurious elections (200 ms did, now and then; and 500
		// ms saw a leader lose its lease while a new member's first TLS
		// handshakes, 10 to 90 ms each under -race, were under way), short
		// enough that a killed leader is replaced in a few seconds.
		cfg.HeartbeatTimeout = time.Second
	}
	return cfg
}

func (c *Cluster) start(t testing.TB, m *Member, bootstrap bool) {
	t.Helper()
	store, err := mailbox.Open(filepath.Join(m.dir, "badger"), c.opts.storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	applied := c.opts.applied
	var handler func(*Member) http.Handler
	if c.opts.wiring != nil {
		applied, handler = c.opts.wiring(m.Index, store)
	}
	n, err := cluster.Open(c.Config(m, bootstrap), store, applied)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	m.Store, m.Node, m.raftAddr, m.running = store, n, n.Addr(), true
	var h http.Handler = http.NotFoundHandler()
	if handler != nil {
		if hh := handler(m); hh != nil {
			h = hh
		}
	}
	m.handler.Store(&h)
	n.SetAPIAddr(m.URL)
}

// Stop closes member i's node and store, keeping its directory. Its HTTP
// server answers 503 until Restart.
func (c *Cluster) Stop(t testing.TB, i int) {
	t.Helper()
	m := c.Members[i]
	if !m.running {
		return
	}
	m.running = false
	m.handler.Store(nil)
	if err := m.Node.Close(); err != nil {
		t.Errorf("close %s: %v", m.ID, err)
	}
	if err := m.Store.Close(); err != nil {
		t.Errorf("close store of %s: %v", m.ID, err)
	}
}

// Restart reopens a stopped member on its directory and raft address.
func (c *Cluster) Restart(t testing.TB, i int) *Member {
	t.Helper()
	m := c.Members[i]
	c.start(t, m, false)
	return m
}

// Running returns the members that run.
func (c *Cluster) Running() []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.running {
			out = append(out, m)
		}
	}
	return out
}

// Leader waits until every running member names the same leader, which is
// running, and returns it.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	var last string
	ok := eventually(func() bool {
		last = ""
		var id string
		for _, m := range c.Running() {
			st := m.Node.Stats()
			if st.LeaderID == "" || id != "" && st.LeaderID != id {
				return false
			}
			id = st.LeaderID
		}
		last = id
		for _, m := range c.Running() {
			if m.ID == id && m.Node.Stats().State == "Leader" {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no leader agreed on by %d members", len(c.Running()))
	}
	for _, m := range c.Members {
		if m.ID == last {
			return m
		}
	}
	panic("unreachable")
}

// Followers returns the running members other than the leader.
func (c *Cluster) Followers(t testing.TB) []*Member {
	t.Helper()
	l := c.Leader(t)
	var out []*Member
	for _, m := range c.Running() {
		if m != l {
			out = append(out, m)
		}
	}
	return out
}

// WaitApplied waits until every running member applied index.
func (c *Cluster) WaitApplied(t testing.TB, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for _, m := range c.Running() {
		if err := m.Node.WaitApplied(ctx, index); err != nil {
			t.Fatalf("%s: %v (stats %+v)", m.ID, err, m.Node.Stats())
		}
	}
}

// Sync waits until every running member applied what the leader has
// applied: every write acknowledged before is then in every running
// member's store.
func (c *Cluster) Sync(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	index, err := c.Running()[0].Node.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, index)
}

// WaitMembers waits until every running member knows every running
// member's API address (they announce themselves after they start).
func (c *Cluster) WaitMembers(t testing.TB) {
	t.Helper()
	ok := eventually(func() bool {
		for _, m := range c.Running() {
			ms, err := m.Node.Members()
			if err != nil {
				return false
			}
			api := map[string]string{}
			for _, x := range ms {
				api[x.ID] = x.APIAddr
			}
			for _, o := range c.Running() {
				if api[o.ID] != o.URL {
					return false
				}
			}
		}
		return true
	})
	if !ok {
		t.Fatal("members never learnt each other's API addresses")
	}
}

// eventually polls cond until it holds or Timeout passes. It is for state
// with no event to wait on (raft's view of other nodes); the pause is a
// polling interval, not a synchronisation.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
