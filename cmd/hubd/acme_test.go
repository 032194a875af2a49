package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster/clustertest"
)

// pebbleBin finds pebble, the ACME test server (.ci/run installs it with go
// install). Without it the ACME test skips, unless CI is set: then it fails.
func pebbleBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "pebble")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if _, ci := os.LookupEnv("CI"); !ci {
		t.Skip("no pebble (go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3); skipped because CI is unset")
	}
	t.Fatal("no pebble, and CI is set: the ACME test must run in CI")
	return ""
}

// startPebble runs pebble on loopback, its own https from a certificate of
// ca, validating every challenge (PEBBLE_VA_ALWAYS_VALID: no DNS), and
// returns its directory URL and its management address.
func startPebble(t *testing.T, ca *clustertest.CA) (dirURL, mgmt string) {
	t.Helper()
	bin := pebbleBin(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.IssueTo(t, "pebble", certFile, keyFile)
	listen, mgmt := freeAddr(t), freeAddr(t)
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "",
		"retryAfter": map[string]int{"authz": 1, "order": 1},
	}})
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	var stderr logBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := make(chan string)
	go func() {
		defer close(exited)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range lines {
		}
		<-exited
	})
	timeout := time.After(60 * time.Second) // failsafe only
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("pebble exited; stderr:\n%s", stderr.String())
			}
			if i := strings.Index(line, "ACME directory available at: "); i >= 0 {
				go func() {
					for range lines {
					}
				}()
				return strings.TrimPrefix(line[i:], "ACME directory available at: "), mgmt
			}
		case <-timeout:
			t.Fatalf("pebble not up after 60s; stderr:\n%s", stderr.String())
		}
	}
}

// TestACMEWithPebble: hubd with --acme-domain gets its certificate from a
// real ACME server (pebble) on the first handshake for the domain, serves
// the API with it, and after a restart serves it from the cache in the data
// directory with the ACME server gone.
func TestACMEWithPebble(t *testing.T) {
	ca := clustertest.NewCA(t)
	dirURL, mgmt := startPebble(t, ca)
	dir := t.TempDir()
	caFile := ca.File
	data := filepath.Join(dir, "data")
	args := []string{"--acme-domain", "hub.test", "--acme-email", "ops@hub.test", "--acme-dir-url", dirURL, "--acme-ca", caFile}
	p := startHubd(t, data, args...)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("hubd listens on %q, want https", p.url)
	}

	// Pebble's root, from its management interface.
	mc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 30 * time.Second}
	res, err := mc.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	rootPEM, _ := io.ReadAll(res.Body)
	res.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: no certificate in %q", rootPEM)
	}

	get := func(p *proc) (serial string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "hub.test"}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 2 * time.Minute} // failsafe: issuance runs inside the first handshake
		res, err := c.Get(p.url + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz as hub.test: %v; hubd stderr:\n%s", err, p.stderr.String())
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %d", res.StatusCode)
		}
		leaf := res.TLS.PeerCertificates[0]
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "hub.test" {
			t.Fatalf("certificate for %v, want hub.test", leaf.DNSNames)
		}
		return fmt.Sprint(leaf.SerialNumber)
	}
	first := get(p)
	if _, err := os.Stat(filepath.Join(data, "acme", "hub.test")); err != nil {
		t.Fatalf("no cached certificate: %v", err)
	}
	// A domain the node is not for gets no certificate.
	if c, err := tls.Dial("tcp", strings.TrimPrefix(p.url, "https://"), &tls.Config{ServerName: "other.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("a handshake for other.test succeeded")
	}
	p.stop()

	// From the cache: the same certificate, pebble not asked.
	p = startHubd(t, data, append(args, "--acme-dir-url", "https://127.0.0.1:1/gone")...)
	if again := get(p); again != first {
		t.Fatalf("after a restart serial %s, want the cached %s", again, first)
	}
	p.stop()
}
