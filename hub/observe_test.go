package hub_test

import (
	"sync"
	"testing"

	"github.com/notifyhub/hub/hub"
)

// observed records what a session's Observer was given.
type observed struct {
	mu sync.Mutex
	v  []float64
}

func (o *observed) Observe(v float64) {
	o.mu.Lock()
	o.v = append(o.v, v)
	o.mu.Unlock()
}

func (o *observed) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.v)
}

// ObserveLive reports the messages pushed live, one observation each, and
// not the backlog a session reads back from the store.
func TestObserveLiveSkipsBacklog(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.publish(t, 5) // the backlog
	w := newWakes()
	s, err := r.hub.Attach(r.user, "laptop", 0, w.wake)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o observed
	s.ObserveLive(&o)
	checkRun(t, takeUntil(t, s, w, 100, 5), 0, 5)
	if n := o.count(); n != 0 {
		t.Fatalf("the backlog made %d observations, want 0", n)
	}
	r.publish(t, 3) // live
	checkRun(t, takeUntil(t, s, w, 100, 8), 5, 8)
	if n := o.count(); n != 3 {
		t.Fatalf("3 live messages made %d observations", n)
	}
	for _, v := range o.v {
		if v < 0 {
			t.Fatalf("observed %v seconds", v)
		}
	}
}
