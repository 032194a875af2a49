package hubclient_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/notifyhub/hub/transport/hubclient"
)

// An app publishes, and learns the message's fate from a signed webhook.
// The hub runs in this process (startHub, in hub_test.go); the app's
// receipt endpoint is a local HTTP server that verifies every signature
// with ReadWebhook and keeps receipts by id, since they come at least once.
func Example() {
	hubURL, stop := startHub()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The app's webhook receiver. Mailboxes' receipt secrets by mailbox
	// id; this app has one mailbox, so it trusts one secret.
	var (
		mu     sync.Mutex
		secret string
		seen   = map[string]bool{} // receipt ids already handled
	)
	fates := make(chan hubclient.Receipt, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs, err := hubclient.ReadWebhook(r, func(mailboxID string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			return secret, secret != ""
		})
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		for _, rc := range rs {
			if !seen[rc.ID] {
				seen[rc.ID] = true
				fates <- rc
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent) // anything but 2xx: the hub retries
	}))
	defer app.Close()

	// A user makes a mailbox for the app with the receipt URL, and hands
	// the app its token and receipt secret.
	token, receiptSecret := newMailbox(hubURL, app.URL+"/hub-receipts")
	mu.Lock()
	secret = receiptSecret
	mu.Unlock()

	c := hubclient.New(hubURL)
	p, err := c.Publish(ctx, token, hubclient.Message{Data: "Your order shipped", TTL: 24 * time.Hour, Topic: "order-17"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published")

	// No device acks it here; the app revokes its token, and the pending
	// message ends revoked.
	if err := c.Revoke(ctx, token); err != nil {
		log.Fatal(err)
	}
	select {
	case rc := <-fates:
		fmt.Println(rc.MessageID == p.ID, rc.Status)
	case <-ctx.Done():
		log.Fatal("no receipt")
	}
	st, err := c.Status(ctx, token, p.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State)
	// Output:
	// published
	// true revoked
	// revoked
}

// What a receiver checks, shown by signing as the hub does: HMAC-SHA256
// keyed with the mailbox's receipt_secret over "<t>.<body>", where t is the
// unix time in the header, and t within five minutes of the receiver's clock.
func ExampleVerifySignature() {
	secret := "Zm9vYmFyYmF6"
	body := []byte(`{"receipts":[{"id":"mbx.1","seq":1,"message_id":"m1","mailbox_id":"mbx","status":"expired","at":"2026-05-01T12:00:00.000Z"}]}`)
	sent := time.Unix(1777636800, 0)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.%s", sent.Unix(), body)
	header := fmt.Sprintf("t=%d,v1=%x", sent.Unix(), mac.Sum(nil))

	fmt.Println(hubclient.VerifySignatureAt(secret, header, body, sent.Add(time.Minute), hubclient.DefaultTolerance))
	fmt.Println(hubclient.VerifySignatureAt(secret, header, body, sent.Add(time.Hour), hubclient.DefaultTolerance) != nil)
	fmt.Println(hubclient.VerifySignatureAt("another", header, body, sent, hubclient.DefaultTolerance) != nil)
	// Output:
	// <nil>
	// true
	// true
}

// Long-polling for receipts, for an app that cannot take webhooks. The app
// keeps its cursor (persist it: the next poll starts after it), and backs
// off while the hub cannot answer, rather than asking again at once.
func ExampleClient_Receipts() {
	hubURL, stop := startHub()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, _ := newMailbox(hubURL, "") // no receipt URL: the app polls
	c := hubclient.New(hubURL)
	for _, data := range []string{"one", "two"} {
		if _, err := c.Publish(ctx, token, hubclient.Message{Data: data, TTL: time.Hour}); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Revoke(ctx, token); err != nil {
		log.Fatal(err)
	}

	var cursor uint64
	backoff := time.Second
	for got := 0; got < 2 && ctx.Err() == nil; {
		rs, next, err := c.Receipts(ctx, token, cursor, 30*time.Second)
		if err != nil {
			// The hub is down or restarting: wait, longer each time, up
			// to a minute, and ask again.
			log.Print(err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		for _, rc := range rs {
			fmt.Println(rc.Seq, rc.Status)
			got++
		}
		cursor = next
	}
	// Output:
	// 1 revoked
	// 2 revoked
}
