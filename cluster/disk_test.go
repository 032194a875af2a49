package cluster_test

import (
	"context"
	"errors"
	"testing"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/diskguard/diskguardtest"
	"github.com/notifyhub/hub/mailbox"
)

// TestFullDiskOnOneNode: a guard watching a small filesystem the test
// fills stands for one node's full disk in a three-node cluster. A
// follower whose disk is full refuses publishes that enter through it
// (507 disk_full upstream), stops applying below the floor while the
// other two go on committing (it neither crashes nor writes into badger),
// and catches up by itself once space is back. A leader whose disk is full
// refuses publishes forwarded to it, with the same error.
func TestFullDiskOnOneNode(t *testing.T) {
	const size, reserve = 64 << 20, 16 << 20
	mnt := diskguardtest.SmallDisk(t, size)
	c := clustertest.StartCluster(t, 3)
	leader := c.Leader(t)
	fs := c.Followers(t)
	full, healthy := fs[0], fs[1]
	userID, _ := clustertest.NewUser(t, leader.Node)
	_, token := clustertest.NewMailbox(t, leader.Node, userID)
	c.Sync(t)

	g, err := diskguard.New(diskguard.Config{Dirs: []string{mnt}, Reserve: reserve})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(g.Close)
	full.Node.SetDiskGuard(g)
	t.Cleanup(func() { full.Node.SetDiskGuard(nil) })

	publish := func(n *cluster.Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		out, err := n.Publish(ctx, []mailbox.PublishItem{clustertest.Item(token, "x")})
		if err == nil && out[0].Err != nil {
			err = out[0].Err
		}
		return err
	}

	// Below the floor: the follower refuses what enters through it and
	// stops applying what the others commit.
	remove := diskguardtest.FillTo(t, mnt, reserve/4)
	g.Refresh()
	if err := publish(full.Node); !errors.Is(err, diskguard.ErrDiskFull) {
		t.Fatalf("publish through the full follower: %v, want ErrDiskFull", err)
	}
	if !full.Node.DiskFull() {
		t.Fatal("the follower does not say its disk is full")
	}
	before := full.Store.Applied()
	var last uint64
	for range 5 {
		if err := publish(healthy.Node); err != nil {
			t.Fatalf("publish through the healthy follower: %v", err)
		}
		last = leader.Node.Stats().AppliedIndex
	}
	if got := full.Store.Applied(); got != before {
		t.Fatalf("the full follower applied to %d (from %d) below the floor", got, before)
	}
	if st := full.Node.Stats(); st.State != "Follower" || st.LastIndex < last {
		t.Fatalf("the full follower: %+v; want a follower whose log has index %d", st, last)
	}

	// Space is back: it applies what it held, and takes writes again.
	remove()
	g.Refresh()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if _, err := full.Node.Sync(ctx); err != nil {
		t.Fatalf("the follower did not catch up: %v", err)
	}
	if got := full.Store.Applied(); got < last {
		t.Fatalf("applied %d after space came back, want %d", got, last)
	}
	if err := publish(full.Node); err != nil {
		t.Fatalf("publish through the follower after space came back: %v", err)
	}

	// The leader's disk full: a write forwarded to it is refused, as
	// disk_full, not as an internal error.
	full.Node.SetDiskGuard(nil)
	remove = diskguardtest.FillTo(t, mnt, reserve-4<<20) // below the reserve, above the floor
	defer remove()
	g.Refresh()
	for try := 0; ; try++ {
		// Under load an election may move the leader between the look and
		// the publish: then look again.
		leader = c.Leader(t)
		healthy = c.Followers(t)[0]
		leader.Node.SetDiskGuard(g)
		err := publish(healthy.Node)
		leader.Node.SetDiskGuard(nil)
		if errors.Is(err, diskguard.ErrDiskFull) {
			break
		}
		if try == 2 || c.Leader(t) == leader {
			t.Fatalf("publish forwarded to a full leader: %v, want ErrDiskFull", err)
		}
	}
	leader.Node.SetDiskGuard(g)
	t.Cleanup(func() { leader.Node.SetDiskGuard(nil) })
	// Bookkeeping still commits on a disk below the reserve.
	ctx2, cancel2 := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel2()
	if _, err := healthy.Node.Propose(ctx2, &mailbox.Command{Kind: mailbox.KindTouchDevice,
		TouchDevice: &mailbox.TouchDevice{UserID: userID, DeviceID: "tv"}}); err != nil {
		t.Fatalf("a device touch on a leader below the reserve: %v", err)
	}
}
