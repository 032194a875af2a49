// Command noopd is the ceiling for the publish benchmarks: a net/http server
// with hubd's http.Server settings whose handlers do no work. It answers
// POST /v1/push/{token} with 201 and a body shaped like hubd's
// ({"id":...,"expires_at":...}), and POST /v1/push with 200 and an empty
// result list. It reads and discards the request body, like hubd must.
//
// It prints "noopd: listening on http://ADDR" on stdout, like hubd, so that
// loadtest/bench.sh can find the port.
//
//	go run ./loadtest/noopd --listen 127.0.0.1:0
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
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "HTTP address (loopback only for benchmarks)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var seq atomic.Uint64

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/push/{token}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.PathValue("token")
		// About the size of hubd's answer: a 22-byte id and an RFC 3339 time.
		b := make([]byte, 0, 80)
		b = append(b, `{"id":"noop-`...)
		b = strconv.AppendUint(b, seq.Add(1), 10)
		b = append(b, `","expires_at":"`...)
		b = time.Now().Add(time.Hour).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `"}`...)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Location"] = []string{"/v1/messages/noop"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /v1/push", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		_, _ = w.Write([]byte(`{"results":[]}`))
	})

	// The same settings as cmd/hubd.
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noopd:", err)
		os.Exit(1)
	}
	fmt.Printf("noopd: listening on http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "noopd:", err)
		os.Exit(1)
	}
}
