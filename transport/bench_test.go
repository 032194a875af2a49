package transport_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/transport"
)

type benchHub struct {
	handler http.Handler
	tokens  []string
}

// startBenchHub runs a node with users mailboxes (one per user) behind the handler.
func startBenchHub(b *testing.B, users int) benchHub {
	b.Helper()
	return startBenchHubWith(b, users, transport.Config{})
}

// startBenchHubWith is startBenchHub with a configuration.
func startBenchHubWith(b *testing.B, users int, cfg transport.Config) benchHub {
	b.Helper()
	hb := hub.New(hub.Config{}, nil)
	store, node := clustertest.Start(b, clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = time.Hour }), clustertest.WithApplied(hb))
	api := transport.New(cfg, store, node, hb)
	b.Cleanup(func() { api.Close(context.Background()) })
	h := benchHub{handler: api.Handler()}
	for range users {
		uid, _ := clustertest.NewUser(b, node)
		_, token := clustertest.NewMailbox(b, node, uid)
		h.tokens = append(h.tokens, token)
	}
	return h
}

// BenchmarkPublish measures single publishes through the handler with 256
// concurrent publishers over a real node (raft, group commit, badger),
// without the HTTP stack: the figure is the server's own cost.
func BenchmarkPublish(b *testing.B) { benchPublish(b, startBenchHub(b, 64)) }

func benchPublish(b *testing.B, h benchHub) {
	body := strings.Repeat("x", 200)
	b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		token := h.tokens[i%len(h.tokens)]
		i++
		next.Unlock()
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/push/"+token, strings.NewReader(body))
			req.Header.Set("TTL", "60")
			req.Header.Set("Content-Type", "text/plain")
			w := httptest.NewRecorder()
			h.handler.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

// BenchmarkPublishHTTP is the same over real HTTP on loopback, client and
// server sharing the machine's cores.
func BenchmarkPublishHTTP(b *testing.B) {
	h := startBenchHub(b, 64)
	srv := httptest.NewServer(h.handler)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := strings.Repeat("x", 200)
	b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		url := fmt.Sprintf("%s/v1/push/%s", srv.URL, h.tokens[i%len(h.tokens)])
		i++
		next.Unlock()
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set("TTL", "60")
			req.Header.Set("Content-Type", "text/plain")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusCreated {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}
