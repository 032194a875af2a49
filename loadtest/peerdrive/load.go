package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// job is one batch request and the user of each of its items.
type job struct {
	body  []byte
	users []int
}

// publisher builds and sends the batch requests, and counts per user what
// the hub accepted (201), which is what every device of the user must get.
type publisher struct {
	cfg      config
	http     *http.Client
	tokens   []string
	expected []atomic.Int64
	sentOK   atomic.Int64
	pubErrs  atomic.Int64
	reqErrs  atomic.Int64
	requests atomic.Int64
	next     atomic.Int64 // round-robin user cursor
	lastErr  atomic.Value
}

func newPublisher(cfg config, users []user) *publisher {
	p := &publisher{
		cfg: cfg,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns:        cfg.workers * 2,
			MaxIdleConnsPerHost: cfg.workers * 2,
			IdleConnTimeout:     time.Minute,
		}},
		expected: make([]atomic.Int64, cfg.users),
	}
	for _, u := range users {
		p.tokens = append(p.tokens, u.token)
	}
	return p
}

// build makes one batch request for n messages to consecutive users. The
// payload is the Centrifugo driver's publication data, as a JSON string.
func (p *publisher) build(n int, measured bool) job {
	var b bytes.Buffer
	b.Grow(n * (112 + p.cfg.pad))
	users := make([]int, n)
	m := "0"
	if measured {
		m = "1"
	}
	pad := strings.Repeat("x", p.cfg.pad)
	ts := strconv.FormatInt(time.Now().UnixNano(), 10)
	b.WriteString(`{"messages":[`)
	for i := range n {
		u := int(p.next.Add(1)-1) % p.cfg.users
		users[i] = u
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"token":"`)
		b.WriteString(p.tokens[u])
		b.WriteString(`","data":"{\"ts\":`)
		b.WriteString(ts)
		b.WriteString(`,\"m\":`)
		b.WriteString(m)
		b.WriteString(`,\"p\":\"`)
		b.WriteString(pad)
		b.WriteString(`\"}"}`)
	}
	b.WriteString(`]}`)
	return job{body: b.Bytes(), users: users}
}

type batchReply struct {
	Results []struct {
		Status int       `json:"status"`
		Error  *apiError `json:"error"`
	} `json:"results"`
}

func (p *publisher) send(ctx context.Context, j job) {
	p.requests.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.base+"/v1/push", bytes.NewReader(j.body))
	if err != nil {
		p.reqErrs.Add(int64(len(j.users)))
		p.lastErr.Store(err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		p.reqErrs.Add(int64(len(j.users)))
		p.lastErr.Store(err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		p.reqErrs.Add(int64(len(j.users)))
		p.lastErr.Store(fmt.Sprintf("status %d: %.200s", resp.StatusCode, body))
		return
	}
	var br batchReply
	if err := json.Unmarshal(body, &br); err != nil || len(br.Results) != len(j.users) {
		p.reqErrs.Add(int64(len(j.users)))
		p.lastErr.Store(fmt.Sprintf("bad batch reply: %.200s", body))
		return
	}
	for i, r := range br.Results {
		if r.Status != http.StatusCreated {
			p.pubErrs.Add(1)
			if r.Error != nil {
				p.lastErr.Store(fmt.Sprintf("publish error %d %s %s", r.Status, r.Error.Code, r.Error.Message))
			} else {
				p.lastErr.Store(fmt.Sprintf("publish status %d", r.Status))
			}
			continue
		}
		p.expected[j.users[i]].Add(1)
		p.sentOK.Add(1)
	}
}

// window is the measured window's CPU readings and bounds.
type window struct {
	srvCPU, drvCPU, allCPU int64
	at                     time.Time
}

func readWindow(pid string) window {
	return window{cpuTicks(pid), cpuTicks("self"), machineBusyTicks(), time.Now()}
}

func runLoad(ctx context.Context, cfg config, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newStats()
	users := make([]user, cfg.users)
	d := &devices{clients: make([]*client, cfg.users*cfg.devices)}
	defer d.close()

	t0 := time.Now()
	if err := provisionRange(ctx, cfg, users, 0, cfg.users); err != nil {
		return err
	}
	provisionTime := time.Since(t0)
	t0 = time.Now()
	if err := d.connectRange(ctx, cfg, s, users, 0, len(d.clients)); err != nil {
		return err
	}
	connectTime := time.Since(t0)
	pid := strconv.Itoa(cfg.pid)

	counters0 := hubCounters(ctx, cfg)
	p := newPublisher(cfg, users)
	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	var measured atomic.Bool
	var sentInWindow atomic.Int64

	var w0 window
	opened := make(chan struct{})
	go func() { // open the measured window
		defer close(opened)
		if sleep(ctx, time.Until(measureFrom)) != nil {
			return
		}
		w0 = readWindow(pid)
		s.measuring.Store(true)
		measured.Store(true)
	}()

	var wg sync.WaitGroup
	var behind atomic.Int64 // ticks where the job queue was full
	if cfg.rate > 0 {
		jobs := make(chan job, 256)
		for range cfg.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					p.send(ctx, j)
				}
			}()
		}
		tk := time.NewTicker(cfg.tick)
		produced := 0
	schedule:
		for {
			var now time.Time
			select {
			case now = <-tk.C:
			case <-ctx.Done():
				break schedule
			}
			if now.After(end) {
				break schedule
			}
			due := int(now.Sub(start).Seconds() * float64(cfg.rate))
			for n := due - produced; n > 0; {
				k := min(n, cfg.batch)
				m := measured.Load()
				j := p.build(k, m)
				select {
				case jobs <- j:
				default:
					behind.Add(1)
					jobs <- j
				}
				if m {
					sentInWindow.Add(int64(k))
				}
				produced += k
				n -= k
			}
		}
		tk.Stop()
		close(jobs)
	} else {
		for range cfg.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) && ctx.Err() == nil {
					m := measured.Load()
					p.send(ctx, p.build(cfg.batch, m))
					if m {
						sentInWindow.Add(int64(cfg.batch))
					}
				}
			}()
		}
	}
	wg.Wait()
	<-opened
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run cut short: %w", err)
	}
	s.measuring.Store(false)
	w1 := readWindow(pid)
	srvRSS := vmRSSKiB(pid)
	win := w1.at.Sub(w0.at).Seconds()

	// Drain: wait until every accepted message arrived at every device, or
	// until nothing has arrived for 2 s, or cfg.drain passes.
	want := p.sentOK.Load() * int64(cfg.devices)
	drainStart := time.Now()
	last, lastChange := s.received.Load(), time.Now()
	for time.Since(drainStart) < cfg.drain {
		r := s.received.Load()
		if r >= want {
			break
		}
		if r != last {
			last, lastChange = r, time.Now()
		} else if time.Since(lastChange) > 2*time.Second {
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("run cut short: %w", err)
		}
	}
	drainTime := time.Since(drainStart)
	_ = sleep(ctx, 200*time.Millisecond) // the last acks' commits
	counters1 := hubCounters(ctx, cfg)

	var lost, extra int64
	for _, c := range d.clients {
		n := p.expected[c.user].Load() - c.recv.Load()
		if n > 0 {
			lost += n
		} else {
			extra -= n
		}
	}
	all := s.merged()
	ms := func(q float64) float64 { return float64(all.ValueAtQuantile(q)) / 1000 }
	rateName := strconv.Itoa(cfg.rate)
	if cfg.rate == 0 {
		rateName = fmt.Sprintf("max(%dx%d)", cfg.workers, cfg.batch)
	}
	lastErr, _ := p.lastErr.Load().(string)
	fmt.Fprintf(out, "label=%s users=%d devices=%d provision_s=%.1f connect_s=%.1f rate=%s window_s=%.1f\n", cfg.label, cfg.users, cfg.devices,
		provisionTime.Seconds(), connectTime.Seconds(), rateName, win)
	fmt.Fprintf(out, "published_ok=%d publish_errors=%d request_errors=%d requests=%d behind_ticks=%d last_error=%q\n",
		p.sentOK.Load(), p.pubErrs.Load(), p.reqErrs.Load(), p.requests.Load(), behind.Load(), lastErr)
	fmt.Fprintf(out, "received=%d lost=%d extra=%d seq_gaps=%d dup_seqs=%d disconnects=%d server_error_frames=%d ack_write_errors=%d drain_s=%.1f\n",
		s.received.Load(), lost, extra, s.gaps.Load(), s.dups.Load(), s.disconnects.Load(), s.serverErrs.Load(), s.ackErrs.Load(), drainTime.Seconds())
	delta := func(name string) int64 { return counters1[name] - counters0[name] }
	fmt.Fprintf(out, "hub_counters (run): published=%d delivered=%d acks=%d ack_batches=%d too_slow=%d\n",
		delta("hub_published_messages_total"), delta("hub_delivered_messages_total"), delta("hub_acks_total"),
		delta("hub_ack_batches_total"), delta("hub_sessions_too_slow_total"))
	fmt.Fprintf(out, "latency_ms samples=%d p50=%.2f p90=%.2f p99=%.2f p999=%.2f max=%.2f\n",
		all.TotalCount(), ms(50), ms(90), ms(99), ms(99.9), float64(all.Max())/1000)
	srvPct := float64(w1.srvCPU-w0.srvCPU) / userHZ / win * 100
	drvPct := float64(w1.drvCPU-w0.drvCPU) / userHZ / win * 100
	otherPct := float64(w1.allCPU-w0.allCPU)/userHZ/win*100 - srvPct - drvPct
	fmt.Fprintf(out, "window: offered_msgs_s=%.0f delivered_msgs_s=%.0f server_cpu_pct=%.0f driver_cpu_pct=%.0f other_cpu_pct=%.0f server_rss_kib=%d driver_rss_kib=%d\n",
		float64(sentInWindow.Load())/win, float64(s.windowRecv.Load())/win,
		srvPct, drvPct, otherPct, srvRSS, vmRSSKiB("self"))
	fmt.Fprintf(out, "| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %d/%d | %.0f%% | %.0f%% | %.0f%% |\n",
		rateName, float64(sentInWindow.Load())/win, float64(s.windowRecv.Load())/win, ms(50), ms(99), ms(99.9), float64(all.Max())/1000,
		lost+p.pubErrs.Load()+p.reqErrs.Load(), p.sentOK.Load()+p.pubErrs.Load()+p.reqErrs.Load(),
		srvPct, drvPct, otherPct)
	return nil
}
