package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testCA signs certificates for 127.0.0.1 in tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 and localhost with serial into
// certFile and its key into keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("hub %d", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// replaceFile replaces name atomically, as a certificate tool would.
func replaceFile(t *testing.T, name string, b []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

var internalLine = regexp.MustCompile(`internal \(metrics, admin\) on (http://\S+)`)

// startHubdLines is startHubd that keeps hubd's stdout lines after ready
// for the test, and returns the internal listener's URL if it printed one.
func startHubdLines(t *testing.T, dataDir string, args ...string) (p *proc, internal string, lines <-chan string) {
	t.Helper()
	p, all := launchHubd(t, dataDir, args...)
	timeout := time.After(60 * time.Second) // failsafe only
	for {
		select {
		case line, ok := <-all:
			if !ok {
				t.Fatalf("hubd exited before it was ready; stderr:\n%s", p.stderr.String())
			}
			if m := listenLine.FindStringSubmatch(line); m != nil {
				p.url = m[1]
			}
			if m := internalLine.FindStringSubmatch(line); m != nil {
				internal = m[1]
			}
			if line == "hubd: ready" {
				return p, internal, all
			}
		case <-timeout:
			t.Fatalf("hubd not ready after 60s; stderr:\n%s", p.stderr.String())
		}
	}
}

// awaitLine reads lines until one equals want.
func awaitLine(t *testing.T, p *proc, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(60 * time.Second) // failsafe only
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("hubd exited before %q; stderr:\n%s", want, p.stderr.String())
			}
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q after 60s; stderr:\n%s", want, p.stderr.String())
		}
	}
}

// servedSerial shakes hands with addr and returns the serial of the
// certificate it shows, verified against pool.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSReloadKeepsSessions runs hubd with TLS from files, a public URL and
// an internal listener: the API answers over https, a device holds a wss
// WebSocket, /metrics is only on the internal listener, push_url is under
// the public URL. After a new pair and SIGHUP, new handshakes get the new
// certificate and the open WebSocket still delivers; a bad pair and SIGHUP
// keep the good one.
func TestTLSReloadKeepsSessions(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, 100, certFile, keyFile)
	p, internal, lines := startHubdLines(t, filepath.Join(dir, "data"),
		"--tls-cert", certFile, "--tls-key", keyFile,
		"--internal-listen", "127.0.0.1:0", "--public-url", "https://hub.example/base/")
	if !strings.HasPrefix(p.url, "https://") || internal == "" {
		t.Fatalf("hubd said it listens on %q, internal %q", p.url, internal)
	}
	addr := strings.TrimPrefix(p.url, "https://")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	defer client.CloseIdleConnections()
	do := func(method, url, bearer, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if strings.HasPrefix(body, "{") {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer res.Body.Close()
		if out != nil {
			json.NewDecoder(res.Body).Decode(out)
		}
		return res.StatusCode
	}

	// The operators' routes are on the internal listener only.
	if s := do("GET", p.url+"/metrics", "", "", nil); s != http.StatusNotFound {
		t.Fatalf("public GET /metrics: %d, want 404", s)
	}
	if s := call(t, "GET", internal+"/metrics", "", nil, "", nil); s != http.StatusOK {
		t.Fatalf("internal GET /metrics: %d, want 200", s)
	}

	var u struct {
		Secret string `json:"secret"`
	}
	if s := do("POST", p.url+"/v1/users", "", "", &u); s != http.StatusCreated {
		t.Fatalf("register over https: %d", s)
	}
	var mb struct {
		Token   string `json:"token"`
		PushURL string `json:"push_url"`
	}
	if s := do("POST", p.url+"/v1/mailboxes", u.Secret, `{"label":"app"}`, &mb); s != http.StatusCreated {
		t.Fatalf("mailbox: %d", s)
	}
	if want := "https://hub.example/base/v1/push/" + mb.Token; mb.PushURL != want {
		t.Fatalf("push_url %q, want %q", mb.PushURL, want)
	}

	// A device on wss.
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if s := do("POST", p.url+"/v1/tickets", u.Secret, "", &tk); s != http.StatusCreated {
		t.Fatalf("ticket: %d", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // failsafe only
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+"/v1/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial wss: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"hello","ticket":%q,"device":"d1","ack":0}`, tk.Ticket)); err != nil {
		t.Fatal(err)
	}
	expect := func(typ, data string) {
		t.Helper()
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("wss read (waiting for %s %q): %v", typ, data, err)
			}
			var f struct{ Type, Data string }
			json.Unmarshal(b, &f)
			if f.Type == typ && f.Data == data {
				return
			}
		}
	}
	expect("welcome", "")
	publish := func(data string) {
		t.Helper()
		if s := do("POST", p.url+"/v1/push/"+mb.Token, "", data, nil); s != http.StatusCreated {
			t.Fatalf("publish %q: %d", data, s)
		}
	}
	publish("before")
	expect("msg", "before")
	if got := servedSerial(t, addr, ca.pool); got != 100 {
		t.Fatalf("serial %d before the reload, want 100", got)
	}

	// A new pair and SIGHUP: new handshakes see it, the WebSocket stays.
	ca.issue(t, 200, certFile, keyFile)
	p.cmd.Process.Signal(syscall.SIGHUP)
	awaitLine(t, p, lines, "hubd: tls certificate reloaded")
	if got := servedSerial(t, addr, ca.pool); got != 200 {
		t.Fatalf("serial %d after the reload, want 200", got)
	}
	client.CloseIdleConnections() // the next publish shakes hands anew
	publish("after")
	expect("msg", "after")

	// A bad pair: the good one stays.
	replaceFile(t, keyFile, []byte("not a key"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	awaitLine(t, p, lines, "hubd: tls certificate reload failed; the old one stays")
	if got := servedSerial(t, addr, ca.pool); got != 200 {
		t.Fatalf("serial %d after a bad reload, want 200", got)
	}
	publish("still")
	expect("msg", "still")
	go func() {
		for range lines {
		}
	}()
	ws.Close(websocket.StatusNormalClosure, "")
	p.stop()
}

// TestSIGHUPWithoutTLS: a plain node takes SIGHUP (systemctl reload) and
// keeps serving.
func TestSIGHUPWithoutTLS(t *testing.T) {
	p, _, lines := startHubdLines(t, t.TempDir())
	p.cmd.Process.Signal(syscall.SIGHUP)
	awaitLine(t, p, lines, "hubd: SIGHUP: nothing to reload")
	if s := call(t, "GET", p.url+"/healthz", "", nil, "", nil); s != http.StatusOK {
		t.Fatalf("GET /healthz after SIGHUP: %d", s)
	}
	go func() {
		for range lines {
		}
	}()
	p.stop()
}
