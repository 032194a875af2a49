package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
)

// This file is the hub's protocol as the driver speaks it: provisioning,
// tickets, the WebSocket device (hello, msg, ack, ping), and the hub's own
// counters. Frames are parsed with encoding/json, as the peer's driver
// parses Centrifugo's, so that both drivers spend alike per message.

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// frame is any frame the hub sends a WebSocket device.
type frame struct {
	Type    string `json:"type"`
	Seq     uint64 `json:"seq"`  // msg
	Data    string `json:"data"` // msg
	From    uint64 `json:"from"` // welcome
	Code    string `json:"code"` // error
	Message string `json:"message"`
}

type payload struct {
	TS       int64 `json:"ts"`
	Measured int   `json:"m"`
}

func deviceName(d int) string { return "d" + strconv.Itoa(d) }

// user is one provisioned hub user: its secret (for tickets) and its
// mailbox's token (for publishing).
type user struct {
	secret string
	token  string
}

// api is the client of the hub's REST calls (provisioning, tickets):
// keep-alive connections, as a backend would hold.
var api = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	IdleConnTimeout:     time.Minute,
}}

// call makes one REST call and decodes a JSON answer with status want into out.
func call(ctx context.Context, method, url, bearer string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := api.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %.200s", method, url, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer %.200q: %w", method, url, b, err)
		}
	}
	return nil
}

// provision makes one user and its mailbox.
func provision(ctx context.Context, cfg config) (user, error) {
	var u struct {
		Secret string `json:"secret"`
	}
	if err := call(ctx, "POST", cfg.base+"/v1/users", cfg.adminToken, nil, http.StatusCreated, &u); err != nil {
		return user{}, err
	}
	var mb struct {
		Token string `json:"token"`
	}
	if err := call(ctx, "POST", cfg.base+"/v1/mailboxes", u.Secret, []byte(`{"label":"bench"}`), http.StatusCreated, &mb); err != nil {
		return user{}, err
	}
	return user{secret: u.Secret, token: mb.Token}, nil
}

// provisionRange makes users [from, to) with cfg.dialers in parallel.
func provisionRange(ctx context.Context, cfg config, users []user, from, to int) error {
	return parallel(cfg.dialers, from, to, func(i int) error {
		u, err := provision(ctx, cfg)
		if err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
		users[i] = u
		return nil
	})
}

// parallel runs fn(i) for i in [from, to) on n goroutines, stopping at the
// first error; it returns when all of them have.
func parallel(n, from, to int, fn func(i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(to)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// stats is what every device's reader adds to.
type stats struct {
	measuring   atomic.Bool
	received    atomic.Int64 // every msg frame
	windowRecv  atomic.Int64 // msgs that arrived inside the measured window
	gaps        atomic.Int64 // seqs that skipped ahead
	dups        atomic.Int64 // seqs at or below the last seen
	disconnects atomic.Int64 // readers that ended while the run was live
	serverErrs  atomic.Int64 // error frames from the hub (a refused ack)
	ackErrs     atomic.Int64 // acks that could not be written
	hists       []*lockedHist
}

// lockedHist is one shard of the latency histogram (µs): readers record
// into the shard of their device, so that they rarely wait for each other.
type lockedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newStats() *stats {
	s := &stats{}
	for range 32 {
		s.hists = append(s.hists, &lockedHist{h: hdrhistogram.New(1, 120_000_000, 3)})
	}
	return s
}

// merged is every shard's latencies in one histogram.
func (s *stats) merged() *hdrhistogram.Histogram {
	all := hdrhistogram.New(1, 120_000_000, 3)
	for _, lh := range s.hists {
		lh.mu.Lock()
		all.Merge(lh.h)
		lh.mu.Unlock()
	}
	return all
}

// client is one connected device.
type client struct {
	idx     int // device index: user*devices + k
	user    int
	conn    *websocket.Conn
	lastSeq uint64
	recv    atomic.Int64
}

// dial takes a ticket for the user, opens the device's WebSocket, says hello
// and waits for the welcome.
func dial(ctx context.Context, cfg config, u user, userIdx, k int) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := call(dctx, "POST", cfg.base+"/v1/tickets", u.secret, nil, http.StatusCreated, &tk); err != nil {
		return nil, fmt.Errorf("ticket: %w", err)
	}
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(cfg.base, "http")+"/v1/ws", &websocket.DialOptions{HTTPClient: wsHTTPClient})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	hello := `{"type":"hello","ticket":"` + tk.Ticket + `","device":"` + deviceName(k) + `"}`
	if err := conn.Write(dctx, websocket.MessageText, []byte(hello)); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("write hello: %w", err)
	}
	_, data, err := conn.Read(dctx)
	if err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != "welcome" {
		conn.CloseNow()
		return nil, fmt.Errorf("want a welcome, got %.200q", data)
	}
	return &client{idx: userIdx*cfg.devices + k, user: userIdx, conn: conn, lastSeq: f.From}, nil
}

var wsHTTPClient = &http.Client{Transport: &http.Transport{
	DialContext:       (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	DisableKeepAlives: true,
}}

// read consumes frames until the connection or ctx ends, answering pings,
// recording every message and acking it.
func (c *client) read(ctx context.Context, s *stats) {
	pong := []byte(`{"type":"pong"}`)
	var f frame
	var p payload
	var ack []byte
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.disconnects.Add(1)
			}
			return
		}
		now := time.Now().UnixNano()
		f = frame{}
		if err := json.Unmarshal(data, &f); err != nil {
			continue
		}
		switch f.Type {
		case "ping":
			_ = c.conn.Write(ctx, websocket.MessageText, pong)
			continue
		case "error":
			s.serverErrs.Add(1)
			continue
		case "msg":
		default:
			continue
		}
		switch {
		case f.Seq == c.lastSeq+1:
		case f.Seq > c.lastSeq+1:
			s.gaps.Add(int64(f.Seq - c.lastSeq - 1))
		default:
			s.dups.Add(1)
		}
		if f.Seq > c.lastSeq {
			c.lastSeq = f.Seq
		}
		c.recv.Add(1)
		s.received.Add(1)
		if s.measuring.Load() {
			s.windowRecv.Add(1)
		}
		p = payload{}
		if json.Unmarshal([]byte(f.Data), &p) == nil && p.Measured == 1 {
			us := max((now-p.TS)/1000, 1)
			lh := s.hists[c.idx%len(s.hists)]
			lh.mu.Lock()
			_ = lh.h.RecordValue(us)
			lh.mu.Unlock()
		}
		// Handled: ack it (cumulative), as hub.js does.
		ack = strconv.AppendUint(append(ack[:0], `{"type":"ack","seq":`...), c.lastSeq, 10)
		ack = append(ack, '}')
		if err := c.conn.Write(ctx, websocket.MessageText, ack); err != nil && ctx.Err() == nil {
			s.ackErrs.Add(1)
		}
	}
}

// devices owns the connected devices and their readers: close cuts every
// connection and returns once every reader has ended.
type devices struct {
	clients []*client
	readers sync.WaitGroup
}

// connectRange dials devices [from, to) (device i is device i%devices of
// user i/devices) with cfg.dialers in parallel and starts a reader for each.
func (d *devices) connectRange(ctx context.Context, cfg config, s *stats, users []user, from, to int) error {
	return parallel(cfg.dialers, from, to, func(i int) error {
		c, err := dial(ctx, cfg, users[i/cfg.devices], i/cfg.devices, i%cfg.devices)
		if err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		d.clients[i] = c
		d.readers.Add(1)
		go func() {
			defer d.readers.Done()
			c.read(ctx, s)
		}()
		return nil
	})
}

func (d *devices) close() {
	for _, c := range d.clients {
		if c != nil {
			c.conn.CloseNow()
		}
	}
	d.readers.Wait()
}

// hubCounters reads the hub's own counters of published messages,
// deliveries and committed acks from GET /metrics (outside the measured
// window): they show the hub did the whole job, acks included.
func hubCounters(ctx context.Context, cfg config) map[string]int64 {
	out := map[string]int64{}
	req, err := http.NewRequestWithContext(ctx, "GET", cfg.base+"/metrics", nil)
	if err != nil {
		return out
	}
	resp, err := api.Do(req)
	if err != nil {
		return out
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range counterNames {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				out[name] = int64(f)
			}
		}
	}
	return out
}

var counterNames = []string{"hub_published_messages_total", "hub_delivered_messages_total", "hub_acks_total", "hub_ack_batches_total", "hub_sessions_too_slow_total"}
