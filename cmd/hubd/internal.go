package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/notifyhub/hub/transport"
)

// internalServer is the internal listener (--internal-listen): plain HTTP
// with the operators' routes (/metrics, /admin, /admin/v1/..., the health
// checks), which the public port then no longer serves. Node-to-node
// traffic is not here: it shares the raft port, authenticated
// (cluster/nodenet.go). A nil *internalServer is no internal listener.
type internalServer struct {
	srv  *http.Server
	ln   net.Listener
	addr net.Addr
}

// listenInternal binds the internal listener when one is configured, and
// then gives pub (the public server) the public API only.
func listenInternal(cfg config, pub *http.Server, api *transport.Server, log *slog.Logger) (*internalServer, error) {
	if cfg.serving.internalListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.serving.internalListen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--internal-listen): %w", cfg.serving.internalListen, err)
	}
	pub.Handler = api.PublicHandler()
	srv := &http.Server{
		Handler:           api.InternalHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    cfg.limits.maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return &internalServer{srv: srv, ln: ln, addr: ln.Addr()}, nil
}

func (s *internalServer) serve() error {
	if s == nil {
		return nil
	}
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *internalServer) shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}
