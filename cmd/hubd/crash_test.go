package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// TestCrashKeepsEveryAcknowledgedPublish publishes from many goroutines to a
// real hubd, SIGKILLs it mid-stream and restarts it on the same data dir.
// Every message that got a 201 must be there exactly once; a message whose
// publish failed may be there or not, but never twice, also after the
// publisher retries it with the same Idempotency-Key.
func TestCrashKeepsEveryAcknowledgedPublish(t *testing.T) {
	const (
		workers   = 16
		perWorker = 200 // bound: the kill comes well before this
		killAfter = 300 // acknowledged publishes before SIGKILL
	)
	data := t.TempDir()
	hub := startHubd(t, data)
	u := register(t, hub)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", hub.url+"/v1/mailboxes", u.Secret, nil, `{"label":"crash"}`, &mb); s != http.StatusCreated {
		t.Fatalf("mailbox: %d", s)
	}

	type outcome struct {
		payload string
		id      string // set when the publish got a 201
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		acked    int
		killNow  = make(chan struct{})
		killOnce sync.Once
	)
	publish := func(url, payload string) (string, error) {
		var r struct {
			ID string `json:"id"`
		}
		s, err := tryCall("POST", url+"/v1/push/"+mb.Token, "", map[string]string{
			"TTL": "3600", "Content-Type": "text/plain", "Idempotency-Key": payload,
		}, payload, &r)
		if err != nil {
			return "", err
		}
		if s != http.StatusCreated {
			return "", fmt.Errorf("status %d", s)
		}
		return r.ID, nil
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				payload := fmt.Sprintf("w%02d-%03d", w, i)
				id, err := publish(hub.url, payload)
				mu.Lock()
				outcomes = append(outcomes, outcome{payload, id})
				if err == nil {
					acked++
					if acked == killAfter {
						killOnce.Do(func() { close(killNow) })
					}
				}
				mu.Unlock()
				if err != nil {
					return // the hub is gone
				}
			}
		}()
	}
	select {
	case <-killNow:
	case <-time.After(2 * time.Minute): // failsafe only
		t.Fatal("publishers never reached the kill point")
	}
	hub.kill()
	wg.Wait()

	hub = startHubd(t, data)
	// The publisher retries what failed, with the same key: each lands once.
	var failed []string
	want := map[string]string{} // payload -> id, for every 201
	for _, o := range outcomes {
		if o.id == "" {
			failed = append(failed, o.payload)
		} else {
			want[o.payload] = o.id
		}
	}
	if len(failed) == 0 {
		t.Fatal("the kill interrupted no publish: the test proves nothing")
	}
	retried := failed[:(len(failed)+1)/2]
	for _, p := range retried {
		id, err := publish(hub.url, p)
		if err != nil {
			t.Fatalf("retry of %s after restart: %v", p, err)
		}
		want[p] = id
	}
	hub.stop()

	// Read the stream straight from the store hubd left behind.
	store, err := mailbox.Open(filepath.Join(data, "state"), mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	msgs, err := store.Messages(u.ID, 0, 0, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var last mailbox.Seq
	for _, m := range msgs {
		seen[m.Data]++
		if m.Seq <= last {
			t.Fatalf("stream out of order at seq %d", m.Seq)
		}
		last = m.Seq
		if id, ok := want[m.Data]; ok && id != m.ID {
			t.Errorf("%s: stored as %s, acknowledged as %s", m.Data, m.ID, id)
		}
	}
	for p := range want {
		if seen[p] != 1 {
			t.Errorf("acknowledged %s is in the stream %d times", p, seen[p])
		}
	}
	for p, n := range seen {
		if n > 1 {
			t.Errorf("%s is in the stream %d times", p, n)
		}
	}
	t.Logf("%d acknowledged before the kill, %d failed, %d retried; stream holds %d", acked, len(failed), len(retried), len(msgs))
}
