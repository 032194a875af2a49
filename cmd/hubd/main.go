// Command hubd runs one node of the notification hub.
//
// With no flags it runs the embedded default: one node that bootstraps
// itself, data in ./data, HTTP on 127.0.0.1:8080. Every flag has a HUB_*
// environment variable (flag --payload-limit is HUB_PAYLOAD_LIMIT) and a key
// in the TOML file --config names (payload-limit = 8192); a flag given on
// the command line wins over the environment, which wins over the file.
//
// hubd is the only place that wires the packages together: the mailbox
// store, the raft node that applies the log into it, the hub of device
// sessions and the receipt dispatcher that hear what was applied, and the
// HTTP transport.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/internal/version"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubd:", err)
		os.Exit(2)
	}
	if cfg.showVersion {
		fmt.Println(version.Get().String("hubd"))
		return
	}
	if cfg.printConfig {
		if err := printConfig(os.Stdout, cfg.flags); err != nil {
			fmt.Fprintln(os.Stderr, "hubd:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hubd:", err)
		os.Exit(1)
	}
}

// run starts the node and serves until ctx ends, then shuts down in layers:
// HTTP first, then raft, then the store.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	log := newLogger(cfg, os.Stderr) // config_file.go

	disk, ok, err := openDiskGuard(ctx, cfg, log) // disk.go
	if err != nil || !ok {
		return err
	}
	defer disk.Close()
	store, err := mailbox.Open(filepath.Join(cfg.dataDir, "state"), mailbox.Options{})
	if err != nil {
		return err
	}
	sessions := hub.New(hub.Config{QueueLen: cfg.sessionQueue, Logger: log}, store)
	dispatcher := receipts.New(cfg.receipts.config(log), store)
	node, err := cluster.Open(cluster.Config{
		NodeID:      cfg.nodeID,
		RaftAddr:    cfg.raftAddr,
		Dir:         filepath.Join(cfg.dataDir, "raft"),
		Bootstrap:   cfg.bootstrap && cfg.join == "", // a joining node waits to be added
		Secret:      cfg.clusterSecret,
		TLSCAFile:   cfg.clusterTLSCA,
		TLSCertFile: cfg.clusterTLSCert,
		TLSKeyFile:  cfg.clusterTLSKey,
		Logger:      log,
	}, store, cluster.Fanout{sessions, dispatcher})
	if err != nil {
		return errors.Join(err, store.Close())
	}
	node.SetDiskGuard(disk)
	sessions.Start(node)
	dispatcher.Start(node, node)
	closeEngines := func() error { return errors.Join(node.Close(), store.Close()) }

	api := transport.New(transport.Config{
		PayloadLimit:     cfg.payloadLimit,
		DefaultTTL:       cfg.defaultTTL,
		MaxTTL:           cfg.maxTTL,
		OpenRegistration: cfg.openRegistration,
		AdminToken:       cfg.adminToken,
		PingInterval:     cfg.pingInterval,
		PollWaitMax:      cfg.pollWaitMax,
		PollInactivity:   cfg.pollInactivity,
		Logger:           log,
		ReceiptURLs:      cfg.receipts.policy(),
		Receipts:         dispatcher,
		Limits:           cfg.limits.limits,
		Quotas:           cfg.quotas.quotas,
		RateLimits:       cfg.rates.config(),
		PublicURL:        cfg.serving.publicURL,
	}, store, node, sessions)
	for _, c := range receiptMetrics(dispatcher) {
		if err := api.Register(c); err != nil {
			log.Warn("metrics: receipts", "err", err)
		}
	}
	if err := api.Register(buildInfoMetric(version.Get())); err != nil {
		log.Warn("metrics: build info", "err", err)
	}
	for _, c := range append(dispatcher.Collectors(), node.Collector(), storageMetrics(store, cfg.dataDir, disk.Reserve())) {
		if err := api.Register(c); err != nil {
			log.Warn("metrics: node", "err", err)
		}
	}
	// No ReadTimeout or WriteTimeout: either would cut event streams,
	// held long-polls and receipt waits, WebSockets and backups. The header
	// has ReadHeaderTimeout, a body its deadline in the transport, and the
	// streams set a deadline on each write.
	pubTLS, err := newPublicTLS(cfg.serving, cfg.dataDir, log) // tls.go
	if err != nil {
		return errors.Join(err, closeEngines())
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		TLSConfig:         pubTLS.tlsConfig(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    cfg.limits.maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(api.BeginClose) // held receipt polls answer at once
	tcp, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s: %w", cfg.listen, err), closeEngines())
	}
	ln := newCapListener(tcp, cfg.limits.maxConns, cfg.limits.maxConnsPerAddr)
	for _, c := range ln.collectors() {
		if err := api.Register(c); err != nil {
			log.Warn("metrics: connections", "err", err)
		}
	}
	internal, err := listenInternal(cfg, srv, api, log) // internal.go
	if err != nil {
		return errors.Join(err, ln.Close(), closeEngines())
	}
	// Tests and scripts read this line to find the port.
	fmt.Fprintf(stdout, "hubd: node %s listening on %s://%s (raft %s, data %s)\n", cfg.nodeID, cfg.serving.scheme(), ln.Addr(), node.Addr(), cfg.dataDir)
	if internal != nil {
		fmt.Fprintf(stdout, "hubd: internal (metrics, admin) on http://%s\n", internal.addr)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := pubTLS.serve(srv, ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return internal.serve() })
	g.Go(func() error {
		pubTLS.reloadOnHUP(gctx, log, func(line string) { fmt.Fprintln(stdout, line) })
		return nil
	})
	g.Go(func() error { return joinCluster(gctx, cfg, node, ln.Addr(), log) })
	g.Go(func() error {
		// Replay of the log is done and a leader is known: say so, for
		// scripts and tests that wait for it.
		if err := node.WaitReady(gctx); err == nil {
			fmt.Fprintln(stdout, "hubd: ready")
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
		defer cancel()
		log.Info("shutting down")
		// Devices first: their sessions end (WebSockets get going_away,
		// held polls and event streams are answered) and their last acks
		// are committed; then the HTTP requests drain.
		sessions.Close(sctx)
		return errors.Join(srv.Shutdown(sctx), internal.shutdown(sctx), api.Close(sctx), dispatcher.Close(sctx))
	})
	err = g.Wait()
	// Sessions and requests are done: stop raft, then close the store.
	return errors.Join(err, closeEngines())
}

// joinCluster tells the node its API address, and on a first start with
// --join asks the cluster to add it (retrying until a member answers).
func joinCluster(ctx context.Context, cfg config, node *cluster.Node, addr net.Addr, log *slog.Logger) error {
	api := cfg.advertise
	if api == "" {
		api = cfg.serving.publicURL
	}
	if api == "" {
		api = cfg.serving.scheme() + "://" + addr.String()
	}
	node.SetAPIAddr(api)
	if cfg.join == "" || !node.Fresh() {
		return nil
	}
	log.Info("joining the cluster", "via", cfg.join, "api", api)
	err := node.JoinVia(ctx, cfg.join, cluster.JoinRequest{ID: cfg.nodeID, RaftAddr: node.Addr(), APIAddr: api})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("join: %w", err)
	}
	return nil
}
