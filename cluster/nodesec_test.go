package cluster_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// forge sends node n, from trans, one AppendEntries as a leader of a later
// term would: a CreateUser entry right after n's log, committed at once. It
// returns the forged user's id and the transport's error.
func forge(t *testing.T, trans raft.Transport, n *cluster.Node) (string, error) {
	t.Helper()
	user := mailbox.NewID()
	data, err := (&mailbox.Command{Kind: mailbox.KindCreateUser, At: time.Now().UnixNano(), CreateUser: &mailbox.CreateUser{
		UserID: user, SecretHash: mailbox.Hash(mailbox.NewSecret(user)),
	}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	st := n.Stats()
	req := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte(trans.LocalAddr())},
		Term:              st.Term + 100,
		PrevLogEntry:      st.LastIndex,
		PrevLogTerm:       st.Term,
		Entries:           []*raft.Log{{Index: st.LastIndex + 1, Term: st.Term + 100, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: st.LastIndex + 1,
	}
	var resp raft.AppendEntriesResponse
	err = trans.AppendEntries(raft.ServerID(n.ID()), raft.ServerAddress(n.Addr()), req, &resp)
	return user, err
}

// untouched checks that a forged entry changed nothing on n: no user, the
// same log, the same term, still the leader, and it still takes publishes.
func untouched(t *testing.T, n *cluster.Node, store *mailbox.Store, before cluster.Stats, user string) {
	t.Helper()
	if _, err := store.User(user); !errors.Is(err, mailbox.ErrUserUnknown) {
		t.Errorf("the forged user exists: %v", err)
	}
	st := n.Stats()
	if st.LastIndex != before.LastIndex || st.Term != before.Term || st.State != "Leader" {
		t.Errorf("raft moved: before %+v, after %+v", before, st)
	}
	u, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, u)
	clustertest.Publish(t, n, token, "still serving")
	// The refusal was counted (the node notes it after the attacker's
	// side already failed, hence the wait).
	waitFor(t, "the refusal counted", func() bool { return n.Stats().RefusedConns > before.RefusedConns })
}

// quiet keeps a test node from proposing on its own (the expiry loop's
// Ticks), so that its raft index moves only by what the test does.
var quiet = clustertest.WithConfig(func(cfg *cluster.Config) { cfg.ExpireEvery = time.Hour })

// settled commits one entry through n (after the new leader's own entry)
// and returns its stats: the index moves from here on only by what the
// test does.
func settled(t *testing.T, n *cluster.Node) cluster.Stats {
	t.Helper()
	clustertest.NewUser(t, n)
	return n.Stats()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clustertest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, no event to wait on
	}
}

// TestForgedRaftWithoutCredentials: a plain raft client (raft's own TCP
// transport, as the attack in issue 10 used) gets nowhere.
func TestForgedRaftWithoutCredentials(t *testing.T) {
	store, n := clustertest.Start(t, quiet)
	before := settled(t, n)
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	user, err := forge(t, trans, n)
	if err == nil {
		t.Fatal("a forged AppendEntries over plain TCP was answered")
	}
	untouched(t, n, store, before, user)
}

// TestForgedRaftWrongSecret: a client that completes TLS (any certificate
// will do in the zero-configuration mode) but proves another secret.
func TestForgedRaftWrongSecret(t *testing.T) {
	store, n := clustertest.Start(t, quiet)
	before := settled(t, n)
	user, err := forge(t, cluster.RaftClient(t, cluster.Config{Secret: "not the cluster's"}), n)
	if !errors.Is(err, cluster.ErrBadSecret) {
		t.Fatalf("forged AppendEntries with a wrong secret: %v, want ErrBadSecret", err)
	}
	untouched(t, n, store, before, user)
}

// TestForgedRaftOtherCA: in mutual-TLS mode, a certificate from another CA
// is refused, with or without the right secret.
func TestForgedRaftOtherCA(t *testing.T) {
	ca := clustertest.NewCA(t)
	cert, key := ca.Issue(t, "n0")
	const secret = "the cluster secret"
	store, n := clustertest.Start(t, clustertest.WithConfig(func(cfg *cluster.Config) {
		cfg.Secret, cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = secret, ca.File, cert, key
	}), quiet)
	other := clustertest.NewCA(t)
	ocert, okey := other.Issue(t, "intruder")
	before := settled(t, n)
	// The intruder trusts its own CA: it refuses the node's certificate.
	user, err := forge(t, cluster.RaftClient(t, cluster.Config{Secret: secret, TLSCAFile: other.File, TLSCertFile: ocert, TLSKeyFile: okey}), n)
	if !errors.Is(err, cluster.ErrBadSecret) {
		t.Fatalf("forged AppendEntries with another CA's certificate: %v, want ErrBadSecret", err)
	}
	untouched(t, n, store, before, user)
	// It trusts the cluster CA too: now the node refuses its certificate.
	before = settled(t, n)
	user, err = forge(t, cluster.RaftClient(t, cluster.Config{Secret: secret, TLSCAFile: ca.File, TLSCertFile: ocert, TLSKeyFile: okey}), n)
	if !errors.Is(err, cluster.ErrBadSecret) {
		t.Fatalf("forged AppendEntries with another CA's certificate, trusting the cluster CA: %v, want ErrBadSecret", err)
	}
	untouched(t, n, store, before, user)
	// A certificate of the cluster CA and the secret: a member, answered
	// (a heartbeat of a stale term, which changes nothing).
	member := cluster.RaftClient(t, cluster.Config{Secret: secret, TLSCAFile: ca.File, TLSCertFile: cert, TLSKeyFile: key})
	var resp raft.AppendEntriesResponse
	err = member.AppendEntries(raft.ServerID(n.ID()), raft.ServerAddress(n.Addr()), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("member"), Addr: []byte(member.LocalAddr())},
	}, &resp)
	if err != nil || resp.Success || resp.Term != n.Stats().Term {
		t.Errorf("AppendEntries with the cluster's credentials: %v, %+v; want an answer refusing the stale term", err, resp)
	}
}

// TestRelayFails: a man in the middle that terminates TLS to each side with
// its own certificate and relays the hello and the answer byte for byte
// learns nothing: the proofs are bound to the TLS session, so the node
// refuses the relayed proof, and the dialer gets ErrBadSecret.
func TestRelayFails(t *testing.T) {
	store, n := clustertest.Start(t)
	_, dialer := clustertest.Start(t, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.Secret = secretOf(t, n) }))
	before := settled(t, n)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	relayed := make(chan []byte, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		front := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{selfCert(t)}, MinVersion: tls.VersionTLS13})
		back, err := tls.Dial("tcp", n.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			return
		}
		defer back.Close()
		hello := make([]byte, 34)
		if _, err := io.ReadFull(front, hello); err != nil {
			return
		}
		back.Write(hello)
		answer := make([]byte, 33)
		if _, err := io.ReadFull(back, answer); err == nil {
			front.Write(answer)
		}
		relayed <- answer
	})
	_, err = dialer.DialRaft(ln.Addr().String())
	if !errors.Is(err, cluster.ErrBadSecret) {
		t.Errorf("dial through a relay: %v, want ErrBadSecret", err)
	}
	wg.Wait()
	if a := <-relayed; a[0] != 1 || !bytes.Equal(a[1:], make([]byte, 32)) {
		t.Errorf("the node answered the relayed hello with %x, want a refusal and no proof", a)
	}
	waitFor(t, "the relayed proof refused", func() bool { return n.Stats().RefusedConns > before.RefusedConns })
	_ = store
	// The same dialer, straight to the node, is a member.
	c, err := dialer.DialRaft(n.Addr())
	if err != nil {
		t.Fatalf("dial the node straight: %v", err)
	}
	c.Close()
}

// TestSilentStrangerDropped: a connection that sends nothing is closed by
// the node after its handshake deadline, without a byte of answer.
func TestSilentStrangerDropped(t *testing.T) {
	_, n := clustertest.Start(t)
	c, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(clustertest.Timeout)) // failsafe only
	k, err := c.Read(make([]byte, 1))
	var ne net.Error
	if k != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("a silent connection read %d bytes, %v; want it closed by the node", k, err)
	}
}

// TestRefusesPeersWithoutCredentials: a node whose raft configuration has
// other servers does not start without credentials, and says what to set;
// a single node without any keeps working and refuses every raft peer.
func TestRefusesPeersWithoutCredentials(t *testing.T) {
	c := clustertest.StartCluster(t, 2)
	m := c.Members[1]
	c.Stop(t, 1)
	cfg := c.Config(m, false)
	cfg.Secret = ""
	store, err := mailbox.Open(filepath.Join(t.TempDir(), "badger"), mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n, err := cluster.Open(cfg, store, nil)
	if err == nil {
		n.Close()
		t.Fatal("a member of a two-node cluster opened without credentials")
	}
	if !strings.Contains(err.Error(), "--cluster-secret") || !strings.Contains(err.Error(), "2 servers") {
		t.Errorf("refusal %q does not say what to set", err)
	}

	// A single node without credentials: it serves, and refuses raft peers.
	sstore, single := clustertest.Start(t, clustertest.WithoutSecret(), quiet)
	before := settled(t, single)
	user, err := forge(t, cluster.RaftClient(t, cluster.Config{Secret: "anything"}), single)
	if err == nil {
		t.Error("a node without credentials answered a raft peer")
	}
	untouched(t, single, sstore, before, user)
	if err := single.Join(ctx(t), cluster.JoinRequest{ID: "x", RaftAddr: "127.0.0.1:1"}); !errors.Is(err, cluster.ErrBadSecret) {
		t.Errorf("join on a node without credentials: %v, want ErrBadSecret", err)
	}
}

// TestMutualTLSCluster: three nodes with certificates alone (no secret),
// and three with both: they elect, replicate, forward from a follower, join
// and fail over.
func TestMutualTLSCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []clustertest.Option
	}{
		{"certificates", []clustertest.Option{clustertest.WithMutualTLS(), clustertest.WithoutSecret()}},
		{"certificates and secret", []clustertest.Option{clustertest.WithMutualTLS()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clustertest.StartCluster(t, 3, tc.opts...)
			f := c.Followers(t)[0]
			user, _ := clustertest.NewUser(t, f.Node) // forwarded to the leader
			_, token := clustertest.NewMailbox(t, f.Node, user)
			clustertest.Publish(t, f.Node, token, "one")
			c.AddConcurrently(t, 1)
			l := c.Leader(t)
			c.Stop(t, l.Index)
			nl := c.Leader(t)
			if nl == l {
				t.Fatal("no new leader")
			}
			clustertest.Publish(t, nl.Node, token, "two")
			c.Sync(t)
			for _, m := range c.Running() {
				if got := stream(t, m.Store, user); len(got) != 2 {
					t.Errorf("%s has %q", m.ID, got)
				}
			}
		})
	}
}

// TestUndecodableProposalRefused: a command the FSM could not decode is
// refused where it is proposed, on the leader and through a follower, and
// nothing reaches the log.
func TestUndecodableProposalRefused(t *testing.T) {
	c := clustertest.StartCluster(t, 2)
	l := c.Leader(t)
	for _, m := range c.Running() {
		before := l.Node.Stats().LastIndex
		for _, cmd := range []*mailbox.Command{
			{Kind: mailbox.KindCreateUser}, // no body
			{Kind: mailbox.Kind(200), CreateUser: &mailbox.CreateUser{UserID: "x"}},
		} {
			_, err := m.Node.Propose(ctx(t), cmd)
			if !errors.Is(err, mailbox.ErrBadCommand) {
				t.Errorf("%s: propose %v: %v, want ErrBadCommand", m.ID, cmd.Kind, err)
			}
		}
		if after := l.Node.Stats().LastIndex; after != before {
			t.Errorf("%s: the log moved from %d to %d", m.ID, before, after)
		}
	}
	u, _ := clustertest.NewUser(t, c.Followers(t)[0].Node)
	c.Sync(t)
	for _, m := range c.Running() {
		if _, err := m.Store.User(u); err != nil {
			t.Errorf("%s: %v", m.ID, err)
		}
	}
}

func secretOf(t *testing.T, n *cluster.Node) string {
	t.Helper()
	s := cluster.SecretOf(n)
	if s == "" {
		t.Fatal("no secret")
	}
	return s
}

func selfCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestHandshakeCap: connections in handshake are capped per remote host
// (16): while 16 silent ones from loopback wait out their deadline, the
// 17th is closed at once, and is the first the node refuses.
func TestHandshakeCap(t *testing.T) {
	_, n := clustertest.Start(t)
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range 16 {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// The node accepts them one by one: dial until one is closed without
	// waiting for its deadline. Each extra one is over the cap too.
	var over net.Conn
	for over == nil {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(clustertest.Timeout)) // failsafe only
		if _, err := c.Read(make([]byte, 1)); err != nil {
			over = c
		}
	}
	// Refused so far: the connection over the cap, none of the silent ones,
	// whose 5 s deadline has not passed.
	if got := n.Stats().RefusedConns; got != 1 {
		t.Errorf("refused %d connections, want 1 (the one over the cap)", got)
	}
}
