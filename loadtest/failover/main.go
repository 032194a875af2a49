// Command failover measures how long a three-node hub cluster takes to take
// writes again after its leader is SIGKILLed: from the kill to the first
// publish that was sent after the kill and answered 201. It starts three
// hubd processes itself (node1 bootstraps, the others join), keeps a steady
// publish load on every node, kills the leader, measures, restarts the dead
// node on its data, waits for it to rejoin, and repeats. It also counts
// leader changes that happened without a kill (spurious elections) under the
// load. It speaks HTTP only: no package of the hub is imported.
//
//	go build -o /tmp/hub/ ./cmd/hubd ./loadtest/failover
//	/tmp/hub/failover --hubd /tmp/hub/hubd --rounds 5
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	secret = "failover-bench-secret"
	admin  = "failover-bench-admin"
)

type node struct {
	id, dir, listen, raft string
	cmd                   *exec.Cmd
}

func (n *node) url() string { return "http://" + n.listen }

func main() {
	hubd := flag.String("hubd", "hubd", "the hubd binary")
	rounds := flag.Int("rounds", 5, "leader kills")
	workers := flag.Int("workers", 16, "concurrent publishers (spread over the nodes)")
	settle := flag.Duration("settle", 3*time.Second, "load before each kill (spurious elections are counted here)")
	flag.Parse()

	dir, err := os.MkdirTemp("", "hub-failover")
	check(err)
	defer os.RemoveAll(dir)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, &node{id: fmt.Sprintf("node%d", i), dir: filepath.Join(dir, fmt.Sprint(i)), listen: freeAddr(), raft: freeAddr()})
	}
	defer func() {
		for _, n := range nodes {
			if n.cmd != nil {
				n.cmd.Process.Kill()
				n.cmd.Wait()
			}
		}
	}()
	for i, n := range nodes {
		join := ""
		if i > 0 {
			join = nodes[0].raft
		}
		start(*hubd, n, join)
	}
	waitUp(nodes, 3)
	token := setup(nodes[0].url())

	var stop atomic.Bool
	var okAfter atomic.Int64 // unix ns of the first 201 for a request sent after killAt
	var killAt atomic.Int64
	var sent, acked atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for w := range *workers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				n := nodes[(w+i)%len(nodes)]
				start := time.Now().UnixNano()
				req, _ := http.NewRequest("POST", n.url()+"/v1/push/"+token, strings.NewReader("x"))
				req.Header.Set("Idempotency-Key", fmt.Sprintf("w%d-%d", w, i))
				sent.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					acked.Add(1)
					if k := killAt.Load(); k != 0 && start > k {
						okAfter.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}
		})
	}

	var times []time.Duration
	spurious := 0
	for r := range *rounds {
		term0, leader0 := leaderOf(nodes)
		time.Sleep(*settle)
		term1, leader1 := leaderOf(nodes)
		if term1 != term0 || leader1 != leader0 {
			spurious++
			fmt.Printf("round %d: the leader changed without a kill (%s term %d -> %s term %d)\n", r, leader0, term0, leader1, term1)
		}
		var victim *node
		for _, n := range nodes {
			if n.id == leader1 {
				victim = n
			}
		}
		if victim == nil {
			fmt.Println("no leader found; stopping")
			break
		}
		okAfter.Store(0)
		killAt.Store(time.Now().UnixNano())
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.cmd.Wait()
		victim.cmd = nil
		for okAfter.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		d := time.Duration(okAfter.Load() - killAt.Load())
		times = append(times, d)
		killAt.Store(0)
		fmt.Printf("round %d: killed leader %s; first accepted write after %v\n", r, victim.id, d.Round(time.Millisecond))
		start(*hubd, victim, "")
		waitUp(nodes, 3)
	}
	stop.Store(true)
	wg.Wait()
	slices.Sort(times)
	if len(times) > 0 {
		fmt.Printf("\nfailover (leader SIGKILL to first accepted write), %d rounds: min %v, median %v, max %v\n",
			len(times), times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	}
	fmt.Printf("leader changes without a kill under load: %d; publishes sent %d, accepted %d\n", spurious, sent.Load(), acked.Load())
}

func start(hubd string, n *node, join string) {
	args := []string{"--node-id", n.id, "--data", n.dir, "--listen", n.listen, "--raft-addr", n.raft,
		"--cluster-secret", secret, "--admin-token", admin, "--log-level", "error"}
	if join != "" {
		args = append(args, "--join", join)
	}
	n.cmd = exec.Command(hubd, args...)
	// Their logs stay out of the figures: raft logs every failed dial to a dead peer.
	check(n.cmd.Start())
}

// waitUp waits until some node lists want members, every one answering.
func waitUp(nodes []*node, want int) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			var st status
			if getJSON(n.url()+"/admin/v1/status", &st) == nil && st.LeaderID != "" && len(st.Members) == want {
				up := 0
				for _, m := range st.Members {
					if m.Status != nil && m.Status.Ready {
						up++
					}
				}
				if up == want {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "failover: the cluster did not come up")
	os.Exit(1)
}

type status struct {
	LeaderID string `json:"leader_id"`
	Term     uint64 `json:"term"`
	Members  []struct {
		Status *struct {
			Ready bool `json:"ready"`
		} `json:"status"`
	} `json:"members"`
}

func leaderOf(nodes []*node) (uint64, string) {
	for _, n := range nodes {
		var st status
		if n.cmd != nil && getJSON(n.url()+"/admin/v1/status", &st) == nil && st.LeaderID != "" {
			return st.Term, st.LeaderID
		}
	}
	return 0, ""
}

func getJSON(url string, out any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// setup makes a user and a mailbox and returns the mailbox token.
func setup(base string) string {
	var u struct{ Secret string }
	post(base+"/v1/users", "", nil, &u)
	var mb struct{ Token string }
	post(base+"/v1/mailboxes", u.Secret, []byte(`{"label":"failover"}`), &mb)
	return mb.Token
}

func post(url, bearer string, body []byte, out any) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	check(json.NewDecoder(resp.Body).Decode(out))
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return ln.Addr().String()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}
