package loadtest

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// The test binary doubles as the connections scenario's worker process.
func TestMain(m *testing.M) {
	if os.Getenv("HUBLOAD_TEST_WORKER") == "1" {
		if err := RunWorker(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testNode is one real hub node (badger, raft over loopback TCP, the hub,
// the HTTP API) on a fixed loopback address, which it keeps across
// restarts.
type testNode struct {
	t    *testing.T
	dir  string
	addr string
	drop *dropOne // nil: deliver everything

	mu    sync.Mutex
	store *mailbox.Store
	node  *cluster.Node
	hub   *hub.Hub
	api   *transport.Server
	srv   *http.Server
	done  chan struct{} // closed when srv.Serve returned
}

func startNode(t *testing.T, drop *dropOne) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, dir: t.TempDir(), addr: ln.Addr().String(), drop: drop}
	if err := n.open(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) url() string { return "http://" + n.addr }

// open starts the node over the data in n.dir, serving on ln.
func (n *testNode) open(ln net.Listener) error {
	store, err := mailbox.Open(filepath.Join(n.dir, "state"), mailbox.Options{})
	if err != nil {
		return err
	}
	var st struct{ *mailbox.Store }
	st.Store = store
	h := hub.New(hub.Config{}, st)
	var applied cluster.Applied = h
	if n.drop != nil {
		n.drop.next = h
		applied = n.drop
	}
	node, err := cluster.Open(cluster.Config{
		RaftAddr: "127.0.0.1:0", Dir: filepath.Join(n.dir, "raft"), Bootstrap: true,
		HeartbeatTimeout: 200 * time.Millisecond,
	}, store, applied)
	if err != nil {
		store.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		node.Close()
		store.Close()
		return err
	}
	h.Start(node)
	api := transport.New(transport.Config{OpenRegistration: true}, store, node, h)
	srv := &http.Server{Handler: api.Handler()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	n.mu.Lock()
	n.store, n.node, n.hub, n.api, n.srv, n.done = store, node, h, api, srv, done
	n.mu.Unlock()
	return nil
}

// stop ends the node: connections cut, sessions ended, raft and badger
// closed.
func (n *testNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.srv.Close()
	<-n.done
	n.hub.Close(ctx)
	if err := n.api.Close(ctx); err != nil {
		n.t.Errorf("close api: %v", err)
	}
	if err := n.node.Close(); err != nil {
		n.t.Errorf("close node: %v", err)
	}
	if err := n.store.Close(); err != nil {
		n.t.Errorf("close store: %v", err)
	}
	n.srv = nil
}

// restart stops the node and starts it again on the same address and data.
func (n *testNode) restart() error {
	n.stop()
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		return err
	}
	return n.open(ln)
}

// dropOne is the test hook that makes the hub lose a message on purpose:
// it hides the first applied publish from the hub, so that no device
// connected to it gets that message live (and, caught up, none reads it
// from the store).
type dropOne struct {
	next    cluster.Applied
	dropped atomic.Int64 // the seq dropped, once done
}

func (d *dropOne) Applied(events []mailbox.Event) {
	if d.dropped.Load() == 0 {
		for i, e := range events {
			if e.Kind == mailbox.EventPublished {
				d.dropped.Store(int64(e.Message.Seq))
				events = append(events[:i:i], events[i+1:]...)
				break
			}
		}
	}
	d.next.Applied(events)
}

// small is a run small enough for the test suite.
func small(n *testNode) Options {
	return Options{
		Nodes: []string{n.url()}, Users: 5, Devices: 2, Rate: 200, Duration: time.Second,
		ConnectTimeout: 30 * time.Second, DrainTimeout: 30 * time.Second,
	}
}

// mustPass runs a scenario and fails unless its verdict is a pass with
// every published message delivered to every device.
func mustPass(t *testing.T, name string, o Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), name, o)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	v := res.Verdict
	if v == nil || !v.Pass || v.Lost != 0 || v.Published == 0 || v.Delivered != v.Expected ||
		v.Expected != v.Published*uint64(o.Devices) {
		t.Fatalf("%s: verdict %+v", name, v)
	}
	return res
}

func figure(t *testing.T, res *Result, name string) float64 {
	t.Helper()
	for _, f := range res.Figures {
		if f.Name == name {
			return f.Value
		}
	}
	t.Fatalf("%s: no figure %q in %+v", res.Scenario, name, res.Figures)
	return 0
}

func TestThroughputOverEveryTransport(t *testing.T) {
	n := startNode(t, nil)
	for _, tr := range []string{WebSocket, LongPoll, SSE, "mix"} {
		t.Run(tr, func(t *testing.T) {
			o := small(n)
			o.Transport = tr
			res := mustPass(t, "throughput", o)
			if want := uint64(o.Rate) * uint64(o.Duration/time.Second); res.Verdict.Published != want {
				t.Errorf("published %d, want %d", res.Verdict.Published, want)
			}
			if res.Deliver.Count != res.Verdict.Expected || res.Publish.Count != res.Verdict.Published {
				t.Errorf("latency counts: publish %d, deliver %d; verdict %+v", res.Publish.Count, res.Deliver.Count, res.Verdict)
			}
		})
	}
}

func TestBurst(t *testing.T) {
	n := startNode(t, nil)
	o := small(n)
	o.Messages, o.Rate, o.Publishers = 600, 6000, 32
	res := mustPass(t, "burst", o)
	if res.Verdict.Published != 600 {
		t.Errorf("published %d, want 600", res.Verdict.Published)
	}
	figure(t, res, "backlog drained after the last publish")
}

func TestReconnectStorm(t *testing.T) {
	n := startNode(t, nil)
	o := small(n)
	o.Transport, o.Messages = "mix", 100
	res := mustPass(t, "reconnect-storm", o)
	if res.Verdict.Published != 100 {
		t.Errorf("published %d, want 100", res.Verdict.Published)
	}
	// Every device dropped once, at the storm.
	if got := figure(t, res, "devices reconnected"); got < float64(o.Users*o.Devices) {
		t.Errorf("devices reconnected %v, want at least %d", got, o.Users*o.Devices)
	}
}

func TestOfflineDrain(t *testing.T) {
	n := startNode(t, nil)
	o := small(n)
	o.Messages = 1200 // three batch requests
	res := mustPass(t, "offline-drain", o)
	if res.Verdict.Published != 1200 {
		t.Errorf("published %d, want 1200", res.Verdict.Published)
	}
	// The devices were offline while the messages were stored: each one
	// connected, went away, and came back to drain.
	if got := figure(t, res, "devices reconnected"); got < float64(o.Users*o.Devices) {
		t.Errorf("devices reconnected %v, want at least %d", got, o.Users*o.Devices)
	}
	figure(t, res, "drain rate")
}

// TestFailoverAcrossARestart kills the only node by stopping it and
// starting it again on the same address and data: the publisher's retries
// with Idempotency-Keys and the devices' reconnects must lose nothing and
// duplicate nothing. (TestFailoverOfTheLeader runs the same scenario
// against a three-node cluster.)
func TestFailoverAcrossARestart(t *testing.T) {
	n := startNode(t, nil)
	o := small(n)
	o.Duration = 3 * time.Second
	o.Kill = n.restart
	res := mustPass(t, "failover", o)
	// Every publish was answered 201 in the end: those refused while the
	// node was down were retried, with their keys, until it was back.
	if want := uint64(o.Rate) * uint64(o.Duration/time.Second); res.Verdict.Published != want {
		t.Errorf("published %d, want %d", res.Verdict.Published, want)
	}
	// The restart cut every device's connection, and they came back.
	if got := figure(t, res, "devices reconnected"); got < float64(o.Users*o.Devices) {
		t.Errorf("devices reconnected %v, want at least %d", got, o.Users*o.Devices)
	}
	figure(t, res, "time without accepted writes around the kill")
}

// TestCheckerCatchesADroppedMessage makes the hub drop one message on its
// way to the devices: the verdict must fail and count exactly that message,
// once per device of its user.
func TestCheckerCatchesADroppedMessage(t *testing.T) {
	drop := &dropOne{}
	n := startNode(t, drop)
	o := small(n)
	o.Users, o.DrainTimeout = 3, 5*time.Second
	res, err := Run(context.Background(), "throughput", o)
	if err != nil {
		t.Fatal(err)
	}
	v := res.Verdict
	if drop.dropped.Load() == 0 {
		t.Fatal("the hook dropped nothing")
	}
	if v.Pass || v.Lost != uint64(o.Devices) || v.Duplicated != 0 || v.OutOfOrder != 0 {
		t.Fatalf("verdict %+v, want a fail with exactly %d lost", v, o.Devices)
	}
	if len(res.Notes) == 0 {
		t.Errorf("no note on the drain that did not finish")
	}
}

func TestConnectionsOverWorkerProcesses(t *testing.T) {
	n := startNode(t, nil)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Nodes: []string{n.url()}, Conns: 40, Devices: 2, Workers: 2, ConnectTimeout: 30 * time.Second,
		Spawn: func() *exec.Cmd {
			c := exec.Command(self)
			c.Env = append(os.Environ(), "HUBLOAD_TEST_WORKER=1")
			return c
		},
	}
	res, err := Run(context.Background(), "connections", o)
	if err != nil {
		t.Fatal(err)
	}
	if got := figure(t, res, "connected"); got != 40 {
		t.Errorf("connected %v, want 40", got)
	}
	// The node's own count, from its /metrics, while the workers held on.
	if got := figure(t, res, "server sessions"); got != 40 {
		t.Errorf("server sessions %v, want 40", got)
	}
	if figure(t, res, "server RSS after") <= 0 {
		t.Errorf("no RSS read: %+v", res.Figures)
	}
	// The workers hung up when the scenario ended.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitFor(ctx, "sessions to end", func() bool { return n.hub.Stats().Sessions == 0 }); err != nil {
		t.Fatal(err)
	}
}

// TestFailoverOfTheLeader runs the failover scenario against a three-node
// in-process cluster (real raft over loopback, a badger and a hub per node)
// and kills the leader a third into the run: its sessions end, its HTTP
// server answers nothing but 503, its raft stops. Publishes retried with
// their keys on the other nodes and devices reconnecting elsewhere must
// lose nothing and duplicate nothing.
func TestFailoverOfTheLeader(t *testing.T) {
	type parts struct {
		hub *hub.Hub
		api *transport.Server
	}
	var mu sync.Mutex
	nodes := map[int]parts{}
	c := clustertest.StartCluster(t, 3, clustertest.WithWiring(func(i int, store *mailbox.Store) (cluster.Applied, func(*clustertest.Member) http.Handler) {
		h := hub.New(hub.Config{}, store)
		return h, func(m *clustertest.Member) http.Handler {
			h.Start(m.Node)
			api := transport.New(transport.Config{OpenRegistration: true}, m.Store, m.Node, h)
			mu.Lock()
			nodes[i] = parts{h, api}
			mu.Unlock()
			t.Cleanup(func() { stopParts(t, h, api) })
			return api.Handler()
		}
	}))
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, m.URL)
	}
	leader := c.Leader(t)
	o := Options{
		Nodes: urls, Users: 6, Devices: 2, Rate: 200, Duration: 3 * time.Second,
		ConnectTimeout: 30 * time.Second, DrainTimeout: 30 * time.Second,
		Kill: func() error {
			mu.Lock()
			p := nodes[leader.Index]
			mu.Unlock()
			stopParts(t, p.hub, p.api) // its devices hear going_away
			leader.Server.CloseClientConnections()
			c.Stop(t, leader.Index)
			return nil
		},
	}
	res := mustPass(t, "failover", o)
	if want := uint64(o.Rate) * uint64(o.Duration/time.Second); res.Verdict.Published != want {
		t.Errorf("published %d, want %d", res.Verdict.Published, want)
	}
	// The devices of the dead node (a third of them) found another.
	if got := figure(t, res, "devices reconnected"); got < float64(o.Users*o.Devices/3) {
		t.Errorf("devices reconnected %v, want at least %d", got, o.Users*o.Devices/3)
	}
	if next := c.Leader(t); next.Index == leader.Index {
		t.Errorf("leadership did not move")
	}
}

// stopParts closes a node's hub and API once, within the package's bound.
func stopParts(t *testing.T, h *hub.Hub, api *transport.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.Close(ctx)
	if err := api.Close(ctx); err != nil {
		t.Errorf("close api: %v", err)
	}
}
