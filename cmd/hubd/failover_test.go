package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	testSecret = "failover-test-secret"
	testAdmin  = "failover-test-admin"
)

// node is one hubd of a three-node test cluster, restartable on the same
// data directory and addresses.
type node struct {
	id, data, listen, raft string
	p                      *proc
}

func (n *node) start(t *testing.T, join string) {
	t.Helper()
	args := []string{"--node-id", n.id, "--listen", n.listen, "--raft-addr", n.raft,
		"--cluster-secret", testSecret, "--admin-token", testAdmin}
	if join != "" {
		args = append(args, "--join", join)
	}
	n.p = startHubd(t, n.data, args...)
}

func (n *node) url() string { return "http://" + n.listen }

// startCluster runs three hubd processes: node1 bootstraps, the others join.
func startCluster(t *testing.T) []*node {
	t.Helper()
	var nodes []*node
	for i := 1; i <= 3; i++ {
		n := &node{id: fmt.Sprintf("node%d", i), data: t.TempDir(), listen: freeAddr(t), raft: freeAddr(t)}
		join := ""
		if i > 1 {
			join = nodes[0].raft
		}
		n.start(t, join)
		nodes = append(nodes, n)
	}
	waitMembers(t, nodes[0], 3)
	return nodes
}

// waitMembers waits until the node's status lists want members, each
// answering, and names a leader; it returns the leader's id.
func waitMembers(t *testing.T, n *node, want int) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // failsafe only
	var last string
	for time.Now().Before(deadline) {
		var st struct {
			LeaderID string `json:"leader_id"`
			Members  []struct {
				Status *struct{} `json:"status"`
			} `json:"members"`
		}
		s, err := tryCall("GET", n.url()+"/admin/v1/status", testAdmin, nil, "", &st)
		if err == nil && s == http.StatusOK && len(st.Members) == want && st.LeaderID != "" {
			up := 0
			for _, m := range st.Members {
				if m.Status != nil {
					up++
				}
			}
			if up == want {
				return st.LeaderID
			}
		}
		last = fmt.Sprintf("%d %+v %v", s, st, err)
		time.Sleep(50 * time.Millisecond) // polling another process: nothing to await
	}
	t.Fatalf("cluster never had %d members up: %s", want, last)
	return ""
}

// device is a WebSocket device that follows the protocol as hub.js does:
// it drops what it has seen (by seq), acks what it got, and when its node
// goes away reconnects to another node and resumes from its last seq.
type device struct {
	id     string
	secret string
	urls   func() []string // the nodes to try, in order

	mu     sync.Mutex
	got    []string // payloads, in the order of their seqs, after dedupe
	last   int      // highest seq received
	dups   int      // frames dropped as already seen
	conns  int      // connections made
	errs   []string // why sessions ended
	update chan struct{}

	welcomed chan struct{} // closed at the first welcome: the hub knows the device
	once     sync.Once
}

func (d *device) run(ctx context.Context, t *testing.T) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		urls := d.urls()
		u := urls[attempt%len(urls)]
		if err := d.session(ctx, u); err != nil && ctx.Err() == nil {
			d.mu.Lock()
			d.errs = append(d.errs, u+": "+err.Error())
			d.mu.Unlock()
			select { // the node is down or not ready: try the next one
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func (d *device) session(ctx context.Context, base string) error {
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if s, err := tryCall("POST", base+"/v1/tickets", d.secret, nil, "", &tk); err != nil || s != http.StatusCreated {
		return fmt.Errorf("ticket: %d %v", s, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", nil)
	cancel()
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	d.mu.Lock()
	hello := fmt.Sprintf(`{"type":"hello","ticket":%q,"device":%q,"ack":%d}`, tk.Ticket, d.id, d.last)
	d.conns++
	d.mu.Unlock()
	if err := c.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		return err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var f struct {
			Type string `json:"type"`
			Seq  int    `json:"seq"`
			Data string `json:"data"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return err
		}
		if f.Type == "welcome" {
			d.once.Do(func() { close(d.welcomed) })
		}
		if f.Type != "msg" {
			continue
		}
		d.mu.Lock()
		switch {
		case f.Seq <= d.last:
			d.dups++
		case f.Seq == d.last+1:
			d.got = append(d.got, f.Data)
			d.last = f.Seq
		default:
			d.mu.Unlock()
			return fmt.Errorf("gap: seq %d after %d", f.Seq, d.last)
		}
		last := d.last
		d.mu.Unlock()
		select {
		case d.update <- struct{}{}:
		default:
		}
		if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"ack","seq":%d}`, last)); err != nil {
			return err
		}
	}
}

// TestFailoverLosesNothing runs three hubd processes with concurrent
// publishers and a device on every node, SIGKILLs the leader while
// publishes are in flight, and
// counts: no acknowledged publish is lost, no message reaches a device
// twice after its seq dedupe, and every device's stream has no gap. Then
// it kills a second node: the last one refuses writes with 503 until the
// others are back, and catches up.
func TestFailoverLosesNothing(t *testing.T) {
	const total, killAt = 300, 100
	nodes := startCluster(t)
	u := register(t, nodes[1].p)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", nodes[2].url()+"/v1/mailboxes", u.Secret, nil, `{"label":"failover"}`, &mb); s != http.StatusCreated {
		t.Fatalf("mailbox: %d", s)
	}

	var dead atomic.Value // id of the killed node
	dead.Store("")
	live := func() []string {
		var out []string
		for _, n := range nodes {
			if n.id != dead.Load().(string) {
				out = append(out, n.url())
			}
		}
		return out
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var devs []*device
	var wg sync.WaitGroup
	for _, n := range nodes {
		d := &device{id: "dev-" + n.id, secret: u.Secret, update: make(chan struct{}, 1), welcomed: make(chan struct{})}
		first := n.url()
		d.urls = func() []string {
			l := live()
			if first != "" {
				for _, x := range l {
					if x == first {
						return append([]string{first}, l...)
					}
				}
			}
			return l
		}
		devs = append(devs, d)
		wg.Go(func() { d.run(ctx, t) })
	}
	defer wg.Wait()
	defer cancel()

	// Every device is known before the first publish: a message every known
	// device acked is dropped, and a device that first connects later
	// starts after it.
	for _, d := range devs {
		select {
		case <-d.welcomed:
		case <-time.After(60 * time.Second): // failsafe only
			d.mu.Lock()
			t.Fatalf("%s never connected: %q", d.id, d.errs)
		}
	}

	// The publishers: several at once, each message with its own key,
	// retried on the next node until it gets a 201. The leader is killed
	// while publishes are in flight: some reach it, or a follower that
	// forwarded them to it, and their answer is lost with it; their retry
	// with the same key must neither lose nor repeat them.
	const publishers = 4
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // payload -> message id
		next     atomic.Int64          // the next message to publish
		inflight atomic.Int64          // publishes sent and not yet answered
		killedAt atomic.Int64          // 1 once the leader is dead
		across   atomic.Int64          // publishes sent before the kill and answered after it
		failed   = make(chan string, publishers)
	)
	leaderID := waitMembers(t, nodes[0], 3)
	var pubs sync.WaitGroup
	for range publishers {
		pubs.Go(func() {
			for i := int(next.Add(1) - 1); i < total; i = int(next.Add(1) - 1) {
				payload := fmt.Sprintf("m%04d", i)
				var id string
				for attempt := 0; id == ""; attempt++ {
					if attempt > 400 {
						failed <- payload
						return
					}
					urls := live()
					var r struct {
						ID string `json:"id"`
					}
					before := killedAt.Load()
					inflight.Add(1)
					s, err := tryCall("POST", urls[(i+attempt)%len(urls)]+"/v1/push/"+mb.Token, "", map[string]string{
						"TTL": "3600", "Content-Type": "text/plain", "Idempotency-Key": payload,
					}, payload, &r)
					inflight.Add(-1)
					if before == 0 && killedAt.Load() == 1 {
						across.Add(1)
					}
					if err == nil && s == http.StatusCreated {
						id = r.ID
						break
					}
					time.Sleep(20 * time.Millisecond) // a retry pause, as a publisher's backoff
				}
				mu.Lock()
				acked[payload] = id
				mu.Unlock()
			}
		})
	}
	// Kill the leader once killAt publishes are acknowledged, at a moment
	// when some are in flight.
	for deadline := time.Now().Add(120 * time.Second); ; { // failsafe only
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= killAt && inflight.Load() >= 2 || n >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d publishes acknowledged", n)
		}
		time.Sleep(time.Millisecond) // polling the publishers' counters: they move on their own
	}
	for _, n := range nodes {
		if n.id == leaderID {
			dead.Store(n.id)
			inFlight := inflight.Load()
			killedAt.Store(1) // before the signal: what is in flight now is answered after it
			n.p.kill()
			t.Logf("SIGKILLed the leader %s with %d publishes in flight", n.id, inFlight)
		}
	}
	pubs.Wait()
	close(failed)
	for payload := range failed {
		t.Fatalf("publish %s: no node took it", payload)
	}
	if across.Load() == 0 {
		t.Error("no publish was in flight when the leader was killed")
	}
	t.Logf("%d publishes were sent before the kill and answered after it", across.Load())

	// Every device ends with every acknowledged message, once, in order.
	for _, d := range devs {
		deadline := time.After(60 * time.Second) // failsafe only
		for {
			d.mu.Lock()
			n := len(d.got)
			d.mu.Unlock()
			if n >= total {
				break
			}
			select {
			case <-d.update:
			case <-deadline:
				d.mu.Lock()
				t.Fatalf("%s has %d of %d messages; sessions ended: %q", d.id, n, total, d.errs[max(0, len(d.errs)-5):])
			}
		}
	}
	cancel()
	wg.Wait()
	for _, d := range devs {
		seen := map[string]int{}
		for _, p := range d.got {
			seen[p]++
		}
		lost, twice := 0, 0
		for p := range acked {
			if seen[p] == 0 {
				lost++
			}
		}
		for _, c := range seen {
			if c > 1 {
				twice++
			}
		}
		t.Logf("%s: %d messages, %d dropped as seen, %d connections", d.id, len(d.got), d.dups, d.conns)
		if lost != 0 || twice != 0 || len(d.got) != total {
			t.Errorf("%s: %d acknowledged lost, %d delivered twice after dedupe, %d in stream (want %d)", d.id, lost, twice, len(d.got), total)
		}
	}

	// Two of three down: the last node refuses writes, with Retry-After.
	var alive []*node
	for _, n := range nodes {
		if n.id != dead.Load().(string) {
			alive = append(alive, n)
		}
	}
	alive[0].p.kill()
	last := alive[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("POST", last.url()+"/v1/push/"+mb.Token, strings.NewReader("minority"))
		req.Header.Set("Idempotency-Key", "minority")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			break
		}
		// Until the survivor notices, a write may still be taken (the other
		// node can be its follower for a moment); it must refuse soon.
		if time.Now().After(deadline) {
			t.Fatalf("a minority node still answers %d", resp.StatusCode)
		}
	}
	// The others come back; the minority catches up and takes writes again.
	for _, n := range nodes {
		if n != last {
			n.start(t, "")
		}
	}
	waitMembers(t, last, 3)
	if s, err := tryCall("POST", last.url()+"/v1/push/"+mb.Token, "", map[string]string{"Idempotency-Key": "after"}, "after", nil); err != nil || s != http.StatusCreated {
		t.Fatalf("publish after the quorum returned: %d %v", s, err)
	}
}
