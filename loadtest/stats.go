package loadtest

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 2 minutes.
const (
	minLatency = 1
	maxLatency = 120_000_000
)

// recorder collects a run's latencies and counts, in total and per second
// since start.
type recorder struct {
	start time.Time

	mu        sync.Mutex
	pub, del  *hdrhistogram.Histogram
	pubErrors uint64
	secs      []*second
}

// second is one second of a run.
type second struct {
	published, delivered, errors uint64
	pub, del                     *hdrhistogram.Histogram // 2 significant figures: a few KiB each
}

func newRecorder(start time.Time) *recorder {
	return &recorder{
		start: start,
		pub:   hdrhistogram.New(minLatency, maxLatency, 3),
		del:   hdrhistogram.New(minLatency, maxLatency, 3),
	}
}

// sec returns the bucket of t. r.mu is held.
func (r *recorder) sec(t time.Time) *second {
	i := max(int(t.Sub(r.start)/time.Second), 0)
	for len(r.secs) <= i {
		r.secs = append(r.secs, &second{
			pub: hdrhistogram.New(minLatency, maxLatency, 2),
			del: hdrhistogram.New(minLatency, maxLatency, 2),
		})
	}
	return r.secs[i]
}

func micros(d time.Duration) int64 { return min(max(d.Microseconds(), minLatency), maxLatency) }

// published records a publish meant to be sent at intended that ended at
// now: its latency counts from intended, so that a stalled server is not
// measured kindly by a client that waited for it (coordinated omission).
func (r *recorder) published(now, intended time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sec(now)
	if err != nil {
		r.pubErrors++
		s.errors++
		return
	}
	us := micros(now.Sub(intended))
	_ = r.pub.RecordValue(us)
	_ = s.pub.RecordValue(us)
	s.published++
}

// delivered records a message first received at now.
func (r *recorder) delivered(now, intended time.Time) {
	us := micros(now.Sub(intended))
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sec(now)
	_ = r.del.RecordValue(us)
	_ = s.del.RecordValue(us)
	s.delivered++
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarise(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: uint64(h.TotalCount()),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// Second is one point of the report's time series.
type Second struct {
	T         int     `json:"t"` // seconds since the start of the run
	Published uint64  `json:"published"`
	Delivered uint64  `json:"delivered"`
	Errors    uint64  `json:"errors"`
	PubP50    float64 `json:"publish_p50_ms"`
	PubP99    float64 `json:"publish_p99_ms"`
	DelP50    float64 `json:"deliver_p50_ms"`
	DelP99    float64 `json:"deliver_p99_ms"`
}

// series returns the per-second points so far.
func (r *recorder) series() []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Second, len(r.secs))
	for i, s := range r.secs {
		out[i] = Second{
			T: i, Published: s.published, Delivered: s.delivered, Errors: s.errors,
			PubP50: float64(s.pub.ValueAtQuantile(50)) / 1000, PubP99: float64(s.pub.ValueAtQuantile(99)) / 1000,
			DelP50: float64(s.del.ValueAtQuantile(50)) / 1000, DelP99: float64(s.del.ValueAtQuantile(99)) / 1000,
		}
	}
	return out
}

// totals returns the whole run's latencies and publish errors.
func (r *recorder) totals() (pub, del Latency, errors uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarise(r.pub), summarise(r.del), r.pubErrors
}

// progress writes a line a second (the last whole second's rates and
// latencies) to w until stop is closed.
func (r *recorder) progress(w io.Writer, stop <-chan struct{}, extra func() string) {
	if w == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			i := int(now.Sub(r.start)/time.Second) - 1
			r.mu.Lock()
			var s second
			if i >= 0 && i < len(r.secs) {
				s = *r.secs[i]
			}
			line := fmt.Sprintf("%4ds  publish %6d/s  deliver %7d/s  errors %d", i+1, s.published, s.delivered, s.errors)
			if s.pub != nil {
				line += fmt.Sprintf("  publish p99 %s  deliver p50 %s p99 %s",
					fmtMs(s.pub.ValueAtQuantile(99)), fmtMs(s.del.ValueAtQuantile(50)), fmtMs(s.del.ValueAtQuantile(99)))
			}
			r.mu.Unlock()
			if extra != nil {
				line += "  " + extra()
			}
			fmt.Fprintln(w, line)
		}
	}
}

func fmtMs(us int64) string { return fmt.Sprintf("%.1fms", float64(us)/1000) }

// deliveredCount is how many first receipts were recorded.
func (r *recorder) deliveredCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.del.TotalCount()
}
