// Command fixedrate is an open-loop, fixed-rate load generator for
// POST /v1/push/{token}, for latency at a given throughput (Debian has no
// wrk2).
//
// Request i is due at start + i/rate, whether or not earlier requests have
// been answered; its latency is measured from that intended send time, not
// from when a connection was free to send it. A stalled server therefore
// shows up in the percentiles as the queue it causes (the coordinated-
// omission-safe method of wrk2 and HdrHistogram). Requests are sent over
// --conns keep-alive connections, each a goroutine taking the next due slot.
//
//	go run ./loadtest/fixedrate --url http://127.0.0.1:PORT/v1/push/TOKEN --rate 5000 --duration 10s
//
// It prints one line, "RESULT ...", with latencies in microseconds.
// send_lag is how late the client itself sent (timer wake-up and waiting for
// a free connection); it is part of the latency, as it should be, and shows
// how much of it is the client's own.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func main() {
	target := flag.String("url", "", "publish URL, http://127.0.0.1:PORT/v1/push/TOKEN (loopback only)")
	rate := flag.Float64("rate", 5000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up at the same rate, before the measurement")
	conns := flag.Int("conns", 64, "connections (and sending goroutines)")
	payloadBytes := flag.Int("payload", 128, "payload size in bytes")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout")
	flag.Parse()

	if err := run(*target, *rate, *duration, *warmup, *conns, *payloadBytes, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "fixedrate:", err)
		os.Exit(1)
	}
}

func run(target string, rate float64, duration, warmup time.Duration, conns, payloadBytes int, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return fmt.Errorf("refusing non-loopback host %q", h)
	}
	if rate <= 0 || conns <= 0 || duration <= 0 || duration > 10*time.Minute || warmup < 0 || warmup > time.Minute {
		return fmt.Errorf("bad --rate, --conns, --duration or --warmup")
	}
	payload := []byte(strings.Repeat("0123456789abcdef", payloadBytes/16+1)[:payloadBytes])

	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}

	interval := time.Duration(float64(time.Second) / rate)
	total := int64(float64(warmup+duration) / float64(interval))
	warmN := int64(float64(warmup) / float64(interval))
	start := time.Now().Add(50 * time.Millisecond)
	deadline := start.Add(warmup + duration + timeout + time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	var next atomic.Int64
	var errs, non2xx atomic.Int64
	hists := make([]*hdrhistogram.Histogram, conns)
	lags := make([]*hdrhistogram.Histogram, conns) // send time - due time: the client's own lateness
	var wg sync.WaitGroup
	for w := range conns {
		h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		hists[w] = h
		lag := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		lags[w] = lag
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				sent := time.Now()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
				if err != nil {
					errs.Add(1)
					continue
				}
				req.Header["Ttl"] = []string{"3600"}
				req.Header["Content-Type"] = []string{"text/plain"}
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				lat := time.Since(due) // from the intended send time
				if i < warmN {
					continue
				}
				switch {
				case err != nil:
					errs.Add(1)
				case resp.StatusCode/100 != 2:
					non2xx.Add(1)
				}
				_ = h.RecordValue(max(1, lat.Microseconds()))
				_ = lag.RecordValue(max(1, sent.Sub(due).Microseconds()))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start.Add(warmup))

	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, h := range hists {
		all.Merge(h)
	}
	lag := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, h := range lags {
		lag.Merge(h)
	}
	n := all.TotalCount()
	fmt.Printf("RESULT requests=%d seconds=%.3f rps=%.1f target_rps=%.0f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d errors=%d non2xx=%d send_lag_p50_us=%d send_lag_p99_us=%d\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), rate,
		all.ValueAtQuantile(50), all.ValueAtQuantile(90), all.ValueAtQuantile(99),
		all.ValueAtQuantile(99.9), all.Max(), errs.Load(), non2xx.Load(),
		lag.ValueAtQuantile(50), lag.ValueAtQuantile(99))
	if next.Load() < total {
		return fmt.Errorf("stopped early at request %d of %d", next.Load(), total)
	}
	return nil
}
