package transport_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// heldApplies holds a node's applies (its FSM waits before telling the
// hub, so its store trails the log) while it is shut.
type heldApplies struct {
	next cluster.Applied
	gate atomic.Pointer[chan struct{}] // nil or closed: go on
}

func (h *heldApplies) Applied(events []mailbox.Event) {
	if g := h.gate.Load(); g != nil {
		<-*g
	}
	h.next.Applied(events)
}

// shut makes the node's store trail from the next entry on; the returned
// function lets it catch up (it may be called more than once).
func (h *heldApplies) shut() (open func()) {
	ch := make(chan struct{})
	h.gate.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// TestFollowerCatchesUpBeforeA404: something made through the leader and
// used at once through a follower whose store has not applied it yet is
// found: the follower's lookup misses, it catches up with the leader (a
// sync call, which the test sees arrive at the leader and only then lets
// the follower apply), and looks again. Without the catch-up these answer
// 404.
func TestFollowerCatchesUpBeforeA404(t *testing.T) {
	held := make([]*heldApplies, 3)
	var onSync atomic.Pointer[func()] // called when a sync call reaches a node
	c, hubs := startClusterHubsWith(t, 3, openConfig(), clusterHooks{
		applied: func(i int, h *hub.Hub) cluster.Applied {
			held[i] = &heldApplies{next: h}
			return held[i]
		},
		internal: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/internal/v1/sync" {
					if f := onSync.Load(); f != nil {
						(*f)()
					}
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	leader := hubs[c.Leader(t).Index]
	follower := hubs[c.Followers(t)[0].Index]
	fheld := held[c.Followers(t)[0].Index]
	_, secret := leader.register(t)
	c.Sync(t)

	// behind runs make through the leader while the follower's store
	// trails, then use through the follower, letting the follower apply
	// only once its sync call reached the leader.
	behind := func(make func(), use func() response) response {
		t.Helper()
		open := fheld.shut()
		defer open()
		onSync.Store(&open)
		defer onSync.Store(nil)
		make()
		return use()
	}

	t.Run("mailbox by id", func(t *testing.T) {
		var mb newMailboxJSON
		r := behind(func() { mb = leader.newMailbox(t, secret, "app") }, func() response {
			return follower.do(t, "GET", "/v1/mailboxes/"+mb.MailboxID, bearer(secret), "")
		})
		if r.status != http.StatusOK {
			t.Fatalf("GET the new mailbox through the follower: %s", r)
		}
	})
	t.Run("token revoke", func(t *testing.T) {
		var mb newMailboxJSON
		r := behind(func() { mb = leader.newMailbox(t, secret, "app") }, func() response {
			return follower.do(t, "DELETE", "/v1/push/"+mb.Token, nil, "")
		})
		if r.status != http.StatusNoContent {
			t.Fatalf("revoke the new token through the follower: %s", r)
		}
	})
	t.Run("device delete", func(t *testing.T) {
		r := behind(func() {
			c, _ := leader.wsHello(t, secret, "fresh", nil)
			c.CloseNow()
		}, func() response {
			return follower.do(t, "DELETE", "/v1/devices/fresh", bearer(secret), "")
		})
		if r.status != http.StatusNoContent {
			t.Fatalf("delete the new device through the follower: %s", r)
		}
	})
}
