package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The device transports.
const (
	WebSocket = "ws"
	LongPoll  = "poll"
	SSE       = "sse"
)

// device is one client of a user. Its goroutine connects, resumes from the
// last seq it processed, takes messages, acks them, and reconnects (to the
// next node) whenever the connection ends, until the fleet stops it.
type device struct {
	fleet     *fleet
	user      *user
	id        string
	transport string
	node      int // index into the fleet's nodes of the next connection

	recv received
}

// wireMsg is a msg as every transport carries it; only what the checker
// reads.
type wireMsg struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
	Data string `json:"data"`
}

// handle checks and records a message, and its latency the first time the
// device sees it.
func (d *device) handle(m *wireMsg) {
	fresh, at := d.recv.take(m.Seq, m.Data)
	if fresh {
		d.fleet.rec.delivered(time.Now(), at)
	}
}

// run connects until ctx ends. Between connections it waits for the fleet's
// gate (closed while the scenario keeps devices offline) and backs off.
func (d *device) run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; {
		connCtx, cancel, err := d.fleet.gate.enter(ctx)
		if err != nil {
			return
		}
		base := d.fleet.nodes[d.node%len(d.fleet.nodes)]
		opened, err := d.connect(connCtx, base)
		dropped := connCtx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.fleet.disconnects.Add(1)
		if opened || dropped {
			attempt = 0
		} else {
			d.fleet.connectErrors.Add(1)
			d.node++ // this node may be gone: try the next
			attempt++
		}
		if err != nil && !dropped {
			d.fleet.logf("device %s/%s: %v", d.user.id, d.id, err)
		}
		// Full jitter over an exponential backoff, as hub.js does.
		wait := time.Duration(rand.Int64N(int64(50 * time.Millisecond << min(attempt, 5))))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// connect gets a ticket and runs one connection over the device's
// transport; opened says whether it got as far as the welcome.
func (d *device) connect(ctx context.Context, base string) (opened bool, err error) {
	// At most ConnectConcurrency devices are between their ticket and their
	// welcome at once.
	select {
	case d.fleet.connecting <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	var released bool
	release := func() {
		if !released {
			released = true
			<-d.fleet.connecting
		}
	}
	defer release()
	tk, err := d.fleet.client.ticket(ctx, base, d.user)
	if err != nil {
		return false, err
	}
	welcomed := func() {
		release()
		opened = true
		d.fleet.connected.Add(1)
	}
	defer func() {
		if opened {
			d.fleet.connected.Add(-1)
		}
	}()
	switch d.transport {
	case LongPoll:
		err = d.runPoll(ctx, base, tk, welcomed)
	case SSE:
		err = d.runSSE(ctx, base, tk, welcomed)
	default:
		err = d.runWS(ctx, base, tk, welcomed)
	}
	return opened, err
}

func (d *device) runWS(ctx context.Context, base, ticket string, welcomed func()) error {
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws",
		&websocket.DialOptions{HTTPClient: d.fleet.client.http})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	hello, _ := json.Marshal(map[string]any{"type": "hello", "ticket": ticket, "device": d.id, "ack": d.recv.resumeFrom()})
	if err := c.Write(ctx, websocket.MessageText, hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	var ack []byte
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var m wireMsg
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("frame %.80q: %w", b, err)
		}
		switch m.Type {
		case "welcome":
			welcomed()
		case "msg":
			d.handle(&m)
			ack = strconv.AppendUint(append(ack[:0], `{"type":"ack","seq":`...), m.Seq, 10)
			ack = append(ack, '}')
			if err := c.Write(ctx, websocket.MessageText, ack); err != nil {
				return err
			}
		case "ping":
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`)); err != nil {
				return err
			}
		}
	}
}

// pollWait is the long-poll hold the devices ask for.
const pollWait = 20

func (d *device) runPoll(ctx context.Context, base, ticket string, welcomed func()) error {
	type answer struct {
		Sid      string          `json:"sid"`
		Welcome  json.RawMessage `json:"welcome"`
		Messages []wireMsg       `json:"messages"`
	}
	rid := rand.Int64N(1<<40) + 1
	req := map[string]any{
		"hello": map[string]any{"ticket": ticket, "device": d.id, "ack": d.recv.resumeFrom()},
		"rid":   rid,
	}
	for {
		body, _ := json.Marshal(req)
		var a answer
		if err := d.fleet.client.call(ctx, "POST", base+"/v1/poll", http.Header{"Content-Type": {"application/json"}}, body, &a); err != nil {
			return err
		}
		if a.Welcome != nil {
			welcomed()
		}
		for i := range a.Messages {
			d.handle(&a.Messages[i])
		}
		rid++
		req = map[string]any{"sid": a.Sid, "rid": rid, "ack": d.recv.resumeFrom(), "wait": pollWait}
	}
}

func (d *device) runSSE(ctx context.Context, base, ticket string, welcomed func()) error {
	q := url.Values{"ticket": {ticket}, "device": {d.id}, "ack": {strconv.FormatUint(d.recv.resumeFrom(), 10)}}
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/sse?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	res, err := d.fleet.client.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("sse: HTTP %d", res.StatusCode)
	}
	// Acks go by POST /v1/ack from a goroutine of their own, the newest
	// seq at a time, so that reading never waits for them.
	acks := make(chan uint64, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ackCtx, stopAcks := context.WithCancel(ctx)
	defer stopAcks()
	var sid string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data := []byte(line[len("data: "):])
			switch event {
			case "welcome":
				var w struct{ Session string }
				if err := json.Unmarshal(data, &w); err != nil {
					return fmt.Errorf("sse welcome: %w", err)
				}
				sid = w.Session
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.ackLoop(ackCtx, base, sid, acks)
				}()
				welcomed()
			case "msg":
				var m wireMsg
				if err := json.Unmarshal(data, &m); err != nil {
					return fmt.Errorf("sse msg: %w", err)
				}
				d.handle(&m)
				select { // replace an ack not yet sent with this newer one
				case <-acks:
				default:
				}
				acks <- m.Seq
			case "error":
				return fmt.Errorf("sse: ended: %s", data)
			}
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("sse: stream ended")
}

// ackLoop sends the newest seq from acks until ctx ends.
func (d *device) ackLoop(ctx context.Context, base, sid string, acks <-chan uint64) {
	h := http.Header{"Content-Type": {"application/json"}}
	for {
		select {
		case <-ctx.Done():
			return
		case seq := <-acks:
			body := fmt.Appendf(nil, `{"sid":%q,"ack":%d}`, sid, seq)
			if err := d.fleet.client.call(ctx, "POST", base+"/v1/ack", h, body, nil); err != nil && ctx.Err() == nil {
				d.fleet.logf("device %s/%s: ack: %v", d.user.id, d.id, err)
			}
		}
	}
}
