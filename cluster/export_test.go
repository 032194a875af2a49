package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// PostInternal posts body to path of the internal HTTP of the node at
// raftAddr, over n's authenticated transport, and returns the status.
func (n *Node) PostInternal(ctx context.Context, raftAddr, path, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, internalURL(raftAddr)+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// DialRaft opens an authenticated raft stream from n to the node at addr,
// as n's raft would.
func (n *Node) DialRaft(addr string) (net.Conn, error) {
	return n.net.Dial(raft.ServerAddress(addr), 5*time.Second)
}

// RaftClient is a raft transport with cfg's credentials (Secret and the TLS
// files) on a fresh loopback port, as a node of another cluster (or an
// attacker with some of the credentials) would have. It closes in
// t.Cleanup.
func RaftClient(t testing.TB, cfg Config) *raft.NetworkTransport {
	t.Helper()
	creds, err := newCredentials(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn, err := listenNodeNet("127.0.0.1:0", creds, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: nn, MaxPool: 1, Timeout: 5 * time.Second})
	t.Cleanup(func() { trans.Close() })
	return trans
}

// SecretOf is n's cluster secret.
func SecretOf(n *Node) string { return n.cfg.Secret }
