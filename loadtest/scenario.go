package loadtest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is what a run found: the verdict, the latencies, the time series
// and the scenario's own figures.
type Result struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Params   []Param   `json:"params"`
	Seconds  float64   `json:"seconds"` // from the start of publishing to the end of the drain

	Verdict *Verdict `json:"verdict,omitempty"` // nil for connections
	Publish Latency  `json:"publish"`           // from the intended send time to the 201
	Deliver Latency  `json:"deliver"`           // from the intended send time to a device's first receipt
	Errors  uint64   `json:"publish_errors"`
	Series  []Second `json:"series"`
	Figures []Figure `json:"figures"` // the scenario's own: drain time, RSS per connection, ...
	Notes   []string `json:"notes,omitempty"`
}

// Param is a named setting of a run.
type Param struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (r *Result) param(name string, v any) {
	r.Params = append(r.Params, Param{name, fmt.Sprint(v)})
}

// Figure is a named number of a run.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

func (r *Result) figure(name string, v float64, unit string) {
	r.Figures = append(r.Figures, Figure{name, v, unit})
}

// Pass reports whether the run's verdict found nothing wrong (a run
// without a verdict passes when it finished).
func (r *Result) Pass() bool { return r.Verdict == nil || r.Verdict.Pass }

// Scenarios names every scenario, with a line on what it does.
var Scenarios = []struct{ Name, Help string }{
	{"connections", "N idle WebSocket devices over worker processes; server RSS per connection and connect rate"},
	{"throughput", "a steady publish rate to users with several devices each (ws, poll, sse or mix)"},
	{"burst", "a spike of publishes far above the sustainable rate; how long the backlog takes to drain"},
	{"reconnect-storm", "every device drops, a backlog is published, every device reconnects at once"},
	{"offline-drain", "messages queued for offline users (1,000,000 by default), then the devices connect"},
	{"failover", "a steady rate with Idempotency-Key retries while a node is SIGKILLed; time without writes"},
}

// Run runs the scenario called name.
func Run(ctx context.Context, name string, o Options) (*Result, error) {
	switch name {
	case "connections":
		return Connections(ctx, o)
	case "throughput":
		return Throughput(ctx, o)
	case "burst":
		return Burst(ctx, o)
	case "reconnect-storm":
		return ReconnectStorm(ctx, o)
	case "offline-drain":
		return OfflineDrain(ctx, o)
	case "failover":
		return Failover(ctx, o)
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

// run sets a fleet up, hands it to body with the clock started, and fills
// the result's verdict, latencies and series. Everything ends within the
// scenario's bound: setup, publishing and the drain each have a deadline.
func run(ctx context.Context, name string, o *Options, body func(context.Context, *fleet, *Result) error) (*Result, error) {
	bound := o.ConnectTimeout + o.Duration + o.DrainTimeout + 10*time.Minute
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	res := &Result{Scenario: name, Started: time.Now().UTC()}
	res.param("nodes", strings.Join(o.Nodes, " "))
	res.param("users", o.Users)
	res.param("devices per user", o.Devices)
	res.param("device transport", o.Transport)
	res.param("payload bytes", o.PayloadSize)
	rec := newRecorder(time.Now())
	f, err := newFleet(ctx, o, rec)
	if err != nil {
		return nil, fmt.Errorf("%s: set up: %w", name, err)
	}
	defer f.close()
	f.start(ctx)
	if err := f.waitConnected(ctx, o.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("%s: %w (%d of %d)", name, err, f.connected.Load(), len(f.devices))
	}
	rec.mu.Lock()
	rec.start = time.Now()
	rec.secs = nil
	rec.mu.Unlock()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec.progress(o.Progress, stop, func() string {
			return fmt.Sprintf("devices %d/%d", f.connected.Load(), len(f.devices))
		})
	}()
	err = body(ctx, f, res)
	close(stop)
	wg.Wait()
	res.Seconds = time.Since(rec.start).Seconds()
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	v := verdict(f.users)
	res.Verdict = &v
	res.Publish, res.Deliver, res.Errors = rec.totals()
	res.Series = rec.series()
	res.figure("devices reconnected", float64(f.disconnects.Load()), "")
	return res, nil
}

// publisher publishes to the fleet's users in turn.
type publisher struct {
	f    *fleet
	o    *Options
	keys bool // Idempotency-Key on every publish, and retries across nodes

	mu      sync.Mutex
	success []time.Time // completion times of the 201s, for the write gaps
}

// job is one publish: to whom, and when it was meant to leave.
type job struct {
	u        *user
	intended time.Time
}

// atRate publishes rate messages a second for d, open loop: each is due at
// its own time whether or not the ones before it were answered, and its
// latency counts from then. At most o.Publishers are in flight; the rest
// wait in line, their clocks running.
func (p *publisher) atRate(ctx context.Context, rate int, d time.Duration) {
	total := int(int64(rate) * int64(d) / int64(time.Second))
	jobs := make(chan job, min(total, 1<<20))
	var wg sync.WaitGroup
	for range p.o.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				p.publishOne(ctx, j)
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	users := p.f.users
	for i := 0; i < total && ctx.Err() == nil; {
		now := time.Now()
		for ; i < total; i++ {
			due := start.Add(time.Duration(i) * interval)
			if due.After(now) {
				break
			}
			select {
			case jobs <- job{users[i%len(users)], due}:
			case <-ctx.Done():
			}
		}
		if i < total {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
	}
	close(jobs)
	wg.Wait()
}

// publishOne publishes the user's next message.
func (p *publisher) publishOne(ctx context.Context, j job) {
	n := j.u.next.Add(1)
	var key string
	if p.keys {
		key = "hubload-" + j.u.id + "-" + strconv.FormatUint(n, 10)
	}
	err := p.f.client.publish(ctx, j.u, payload(n, j.intended, p.o.PayloadSize), key)
	now := time.Now()
	p.f.rec.published(now, j.intended, err)
	if err != nil {
		if ctx.Err() == nil {
			p.f.logf("publish to %s: %v", j.u.id, err)
		}
		return
	}
	j.u.ack(n)
	if p.keys {
		p.mu.Lock()
		p.success = append(p.success, now)
		p.mu.Unlock()
	}
}

// batches publishes n messages over the users in turn, in batch requests of
// up to 500, a few at once, each item with an idempotency key.
func (p *publisher) batches(ctx context.Context, n int) error {
	const size, inFlight = 500, 4
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	users := p.f.users
	for off := 0; off < n && ctx.Err() == nil; off += size {
		k := min(size, n-off)
		items := make([]batchItem, k)
		owners := make([]*user, k)
		nums := make([]uint64, k)
		now := time.Now()
		for i := range items {
			u := users[(off+i)%len(users)]
			num := u.next.Add(1)
			owners[i], nums[i] = u, num
			items[i] = batchItem{Token: u.token, Data: string(payload(num, now, p.o.PayloadSize)),
				Key: "hubload-" + u.id + "-" + strconv.FormatUint(num, 10)}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			statuses, err := p.f.client.publishBatch(ctx, items)
			done := time.Now()
			for i, st := range statuses {
				if st == 201 {
					owners[i].ack(nums[i])
					p.f.rec.published(done, now, nil)
				} else {
					p.f.rec.published(done, now, fmt.Errorf("status %d", st))
				}
			}
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// writeGaps returns the longest time between two accepted writes, and the
// one that spans at.
func (p *publisher) writeGaps(at time.Time) (longest, around time.Duration) {
	p.mu.Lock()
	ts := slices.Clone(p.success)
	p.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ts); i++ {
		g := ts[i].Sub(ts[i-1])
		longest = max(longest, g)
		if !ts[i-1].After(at) && ts[i].After(at) {
			around = g
		}
	}
	return longest, around
}

// Throughput publishes at o.Rate for o.Duration to connected devices, then
// waits until every device has everything.
func Throughput(ctx context.Context, o Options) (*Result, error) {
	if err := o.withDefaults(1000, 0); err != nil {
		return nil, err
	}
	return run(ctx, "throughput", &o, func(ctx context.Context, f *fleet, res *Result) error {
		res.param("publishes per second", o.Rate)
		res.param("duration", o.Duration)
		p := &publisher{f: f, o: &o}
		p.atRate(ctx, o.Rate, o.Duration)
		published := time.Now()
		if err := f.drain(ctx, o.DrainTimeout, res); err != nil {
			return err
		}
		res.figure("drain after the last publish", time.Since(published).Seconds(), "s")
		res.figure("delivered per second", float64(f.rec.deliveredCount())/time.Since(f.rec.start).Seconds(), "/s")
		return nil
	})
}
