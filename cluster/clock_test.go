package cluster_test

import (
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// TestLeaderTicksTheClock: on an idle node the leader's expiry loop proposes
// Ticks, so the state machine's clock (which one command moves by at most
// MaxClockStep) keeps within half a step of real time: the next command
// after an idle spell finds its stamp within reach.
func TestLeaderTicksTheClock(t *testing.T) {
	p := mailbox.DefaultPolicy
	p.MaxClockStep = 200 * time.Millisecond
	store, node := clustertest.Start(t, clustertest.WithPolicy(p), clustertest.WithConfig(func(c *cluster.Config) {
		c.ExpireEvery = 20 * time.Millisecond
	}))
	clustertest.NewUser(t, node) // the first command sets the clock
	start, applied := store.Clock(), store.Applied()
	want := start + int64(time.Second) // five steps of the clock
	deadline := time.Now().Add(clustertest.Timeout)
	for store.Clock() < want {
		if time.Now().After(deadline) {
			t.Fatalf("clock moved %v in %v of idling", time.Duration(store.Clock()-start), clustertest.Timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling: a tick has no event to wait on
	}
	if store.Applied() < applied+5 {
		t.Fatalf("clock moved a second by %d entries; a step is 200 ms", store.Applied()-applied)
	}
	if lag := time.Now().UnixNano() - store.Clock(); lag > int64(p.MaxClockStep) {
		t.Fatalf("clock lags real time by %v", time.Duration(lag))
	}
}
