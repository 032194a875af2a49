package hubclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// startHub runs a real hub in this process, wired as hubd wires one (a
// raft node on loopback over badger in a temporary directory, the session
// hub, the receipt dispatcher, the HTTP API), with open registration and
// receipt URLs on plain http and loopback allowed, as
// `hubd --receipt-allow-http --receipt-allow-private`. stop shuts it down
// in layers and removes its data. The examples use it; an app would use
// its hub's URL instead.
func startHub() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "hubclient-example-")
	if err != nil {
		panic(err)
	}
	store, err := mailbox.Open(filepath.Join(dir, "state"), mailbox.Options{})
	if err != nil {
		panic(err)
	}
	sessions := hub.New(hub.Config{}, store)
	policy := receipts.URLPolicy{AllowHTTP: true, AllowPrivate: true}
	dispatcher := receipts.New(receipts.Config{URLs: policy}, store)
	node, err := cluster.Open(cluster.Config{
		RaftAddr: "127.0.0.1:0", Dir: filepath.Join(dir, "raft"), Bootstrap: true,
		HeartbeatTimeout: 200 * time.Millisecond,
	}, store, cluster.Fanout{sessions, dispatcher})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		panic(err)
	}
	sessions.Start(node)
	dispatcher.Start(node, node)
	api := transport.New(transport.Config{OpenRegistration: true, ReceiptURLs: policy, Receipts: dispatcher}, store, node, sessions)
	srv := httptest.NewServer(api.Handler())
	return srv.URL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		api.BeginClose()
		srv.Close()
		sessions.Close(ctx)
		api.Close(ctx)
		dispatcher.Close(ctx)
		node.Close()
		store.Close()
		os.RemoveAll(dir)
	}
}

// newMailbox does what a user does before an app can publish: register
// (POST /v1/users), then make a mailbox for the app (POST /v1/mailboxes),
// with a receipt URL or none. It returns what the user hands to the app.
func newMailbox(hubURL, receiptURL string) (token, receiptSecret string) {
	var user struct {
		Secret string `json:"secret"`
	}
	call(hubURL+"/v1/users", "", map[string]string{}, &user)
	var mb struct {
		Token         string `json:"token"`
		ReceiptSecret string `json:"receipt_secret"`
	}
	req := map[string]string{"label": "shop"}
	if receiptURL != "" {
		req["receipt_url"] = receiptURL
	}
	call(hubURL+"/v1/mailboxes", user.Secret, req, &mb)
	return mb.Token, mb.ReceiptSecret
}

func call(url, bearer string, body, out any) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		panic(fmt.Sprintf("POST %s: %s", url, res.Status))
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		panic(err)
	}
}
