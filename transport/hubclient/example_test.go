package hubclient_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/notifyhub/hub/transport/hubclient"
)

// An app publishes, and learns each message's fate from signed webhooks.
// (Not run: it needs a hub and a public URL for the receipts.)
func Example() {
	ctx := context.Background()
	c := hubclient.New("https://hub.example")
	token := "…the mailbox token the user handed to the app…"
	p, err := c.Publish(ctx, token, hubclient.Message{Data: "Your order shipped", TTL: 24 * time.Hour, Topic: "order-17"})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("message %s published", p.ID)

	// The receipt_url of the mailbox points here.
	secret := "…the mailbox's receipt_secret…"
	http.HandleFunc("POST /hub-receipts", func(w http.ResponseWriter, r *http.Request) {
		rs, err := hubclient.ReadWebhook(r, func(mailboxID string) (string, bool) { return secret, true })
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		for _, rc := range rs {
			// At least once: store by rc.ID and skip ids already stored.
			log.Printf("%s: message %s %s at %s", rc.ID, rc.MessageID, rc.Status, rc.At)
		}
		w.WriteHeader(http.StatusNoContent) // anything but 2xx: the hub retries
	})
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

// Long-polling for receipts, for an app that cannot take webhooks.
func ExampleClient_Receipts() {
	ctx := context.Background()
	c := hubclient.New("https://hub.example")
	token := "…"
	var cursor uint64 // persist it: the next poll starts after it
	for ctx.Err() == nil {
		rs, next, err := c.Receipts(ctx, token, cursor, 30*time.Second)
		if err != nil {
			log.Print(err)
			continue
		}
		for _, rc := range rs {
			log.Printf("%s %s", rc.MessageID, rc.Status)
		}
		cursor = next
	}
}
