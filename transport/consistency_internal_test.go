package transport

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCatchupsCoalesce: misses that happen while a catch-up runs share one
// next catch-up (which starts after all of them), so a flood of N misses
// costs two syncs, not N; and none of them is answered by the round that
// was already running when it missed.
func TestCatchupsCoalesce(t *testing.T) {
	var c catchups
	var calls atomic.Int64
	entered := make(chan int64, 2)
	release := make(chan struct{})
	sync1 := func(ctx context.Context) error {
		n := calls.Add(1)
		entered <- n
		if n == 1 {
			<-release
		}
		return nil
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- c.do(context.Background(), sync1) }()
	if n := <-entered; n != 1 {
		t.Fatalf("first round is call %d", n)
	}
	const flood = 50
	var wg sync.WaitGroup
	var ended atomic.Int64 // misses answered, and by which round
	var early atomic.Int64 // answered while round 1 still ran: wrong
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.do(context.Background(), sync1)
			if err != nil {
				t.Errorf("do: %v", err)
			}
			if calls.Load() < 2 {
				early.Add(1)
			}
			ended.Add(1)
		}()
	}
	for { // until every miss has joined the pending round
		c.mu.Lock()
		j := c.joined
		c.mu.Unlock()
		if j == flood+1 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := calls.Load(); got != 2 {
		t.Fatalf("%d misses during a catch-up cost %d syncs, want 2", flood, got)
	}
	if early.Load() != 0 {
		t.Fatalf("%d misses were answered by the round that ran before they missed", early.Load())
	}
}
