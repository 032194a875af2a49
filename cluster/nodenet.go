package cluster

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// nodeNet is the one listener of node-to-node traffic (the raft address)
// and its dialer: TLS 1.3, then a hello in which the dialer names the stream
// it wants and proves the secret, and the listener's answer with its own
// proof. Authenticated raft streams go to raft (nodeNet is its
// raft.StreamLayer); internal HTTP streams go to the node's internal HTTP
// server through httpLn. See "Node-to-node traffic" in doc.go.
//
// The hello: version (1 byte), stream kind (1 byte), the dialer's proof
// (32 bytes; zeros without a secret). The answer: status (1 byte, 0 ok,
// 1 refused) and the listener's proof (32 bytes). Nothing else is read
// before both proofs were checked.
type nodeNet struct {
	creds *credentials
	ln    net.Listener
	log   *slog.Logger

	raftCh chan net.Conn
	httpLn *connListener

	mu      sync.Mutex
	perHost map[string]int        // connections in handshake, by remote host
	pending map[net.Conn]struct{} // connections in handshake, closed by Close
	inShake int

	refused refusals
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

const (
	helloVersion = 1
	// Stream kinds, the hello's second byte.
	streamRaft = 'R'
	streamHTTP = 'H'
	helloLen   = 2 + proofLen
	answerLen  = 1 + proofLen
	answerOK   = 0
	answerNo   = 1

	// handshakeTimeout bounds TLS, hello and answer of one connection: a
	// stranger that connects and sends nothing is dropped after it.
	handshakeTimeout = 5 * time.Second
	// maxHandshakes and maxHandshakesPerHost bound the connections in
	// handshake, all and from one host: past them a new one is closed at
	// once, so the raft port cannot exhaust the file table.
	maxHandshakes        = 256
	maxHandshakesPerHost = 16
)

var _ raft.StreamLayer = (*nodeNet)(nil)

// listenNodeNet binds addr. Its bound address is what the node advertises,
// so the host must be one peers can dial.
func listenNodeNet(addr string, creds *credentials, log *slog.Logger) (*nodeNet, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || ta.IP == nil || ta.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("%s is not an address other nodes can dial: give the host's own address", ln.Addr())
	}
	t := &nodeNet{
		creds:   creds,
		ln:      ln,
		log:     log,
		raftCh:  make(chan net.Conn),
		perHost: map[string]int{},
		pending: map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}
	t.httpLn = &connListener{ch: make(chan net.Conn), done: t.done, addr: ln.Addr(), closed: make(chan struct{})}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

func (t *nodeNet) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait a little, as net/http does.
			t.log.Warn("cluster: accept a node-to-node connection", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-t.done:
				return
			}
			continue
		}
		if t.creds.none() {
			t.refused.note(t.log, c.RemoteAddr(), errNoCredentials)
			c.Close()
			continue
		}
		host := hostOf(c.RemoteAddr())
		if !t.admit(c, host) {
			t.refused.note(t.log, c.RemoteAddr(), errors.New("too many connections in handshake"))
			c.Close()
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.leave(c, host)
			t.serveHandshake(c)
		}()
	}
}

func (t *nodeNet) admit(c net.Conn, host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inShake >= maxHandshakes || t.perHost[host] >= maxHandshakesPerHost {
		return false
	}
	t.inShake++
	t.perHost[host]++
	t.pending[c] = struct{}{}
	return true
}

func (t *nodeNet) leave(c net.Conn, host string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inShake--
	if t.perHost[host]--; t.perHost[host] <= 0 {
		delete(t.perHost, host)
	}
	delete(t.pending, c)
}

// serveHandshake authenticates an accepted connection and hands it on, or
// closes it.
func (t *nodeNet) serveHandshake(raw net.Conn) {
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	c := tls.Server(raw, t.creds.serverTLS())
	kind, err := t.acceptHello(c)
	if err != nil {
		t.refused.note(t.log, raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	ch := t.raftCh
	if kind == streamHTTP {
		ch = t.httpLn.ch
	}
	select {
	case ch <- c:
	case <-t.done:
		c.Close()
	}
}

// acceptHello runs the listener's side of the handshake on c.
func (t *nodeNet) acceptHello(c *tls.Conn) (byte, error) {
	if err := c.Handshake(); err != nil {
		return 0, fmt.Errorf("tls: %w", err)
	}
	cs := c.ConnectionState()
	want, err := t.creds.proof(cs, roleDialer)
	if err != nil {
		return 0, err
	}
	kind, err := readHello(c, want)
	if errors.Is(err, errBadProof) {
		// Say so, so that a node with the wrong secret stops retrying; the
		// refusal tells a stranger nothing it did not know.
		c.Write(append([]byte{answerNo}, make([]byte, proofLen)...))
	}
	if err != nil {
		return 0, err
	}
	mine, err := t.creds.proof(cs, roleListener)
	if err != nil {
		return 0, err
	}
	if _, err := c.Write(append([]byte{answerOK}, mine...)); err != nil {
		return 0, fmt.Errorf("answer the hello: %w", err)
	}
	return kind, nil
}

var (
	errBadProof = errors.New("wrong proof of the cluster secret")
	errBadHello = errors.New("not a node's hello")
)

// readHello reads a dialer's hello from r and checks it against want, the
// proof the dialer must send. It returns the stream kind.
func readHello(r io.Reader, want []byte) (byte, error) {
	var b [helloLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("%w: %v", errBadHello, err)
	}
	if b[0] != helloVersion {
		return 0, fmt.Errorf("%w: version %d", errBadHello, b[0])
	}
	if k := b[1]; k != streamRaft && k != streamHTTP {
		return 0, fmt.Errorf("%w: stream kind %d", errBadHello, k)
	}
	if len(want) != proofLen || subtle.ConstantTimeCompare(b[2:], want) != 1 {
		return 0, errBadProof
	}
	return b[1], nil
}

// readAnswer reads a listener's answer from r and checks its proof.
func readAnswer(r io.Reader, want []byte) error {
	var b [answerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	switch b[0] {
	case answerOK:
	case answerNo:
		return fmt.Errorf("%w: the peer refused this node's proof of the cluster secret", ErrBadSecret)
	default:
		return fmt.Errorf("%w: the peer's answer is not a node's (status %d)", ErrBadSecret, b[0])
	}
	if len(want) != proofLen || subtle.ConstantTimeCompare(b[1:], want) != 1 {
		return fmt.Errorf("%w: the peer did not prove the cluster secret (not a member, or someone in between)", ErrBadSecret)
	}
	return nil
}

// dial opens an authenticated stream of kind to the node at addr. A failure
// before the peer could have read anything is a *net.OpError with Op
// "dial" (the caller may try another node); a failed authentication wraps
// ErrBadSecret.
func (t *nodeNet) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	dialErr := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	if t.creds.none() {
		return nil, dialErr(errNoCredentials)
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c := tls.Client(raw, t.creds.clientTLS())
	err = t.hello(ctx, c, kind)
	if err != nil {
		raw.Close()
		if errors.Is(err, ErrBadSecret) {
			return nil, fmt.Errorf("cluster: %s: %w", addr, err)
		}
		return nil, dialErr(fmt.Errorf("%s: node handshake: %w", addr, err))
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

func (t *nodeNet) hello(ctx context.Context, c *tls.Conn, kind byte) error {
	if err := c.HandshakeContext(ctx); err != nil {
		return authErr(err)
	}
	cs := c.ConnectionState()
	mine, err := t.creds.proof(cs, roleDialer)
	if err != nil {
		return err
	}
	if _, err := c.Write(append([]byte{helloVersion, kind}, mine...)); err != nil {
		return authErr(err)
	}
	want, err := t.creds.proof(cs, roleListener)
	if err != nil {
		return err
	}
	return authErr(readAnswer(c, want))
}

// authErr turns a TLS refusal (the peer's certificate, or ours, refused)
// into ErrBadSecret; other errors stay as they are.
func authErr(err error) error {
	var op *net.OpError
	var cv *tls.CertificateVerificationError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errPeerCert), errors.As(err, &cv):
		return fmt.Errorf("%w: %v", ErrBadSecret, err)
	case errors.As(err, &op) && op.Op == "remote error":
		return fmt.Errorf("%w: the peer refused this node's TLS credentials: %v", ErrBadSecret, err)
	}
	return err
}

// Dial is raft's: an authenticated raft stream to address.
func (t *nodeNet) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.dial(ctx, string(address), streamRaft)
}

// dialHTTP is the internal HTTP client's DialContext: addr is a raft address.
func (t *nodeNet) dialHTTP(ctx context.Context, _, addr string) (net.Conn, error) {
	return t.dial(ctx, addr, streamHTTP)
}

// Accept is raft's: the next authenticated raft stream.
func (t *nodeNet) Accept() (net.Conn, error) {
	select {
	case c := <-t.raftCh:
		return c, nil
	case <-t.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening, drops the connections in handshake and waits for
// their goroutines. Established streams belong to raft and the HTTP server.
func (t *nodeNet) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.ln.Close()
		t.mu.Lock()
		for c := range t.pending {
			c.Close()
		}
		t.mu.Unlock()
	})
	t.wg.Wait()
	return nil
}

// Addr is the bound address, which raft advertises.
func (t *nodeNet) Addr() net.Addr { return t.ln.Addr() }

// connListener is a net.Listener fed with connections by nodeNet: the
// internal HTTP server serves on it.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{} // nodeNet's: closed when it closes
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close ends Accept (the HTTP server closes it); a stream authenticated
// after it waits for nodeNet.Close, which closes it.
func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// refusals counts connections that did not authenticate, by remote host,
// and logs the 1st, 10th, 100th... of each host: one line per address with
// a count, not a line per attempt.
type refusals struct {
	total atomic.Uint64
	mu    sync.Mutex
	by    map[string]uint64
}

// maxRefusalHosts bounds the hosts counted apart; the rest share a count.
const maxRefusalHosts = 4096

func (r *refusals) note(log *slog.Logger, from net.Addr, why error) {
	r.total.Add(1)
	host := hostOf(from)
	r.mu.Lock()
	if r.by == nil {
		r.by = map[string]uint64{}
	}
	if _, ok := r.by[host]; !ok && len(r.by) >= maxRefusalHosts {
		host = "other hosts"
	}
	r.by[host]++
	n := r.by[host]
	r.mu.Unlock()
	for p := uint64(1); p <= n; p *= 10 {
		if p == n {
			log.Warn("cluster: refused a node-to-node connection that did not authenticate",
				"from", host, "refused_from_it", n, "why", why)
			return
		}
	}
}
