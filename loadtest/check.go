package loadtest

import (
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (b *bitset) set(i uint64) (was bool) {
	w := int(i / 64)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w-len(*b)+1+len(*b)/2)...)
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i uint64) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(uint64(1)<<(i%64)) != 0
}

// user is a registered user with one mailbox. Each message published to it
// gets the next logical number n (from 1), written into its payload; acked
// holds the numbers the hub answered 201 for.
type user struct {
	id, secret, token string

	next    atomic.Uint64
	mu      sync.Mutex
	acked   bitset
	devices []*device
}

func (u *user) ack(n uint64) {
	u.mu.Lock()
	u.acked.set(n)
	u.mu.Unlock()
}

// payload is a message's body: "<n> <intended send time, unix ns> " and
// padding up to size bytes.
func payload(n uint64, at time.Time, size int) []byte {
	b := make([]byte, 0, max(size, 40))
	b = strconv.AppendUint(b, n, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, at.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parsePayload reads what payload wrote; ok is false for anything else.
func parsePayload(s string) (n uint64, at time.Time, ok bool) {
	i := 0
	field := func() (uint64, bool) {
		start := i
		for i < len(s) && s[i] != ' ' {
			i++
		}
		v, err := strconv.ParseUint(s[start:i], 10, 64)
		i++
		return v, err == nil
	}
	n, ok1 := field()
	ns, ok2 := field()
	if !ok1 || !ok2 {
		return 0, time.Time{}, false
	}
	return n, time.Unix(0, int64(ns)), true
}

// received is what one device got, checked as it arrives.
type received struct {
	mu          sync.Mutex
	got         bitset // logical numbers
	maxSeq      uint64 // highest seq processed: the device's resume point
	count       uint64 // messages processed (first time)
	redelivered uint64 // a seq at or below maxSeq, already processed: the client drops it
	duplicated  uint64 // a logical number under a second, higher seq: stored twice
	outOfOrder  uint64 // a new seq below maxSeq: the stream went backwards
	foreign     uint64 // a payload this run did not write
}

// take records a message; it reports whether the message is new to the
// device (the app would process it) and the payload's intended send time.
func (r *received) take(seq uint64, data string) (fresh bool, at time.Time) {
	n, at, ok := parsePayload(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.foreign++
		return false, at
	}
	if seq <= r.maxSeq {
		if r.got.has(n) {
			r.redelivered++
			return false, at
		}
		r.outOfOrder++
	} else {
		r.maxSeq = seq
	}
	if r.got.set(n) {
		r.duplicated++
		return false, at
	}
	r.count++
	return true, at
}

func (r *received) resumeFrom() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxSeq
}

// Verdict is the correctness outcome of a run.
type Verdict struct {
	Published   uint64 `json:"published"`  // 201s (expected at every device of the user)
	Expected    uint64 `json:"expected"`   // published messages times the user's devices
	Delivered   uint64 `json:"delivered"`  // of those, received
	Lost        uint64 `json:"lost"`       // acknowledged to the publisher, never received by a device
	Duplicated  uint64 `json:"duplicated"` // received under two seqs
	OutOfOrder  uint64 `json:"out_of_order"`
	Redelivered uint64 `json:"redelivered"` // seen again after a reconnect and dropped by seq, as the protocol allows
	Unexpected  uint64 `json:"unexpected"`  // received, though the publish was not answered 201 (it may still have been stored)
	Foreign     uint64 `json:"foreign"`     // payloads this run did not write
	// DevicesShort is how many devices miss at least one message;
	// Missing names a few of them: "user/device: n missing, first #k".
	DevicesShort int      `json:"devices_short"`
	Missing      []string `json:"missing,omitempty"`
	Pass         bool     `json:"pass"`
}

// verdict compares what every device received with what was published.
func verdict(users []*user) Verdict {
	var v Verdict
	for _, u := range users {
		u.mu.Lock()
		published := popcount(u.acked)
		v.Published += published
		v.Expected += published * uint64(len(u.devices))
		for _, d := range u.devices {
			r := &d.recv
			r.mu.Lock()
			missing := andNotCount(u.acked, r.got)
			v.Lost += missing
			if missing > 0 {
				v.DevicesShort++
				if len(v.Missing) < 10 {
					v.Missing = append(v.Missing, fmt.Sprintf("%s/%s: %d missing, first #%d, got up to seq %d",
						u.id, d.id, missing, firstAndNot(u.acked, r.got), r.maxSeq))
				}
			}
			v.Delivered += published - missing
			v.Unexpected += andNotCount(r.got, u.acked)
			v.Duplicated += r.duplicated
			v.OutOfOrder += r.outOfOrder
			v.Redelivered += r.redelivered
			v.Foreign += r.foreign
			r.mu.Unlock()
		}
		u.mu.Unlock()
	}
	v.Pass = v.Lost == 0 && v.Duplicated == 0 && v.OutOfOrder == 0 && v.Foreign == 0
	return v
}

// outstanding is how many (message, device) pairs were acknowledged to the
// publisher and not yet received: the run has drained when it is 0.
func outstanding(users []*user) uint64 {
	var missing uint64
	for _, u := range users {
		u.mu.Lock()
		for _, d := range u.devices {
			d.recv.mu.Lock()
			missing += andNotCount(u.acked, d.recv.got)
			d.recv.mu.Unlock()
		}
		u.mu.Unlock()
	}
	return missing
}

func popcount(b bitset) uint64 {
	var c int
	for _, w := range b {
		c += bits.OnesCount64(w)
	}
	return uint64(c)
}

// andNotCount is the size of a minus b.
func andNotCount(a, b bitset) uint64 {
	var c int
	for i, w := range a {
		if i < len(b) {
			w &^= b[i]
		}
		c += bits.OnesCount64(w)
	}
	return uint64(c)
}

// firstAndNot is the smallest number in a and not in b, or 0.
func firstAndNot(a, b bitset) uint64 {
	for i, w := range a {
		if i < len(b) {
			w &^= b[i]
		}
		if w != 0 {
			return uint64(i)*64 + uint64(bits.TrailingZeros64(w))
		}
	}
	return 0
}
