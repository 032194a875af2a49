package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// TestRestoreWithDevicesConnected: devices connected, a backup, N messages
// published and acked, the backup restored. The restore ends every session
// with 4409 restored, and the M messages published after it take seqs past
// everything the devices saw: each device, reconnecting with the cursor it
// kept, gets all M, and none is delivered before its ack. Before, the
// restore rolled the stream back and the new messages reused acked seqs: a
// device skipped all of them, and they were recorded delivered.
func TestRestoreWithDevicesConnected(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1, TTL 0: gone
	ttl := hdr("TTL", "3600")
	one := 1
	devices := []string{"laptop", "phone"}
	conns := map[string]*websocket.Conn{}
	for _, d := range devices {
		conns[d], _ = h.wsHello(t, a.secret, d, &one)
	}
	h.publish(t, a.token, "in the backup", ttl) // seq 2
	for _, d := range devices {
		recvMsgs(t, conns[d], 1, 1)
		wsSend(t, conns[d], `{"type":"ack","seq":2}`)
		h.waitCursor(t, a.userID, d, 2)
	}
	var backup bytes.Buffer
	if _, err := h.node.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	const n, m = 5, 4
	for i := range n {
		h.publish(t, a.token, fmt.Sprint("before the restore ", i), ttl)
	}
	seen := mailbox.Seq(2 + n)
	for _, d := range devices {
		recvMsgs(t, conns[d], 2, n)
		wsSend(t, conns[d], fmt.Sprintf(`{"type":"ack","seq":%d}`, seen))
		h.waitCursor(t, a.userID, d, seen)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if err := h.node.Restore(ctx, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if code := closeCode(t, conns[d]); code != 4409 {
			t.Fatalf("%s's session after the restore closed with %d, want 4409", d, code)
		}
	}

	var ids []string
	for i := range m {
		ids = append(ids, h.publish(t, a.token, fmt.Sprint("after the restore ", i), ttl).ID)
	}
	for _, id := range ids {
		st, err := h.store.Status(id)
		if err != nil || st.State != mailbox.StatePending || st.Seq <= seen {
			t.Fatalf("message %s after the restore: %+v %v; want pending, past seq %d", id, st, err, seen)
		}
	}
	for i, d := range devices {
		ack := int(seen) // the cursor the device kept
		c, w := h.wsHello(t, a.secret, d, &ack)
		if w.From != seen {
			t.Fatalf("%s resumes from %d, want its cursor %d", d, w.From, seen)
		}
		got := recvMsgs(t, c, seen, m)
		for j, f := range got {
			if f.ID != ids[j] {
				t.Fatalf("%s got %s as message %d, want %s", d, f.ID, j, ids[j])
			}
		}
		if i == 0 { // nothing delivered before the first device's ack
			for _, id := range ids {
				if st, _ := h.store.Status(id); st.State != mailbox.StatePending {
					t.Fatalf("message %s before any ack: %s", id, st.State)
				}
			}
		}
		wsSend(t, c, fmt.Sprintf(`{"type":"ack","seq":%d}`, got[m-1].Seq))
		h.waitCursor(t, a.userID, d, mailbox.Seq(got[m-1].Seq))
	}
	for _, id := range ids {
		if st, _ := h.store.Status(id); st.State != mailbox.StateDelivered || st.DeliveredTo != "laptop" {
			t.Fatalf("message %s after the acks: %+v", id, st)
		}
	}
}
