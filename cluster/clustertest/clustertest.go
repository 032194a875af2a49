// Package clustertest runs cluster nodes inside tests, as net/http/httptest
// runs servers: real raft over loopback TCP, real raft-boltdb and badger in
// t.TempDir(), everything stopped in t.Cleanup. It is for tests only.
package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/mailbox"
)

// Timeout bounds every wait of this package; it is a failsafe against a hung
// test, never a timing assertion.
const Timeout = 30 * time.Second

// An Option changes how Start opens a node.
type Option func(*options)

type options struct {
	cfg      cluster.Config
	applied  cluster.Applied
	policy   mailbox.Policy
	memTable int64
	wiring   Wiring
	noSecret bool // StartCluster: no cluster secret
	mtls     bool // StartCluster: mutual TLS from a test CA
}

// WithoutSecret starts a cluster without a cluster secret (with
// WithMutualTLS: certificates alone), or a single node without credentials.
func WithoutSecret() Option { return func(o *options) { o.noSecret = true } }

// WithMutualTLS has StartCluster make a CA and give each member a
// certificate from it (Cluster.CA): the nodes authenticate each other with
// mutual TLS, and with the secret too unless WithoutSecret.
func WithMutualTLS() Option { return func(o *options) { o.mtls = true } }

// WithApplied makes the node report applied entries to a.
func WithApplied(a cluster.Applied) Option { return func(o *options) { o.applied = a } }

// WithConfig lets f change the node's config after the defaults of Start
// (fresh Dir, "127.0.0.1:0", Bootstrap) are set.
func WithConfig(f func(*cluster.Config)) Option { return func(o *options) { f(&o.cfg) } }

// WithPolicy opens the store with policy p.
func WithPolicy(p mailbox.Policy) Option { return func(o *options) { o.policy = p } }

// WithMemTableSize opens the store with a badger memtable of n bytes, which
// bounds what one command may write (mailbox.ErrChangeTooLarge); 8 MiB is
// the smallest badger opens with its defaults.
func WithMemTableSize(n int64) Option { return func(o *options) { o.memTable = n } }

// storeOptions are the mailbox options o asks for.
func (o *options) storeOptions() mailbox.Options {
	return mailbox.Options{Policy: o.policy, MemTableSize: o.memTable}
}

// Start runs a single bootstrapped node over a fresh store and returns once it
// is ready (leader elected, log applied). It has a random cluster secret,
// unless WithoutSecret. The node and then the store close in t.Cleanup.
func Start(t testing.TB, opts ...Option) (*mailbox.Store, *cluster.Node) {
	t.Helper()
	dir := t.TempDir()
	o := options{cfg: cluster.Config{
		RaftAddr:         "127.0.0.1:0",
		Dir:              filepath.Join(dir, "raft"),
		Bootstrap:        true,
		HeartbeatTimeout: 200 * time.Millisecond,
	}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.cfg.Secret == "" && !o.noSecret {
		o.cfg.Secret = mailbox.NewToken()
	}
	store, err := mailbox.Open(filepath.Join(dir, "badger"), o.storeOptions())
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Open(o.cfg, store, o.applied)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	WaitReady(t, n)
	return store, n
}

// WaitReady waits until n is ready, failing t after Timeout.
func WaitReady(t testing.TB, n *cluster.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("node %s not ready: %v (stats %+v)", n.ID(), err, n.Stats())
	}
}

// NewUser creates a user through n and returns its id and secret.
func NewUser(t testing.TB, n *cluster.Node) (userID, secret string) {
	t.Helper()
	userID = mailbox.NewID()
	secret = mailbox.NewSecret(userID)
	propose(t, n, &mailbox.Command{Kind: mailbox.KindCreateUser, CreateUser: &mailbox.CreateUser{
		UserID: userID, SecretHash: mailbox.Hash(secret),
	}})
	return userID, secret
}

// NewMailbox creates a mailbox for userID through n and returns its id and token.
func NewMailbox(t testing.TB, n *cluster.Node, userID string) (mailboxID, token string) {
	t.Helper()
	mailboxID, token = mailbox.NewID(), mailbox.NewToken()
	propose(t, n, &mailbox.Command{Kind: mailbox.KindCreateMailbox, CreateMailbox: &mailbox.CreateMailbox{
		MailboxID: mailboxID, UserID: userID, Label: "test", TokenHash: mailbox.Hash(token),
		ReceiptSecret: mailbox.NewToken(),
	}})
	return mailboxID, token
}

// Item returns a publish item for token with a new id, the data and a TTL of an hour.
func Item(token, data string) mailbox.PublishItem {
	return mailbox.PublishItem{ID: mailbox.NewID(), TokenHash: mailbox.Hash(token), Data: data, TTL: 3600, Urgency: mailbox.UrgencyNormal}
}

// Publish publishes data to token through n, one message each, in one call,
// and fails t unless every item was accepted.
func Publish(t testing.TB, n *cluster.Node, token string, data ...string) []mailbox.PublishedItem {
	t.Helper()
	items := make([]mailbox.PublishItem, len(data))
	for i, d := range data {
		items[i] = Item(token, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	res, err := n.Publish(ctx, items)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, r := range res {
		if r.Err != nil || r.Status == nil {
			t.Fatalf("publish item %d: %v", i, r.Err)
		}
	}
	return res
}

func propose(t testing.TB, n *cluster.Node, cmd *mailbox.Command) mailbox.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	res, err := n.Propose(ctx, cmd)
	if err != nil {
		t.Fatal(fmt.Errorf("propose %v: %w", cmd.Kind, err))
	}
	return res
}
