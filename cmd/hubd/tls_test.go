package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/notifyhub/hub/cluster/clustertest"
)

// startHubdLines is startHubd that keeps hubd's stdout lines after ready
// for the test, and returns the internal listener's URL if it printed one.
func startHubdLines(t *testing.T, dataDir string, args ...string) (p *proc, internal string, lines <-chan string) {
	t.Helper()
	p, lines = launchHubd(t, dataDir, args...)
	p.readUntilReady(lines)
	return p, p.internal, lines
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
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestTLSReloadKeepsSessions runs hubd with TLS from files, a public URL and
// an internal listener: the API answers over https, a device holds a wss
// WebSocket, /metrics is only on the internal listener, push_url is under
// the public URL. After a new pair and SIGHUP, new handshakes get the new
// certificate and the open WebSocket still delivers; a bad pair and SIGHUP
// keep the good one.
func TestTLSReloadKeepsSessions(t *testing.T) {
	dir := t.TempDir()
	ca := clustertest.NewCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.IssueTo(t, "hub 1", certFile, keyFile)
	p, internal, lines := startHubdLines(t, filepath.Join(dir, "data"),
		"--tls-cert", certFile, "--tls-key", keyFile,
		"--internal-listen", "127.0.0.1:0", "--public-url", "https://hub.example/base/")
	if !strings.HasPrefix(p.url, "https://") || internal == "" {
		t.Fatalf("hubd said it listens on %q, internal %q", p.url, internal)
	}
	addr := strings.TrimPrefix(p.url, "https://")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
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
	if got := servedSerial(t, addr, ca.Pool()); got.Cmp(first) != 0 {
		t.Fatalf("serial %v before the reload, want %v", got, first)
	}

	// A new pair and SIGHUP: new handshakes see it, the WebSocket stays.
	second := ca.IssueTo(t, "hub 2", certFile, keyFile)
	p.cmd.Process.Signal(syscall.SIGHUP)
	awaitLine(t, p, lines, "hubd: tls certificate reloaded")
	if got := servedSerial(t, addr, ca.Pool()); got.Cmp(second) != 0 {
		t.Fatalf("serial %v after the reload, want %v", got, second)
	}
	client.CloseIdleConnections() // the next publish shakes hands anew
	publish("after")
	expect("msg", "after")

	// A bad pair: the good one stays.
	if err := os.WriteFile(keyFile+".tmp", []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keyFile+".tmp", keyFile); err != nil { // atomically, as a certificate tool would
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	awaitLine(t, p, lines, "hubd: tls certificate reload failed; the old one stays")
	if got := servedSerial(t, addr, ca.Pool()); got.Cmp(second) != 0 {
		t.Fatalf("serial %v after a bad reload, want %v", got, second)
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
