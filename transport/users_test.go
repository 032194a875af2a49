package transport_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// TestDeleteUserWithManyMailboxes: DELETE /v1/users/me of a user holding
// far more mailboxes (with long receipt URLs) than one command of this
// node's store may change is answered 204 at once; the secret and every
// token are dead from then on, and the expiry loop's bounded steps end
// every pending message revoked, each with its receipt, and remove every
// mailbox. The deletion used to answer 413 change_too_large every time.
func TestDeleteUserWithManyMailboxes(t *testing.T) {
	// An 8 MiB memtable: one command holds about 1.2 MiB.
	h := startHubWith(t, openConfig(), hub.Config{}, clustertest.WithMemTableSize(8<<20))
	userID, secret := h.register(t)
	url := "https://receipts.example.com/" + strings.Repeat("r", 2000)
	const n = 1500 // 3 MB of mailboxes
	toks := make([]string, n)
	mbs := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 32 { // concurrent proposals share raft entries
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				mbs[i], toks[i] = mailbox.NewID(), mailbox.NewToken()
				ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
				_, err := h.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindCreateMailbox, CreateMailbox: &mailbox.CreateMailbox{
					MailboxID: mbs[i], UserID: userID, Label: "app", TokenHash: mailbox.Hash(toks[i]),
					ReceiptURL: url, ReceiptSecret: mailbox.NewToken(),
				}})
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create mailbox: %v", err)
	}
	var ids []string
	for i := 0; i < n; i += n / 10 {
		for range 3 {
			ids = append(ids, h.publish(t, toks[i], "pending", nil).ID)
		}
	}

	h.expect(t, http.StatusNoContent, "DELETE", "/v1/users/me", bearer(secret), "")
	// Gone at once.
	h.expect(t, http.StatusUnauthorized, "GET", "/v1/mailboxes", bearer(secret), "")
	h.expect(t, http.StatusUnauthorized, "DELETE", "/v1/users/me", bearer(secret), "")
	for _, i := range []int{0, n / 2, n - 1} {
		r := h.expect(t, http.StatusNotFound, "POST", "/v1/push/"+toks[i], nil, "late")
		if !strings.Contains(string(r.body), "token_unknown") {
			t.Fatalf("publish to a deleted user's token: %s", r)
		}
	}
	if mbsLeft, _ := h.store.Mailboxes(userID); len(mbsLeft) == 0 {
		t.Fatal("every mailbox went in the deletion's own step: the test proves nothing")
	}

	// The expiry loop's steps (proposed here, as the loop would).
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	for step := 0; ; step++ {
		if step == 1000 {
			t.Fatal("still draining after 1000 steps")
		}
		res, err := h.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindExpire, Expire: &mailbox.Expire{Limit: 1000}})
		if err != nil {
			t.Fatalf("expire step %d: %v", step, err)
		}
		if !res.More {
			break
		}
	}
	for _, id := range ids {
		st, err := h.store.Status(id)
		if err != nil || st.State != mailbox.StateRevoked || st.Receipt == 0 {
			t.Fatalf("message %s after the drain: %+v %v", id, st, err)
		}
	}
	if mbsLeft, _ := h.store.Mailboxes(userID); len(mbsLeft) != 0 {
		t.Fatalf("%d mailboxes left after the drain", len(mbsLeft))
	}
}
