package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// publicTLS is the public port's TLS: a tls.Config, and what keeps its
// certificates current (a SIGHUP loop for files; autocert renews by itself).
type publicTLS struct {
	config *tls.Config
	files  *certFiles // nil under ACME
}

// newPublicTLS returns nil when the public port is plain HTTP.
func newPublicTLS(f servingFlags, dataDir string, log *slog.Logger) (*publicTLS, error) {
	switch {
	case f.tlsCert != "":
		cf := &certFiles{cert: f.tlsCert, key: f.tlsKey, log: log}
		if err := cf.load(); err != nil {
			return nil, err
		}
		return &publicTLS{config: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cf.get}, files: cf}, nil
	case f.acmeDomains != "":
		hc := http.DefaultClient
		if f.acmeCA != "" {
			pem, err := os.ReadFile(f.acmeCA)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--acme-ca %s: no PEM certificate in it", f.acmeCA)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			hc = &http.Client{Transport: tr, Timeout: time.Minute}
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(filepath.Join(dataDir, "acme")),
			HostPolicy: autocert.HostWhitelist(f.domains()...),
			Email:      f.acmeEmail,
			Client:     &acme.Client{DirectoryURL: f.acmeDirURL, HTTPClient: hc},
		}
		c := m.TLSConfig() // GetCertificate, and acme-tls/1 for the tls-alpn-01 challenge
		c.MinVersion = tls.VersionTLS12
		return &publicTLS{config: c}, nil
	}
	return nil, nil
}

// reloadOnHUP rereads the certificate files on every SIGHUP until ctx ends.
// Open connections keep the certificate they shook hands with; new
// handshakes get the new one. A pair that does not load is logged and the
// old one stays. Each reload is announced on stdout for scripts. Without
// certificate files a SIGHUP is logged and ignored: it never stops hubd
// (systemctl reload is always safe).
func (p *publicTLS) reloadOnHUP(ctx context.Context, log *slog.Logger, announce func(string)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if p == nil || p.files == nil {
				log.Info("SIGHUP: nothing to reload (no --tls-cert)")
				announce("hubd: SIGHUP: nothing to reload")
				continue
			}
			if err := p.files.load(); err != nil {
				log.Error("tls: reload on SIGHUP failed; keeping the old certificate", "err", err)
				announce("hubd: tls certificate reload failed; the old one stays")
				continue
			}
			announce("hubd: tls certificate reloaded")
		}
	}
}

// certFiles is a certificate and key pair read from files, swapped
// atomically on reload.
type certFiles struct {
	cert, key string
	log       *slog.Logger
	cur       atomic.Pointer[tls.Certificate]
}

func (c *certFiles) load() error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", c.cert, c.key, err)
	}
	if pair.Leaf == nil {
		return errors.New("tls: no leaf certificate")
	}
	c.cur.Store(&pair)
	c.log.Info("tls: certificate loaded", "subject", pair.Leaf.Subject.String(),
		"dns", pair.Leaf.DNSNames, "not_after", pair.Leaf.NotAfter)
	if time.Now().After(pair.Leaf.NotAfter) {
		c.log.Warn("tls: the certificate has expired", "not_after", pair.Leaf.NotAfter)
	}
	return nil
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

func (p *publicTLS) tlsConfig() *tls.Config {
	if p == nil {
		return nil
	}
	return p.config
}

// serve serves srv on ln, over TLS when p is not nil (HTTP/2 offered too;
// WebSockets take HTTP/1.1).
func (p *publicTLS) serve(srv *http.Server, ln net.Listener) error {
	if p == nil {
		return srv.Serve(ln)
	}
	return srv.ServeTLS(ln, "", "")
}
