package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/transport/hubclient"
)

// webhookApp is the app side of receipts in a hubd test: a real HTTP
// server that verifies signatures with hubclient and keeps receipts by id.
type webhookApp struct {
	srv *httptest.Server

	mu      sync.Mutex
	secret  string
	hold    bool // hold every request until the caller hangs up
	posts   int
	held    chan struct{} // closed when the first request is held
	got     map[string]hubclient.Receipt
	badSigs int
}

func newWebhookApp(t *testing.T) *webhookApp {
	a := &webhookApp{got: map[string]hubclient.Receipt{}, held: make(chan struct{})}
	var heldOnce sync.Once
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs, err := hubclient.ReadWebhook(r, func(string) (string, bool) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.secret, true
		})
		a.mu.Lock()
		a.posts++
		hold := a.hold && a.posts > 1
		if err != nil {
			a.badSigs++
		}
		a.mu.Unlock()
		if hold {
			heldOnce.Do(func() { close(a.held) })
			<-r.Context().Done() // until hubd dies
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		for _, rc := range rs {
			a.got[rc.ID] = rc
		}
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// TestReceiptsSurviveKill: hubd is SIGKILLed while a webhook request is in
// flight and most receipts are still in the outbox. After a restart on the
// same data directory every message's receipt arrives, signed, and after
// dropping duplicates by receipt id there is one per message.
func TestReceiptsSurviveKill(t *testing.T) {
	const n = 250 // three batches of up to 100
	app := newWebhookApp(t)
	app.hold = true // the first batch is taken, the second is held
	data := t.TempDir()
	flags := []string{"--receipt-allow-http", "--receipt-allow-private"}
	hub := startHubd(t, data, flags...)
	u := register(t, hub)
	var mb struct {
		MailboxID     string `json:"mailbox_id"`
		Token         string `json:"token"`
		ReceiptSecret string `json:"receipt_secret"`
	}
	body := fmt.Sprintf(`{"label":"receipts","receipt_url":%q}`, app.srv.URL+"/hub-receipts")
	if s := call(t, "POST", hub.url+"/v1/mailboxes", u.Secret, nil, body, &mb); s != http.StatusCreated {
		t.Fatalf("mailbox: %d", s)
	}
	app.mu.Lock()
	app.secret = mb.ReceiptSecret
	app.mu.Unlock()

	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"token":%q,"data":"m%03d","ttl":3600}`, mb.Token, i)
	}
	var batch struct {
		Results []struct {
			Status int    `json:"status"`
			ID     string `json:"id"`
		} `json:"results"`
	}
	if s := call(t, "POST", hub.url+"/v1/push", "", nil, `{"messages":[`+strings.Join(msgs, ",")+`]}`, &batch); s != http.StatusOK || len(batch.Results) != n {
		t.Fatalf("batch: %d, %d results", s, len(batch.Results))
	}
	// The revoke decides every fate at once: n receipts in the outbox.
	if s := call(t, "DELETE", hub.url+"/v1/push/"+mb.Token, "", nil, "", nil); s != http.StatusNoContent {
		t.Fatalf("revoke: %d", s)
	}
	select {
	case <-app.held:
	case <-time.After(60 * time.Second): // failsafe only
		t.Fatal("no webhook request was held")
	}
	hub.kill()

	app.mu.Lock()
	before := len(app.got)
	app.hold = false
	app.mu.Unlock()
	if before >= n {
		t.Fatalf("%d receipts arrived before the kill; the test needs some left", before)
	}

	hub = startHubd(t, data, flags...)
	deadline := time.Now().Add(60 * time.Second) // failsafe only
	for {
		app.mu.Lock()
		got := len(app.got)
		app.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d receipts after the restart", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	app.mu.Lock()
	got, badSigs, posts := app.got, app.badSigs, app.posts
	app.mu.Unlock()
	if badSigs != 0 {
		t.Fatalf("%d webhook requests failed verification", badSigs)
	}
	perMessage := map[string]int{}
	for _, rc := range got {
		perMessage[rc.MessageID]++
		if rc.Status != "revoked" || rc.MailboxID != mb.MailboxID {
			t.Errorf("receipt %+v", rc)
		}
	}
	for _, r := range batch.Results {
		if perMessage[r.ID] != 1 {
			t.Errorf("message %s has %d receipts", r.ID, perMessage[r.ID])
		}
	}
	t.Logf("%d receipts before the kill, %d webhook POSTs in all", before, posts)

	// The status API tells the app its receipt went out.
	var st struct {
		State   string `json:"state"`
		Receipt struct {
			ID      string `json:"id"`
			Webhook string `json:"webhook"`
		} `json:"receipt"`
	}
	for {
		if s := call(t, "GET", hub.url+"/v1/messages/"+batch.Results[n-1].ID, mb.Token, nil, "", &st); s != http.StatusOK {
			t.Fatalf("status: %d", s)
		}
		if st.Receipt.Webhook == "sent" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.State != "revoked" || st.Receipt.Webhook != "sent" || st.Receipt.ID == "" {
		t.Fatalf("status after delivery: %+v", st)
	}
}

func TestReceiptFlags(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.receipts.policy(); p.AllowHTTP || p.AllowPrivate || c.receipts.retryFor != 24*time.Hour {
		t.Fatalf("receipt defaults: %+v", c.receipts)
	}
	t.Setenv("HUB_RECEIPT_ALLOW_HTTP", "true")
	c, err = parseConfig([]string{"--receipt-allow-private", "--receipt-retry-for", "2h"})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.receipts.policy(); !p.AllowHTTP || !p.AllowPrivate || c.receipts.retryFor != 2*time.Hour {
		t.Fatalf("receipt flags: %+v", c.receipts)
	}
	for _, args := range [][]string{
		{"--receipt-retry-for", "1s"},
		{"--receipt-timeout", "0s"},
		{"--receipt-allow-http=maybe"},
	} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}
