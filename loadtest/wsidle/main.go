// Command wsidle measures what an idle WebSocket device costs a hubd: it
// reads the server's memory, opens N device sessions (hello, welcome, then
// only the answers to the hub's pings, as hub.js gives them), reads the
// memory again, and prints the difference per connection.
//
//	wsidle --url http://127.0.0.1:8080 --pid $(pgrep hubd) --conns 15000
//	wsidle --url https://127.0.0.1:8443 --ca ca.pem ...   # wss, trusting ca.pem
//
// Every device dials from this host's one address, so hubd must allow that
// many connections per address (hubd --max-conns-per-addr 20000; the
// default is 1,000).
//
// Both readings are taken once the server has settled: the garbage of what
// came before (registering the users, the connect storm) is the Go
// runtime's to collect and return to the system, and an idle server runs a
// GC only every two minutes. A reading waits until the server has finished
// two GCs since the phase ended (the runtime returns memory down to what the
// heap held at the previous GC, so it takes the second one to let go of the
// storm's garbage) and its RSS has stopped moving; the GC count comes from
// hubd's GET /metrics. Without /metrics it waits two forced-GC periods
// instead. Each wait is bounded by --settle; a reading that did not settle
// says so.
//
// With --msgs, every user's mailbox then gets that many messages, which
// every device receives and acks before the second reading: a device that
// was once busy must cost no more than one that never was.
//
// The server must have open registration. Connections go from this process
// to loopback; it needs N open files (the hub's process as well). It is
// bounded: it gives up after --timeout, and closes everything when done.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

func main() {
	var o options
	flag.StringVar(&o.base, "url", "http://127.0.0.1:8080", "hubd base URL (loopback)")
	flag.IntVar(&o.pid, "pid", 0, "hubd's process id, to read its RSS from /proc")
	flag.IntVar(&o.conns, "conns", 1000, "idle WebSocket devices to open")
	flag.IntVar(&o.perUser, "devices-per-user", 3, "devices of each user")
	flag.IntVar(&o.parallel, "parallel", 64, "requests and connections made at once")
	flag.IntVar(&o.msgs, "msgs", 0, "messages published to each user (and acked by every device) before the second reading")
	flag.DurationVar(&o.settle, "settle", 6*time.Minute, "longest wait for the server's memory to settle, per reading")
	flag.DurationVar(&o.hold, "hold", 0, "keep the connections open (answering pings) this long after measuring, to profile the server")
	flag.BoolVar(&o.residual, "residual", false, "then close the connections, let the server settle again and report what they left behind")
	flag.StringVar(&o.caFile, "ca", "", "PEM file of the CA to trust for an https --url (the devices then use wss)")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if o.pid == 0 {
		fmt.Fprintln(os.Stderr, "wsidle: --pid is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "wsidle:", err)
		os.Exit(1)
	}
}

type options struct {
	base                           string
	pid                            int
	conns, perUser, parallel, msgs int
	settle, hold                   time.Duration
	residual                       bool
	caFile                         string
}

// user is one registered user and, with --msgs, its mailbox's token.
type user struct{ secret, token string }

func run(ctx context.Context, o options) error {
	tr := &http.Transport{MaxIdleConnsPerHost: o.parallel}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no certificate", o.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool} // HTTP/1.1, as a browser's WebSocket
	}
	client := &http.Client{Transport: tr}
	users := make([]user, (o.conns+o.perUser-1)/o.perUser)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel)
	for i := range users {
		g.Go(func() error {
			var u struct{ Secret string }
			if err := post(gctx, client, o.base+"/v1/users", "", "", &u); err != nil {
				return err
			}
			users[i].secret = u.Secret
			if o.msgs == 0 {
				return nil
			}
			var mb struct{ Token string }
			if err := post(gctx, client, o.base+"/v1/mailboxes", u.Secret, `{"label":"wsidle"}`, &mb); err != nil {
				return err
			}
			users[i].token = mb.Token
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("register users: %w", err)
	}
	client.CloseIdleConnections() // an idle keep-alive connection is not what is measured
	before, settledBefore := settle(ctx, client, o, "before")

	devs := make([]*device, o.conns)
	defer closeAll(devs)
	start := time.Now()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(o.parallel)
	for i := range devs {
		g.Go(func() error {
			d, err := connect(gctx, client, o.base, users[i/o.perUser].secret, i)
			devs[i] = d
			return err
		})
	}
	err := g.Wait()
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	client.CloseIdleConnections()

	if o.msgs > 0 {
		if err := publishAndAck(ctx, client, o, users, devs); err != nil {
			return err
		}
		client.CloseIdleConnections()
	}

	after, settledAfter := settle(ctx, client, o, "after")
	dead := 0
	for _, d := range devs {
		if d.dead() {
			dead++
		}
	}
	if dead > 0 {
		return fmt.Errorf("%d of %d devices lost their connection before the reading", dead, o.conns)
	}
	fmt.Printf("RESULT conns=%d users=%d msgs=%d settled=%t rss_before_kib=%d rss_after_kib=%d %s connect_seconds=%.1f connects_per_s=%.0f\n",
		o.conns, len(users), o.msgs, settledBefore && settledAfter, before.rss/1024, after.rss/1024,
		perConn(before, after, o.conns), took.Seconds(), float64(o.conns)/took.Seconds())

	select {
	case <-time.After(o.hold):
	case <-ctx.Done():
	}
	if !o.residual {
		return nil
	}
	// What the devices left behind once gone: their state in the store and
	// the raft log, and the heap's fragments.
	closeAll(devs)
	closed, settledClosed := settle(ctx, client, o, "closed")
	fmt.Printf("RESIDUAL settled=%t rss_closed_kib=%d left_%s\n", settledClosed, closed.rss/1024, perConn(before, closed, o.conns))
	fmt.Printf("CONNECTIONS_ONLY %s\n", perConn(closed, after, o.conns))
	return nil
}

// perConn formats what grew from a to b, per connection.
func perConn(a, b reading, n int) string {
	per := func(x, y int64) float64 { return float64(y-x) / float64(n) / 1024 }
	s := fmt.Sprintf("rss_per_conn_kib=%.2f anon_per_conn_kib=%.2f file_per_conn_kib=%.2f",
		per(a.rss, b.rss), per(a.anon, b.anon), per(a.file, b.file))
	if a.metrics && b.metrics {
		s += fmt.Sprintf(" heap_inuse_per_conn_kib=%.2f heap_alloc_per_conn_kib=%.2f stack_per_conn_kib=%.2f goroutines_per_conn=%.2f gcs=%d",
			per(a.heapInuse, b.heapInuse), per(a.heapAlloc, b.heapAlloc),
			per(a.stack, b.stack), float64(b.goroutines-a.goroutines)/float64(n), b.gcs)
	}
	return s
}

// reading is the server's memory at one moment.
type reading struct {
	rss, anon, file int64 // VmRSS, RssAnon, RssFile

	metrics              bool // the fields below were read from GET /metrics
	heapInuse, heapAlloc int64
	stack                int64
	goroutines           int64
	gcs                  int64 // GC cycles completed
}

// settle waits until the server has finished two GCs since now and its RSS
// has moved less than 0.5% over 15 seconds, or --settle has passed, and
// returns the reading and whether it settled.
func settle(ctx context.Context, client *http.Client, o options, phase string) (reading, bool) {
	const (
		every  = 5 * time.Second
		steady = 15 * time.Second
		// GET /metrics makes garbage on the server (it is a few hundred
		// KiB), so it is read less often than the RSS, and at the end.
		metricsEvery = 3
		// forcedGC is the Go runtime's: a program that has not collected for
		// two minutes gets a GC. Without /metrics, two of them are waited for.
		forcedGC = 2 * time.Minute
	)
	start := time.Now()
	first, err := read(ctx, client, o, true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wsidle: %s: %v\n", phase, err)
		return first, false
	}
	var history []reading
	last := first
	for i := 1; ; i++ {
		history = append(history, last)
		gcsDone := last.gcs-first.gcs >= 2
		if !first.metrics {
			gcsDone = time.Since(start) > 2*forcedGC+every
		}
		settled := false
		if back := int(steady / every); gcsDone && len(history) > back {
			old := history[len(history)-1-back].rss
			d := last.rss - old
			settled = d < 0 && -d < old/200 || d >= 0 && d < old/200
		}
		if settled || time.Since(start) > o.settle {
			final, err := read(ctx, client, o, true)
			if err != nil {
				fmt.Fprintf(os.Stderr, "wsidle: %s: %v\n", phase, err)
				return last, false
			}
			word := "settled"
			if !settled {
				word = "NOT settled"
			}
			fmt.Fprintf(os.Stderr, "wsidle: %s: %s after %s: rss %d KiB\n", phase, word, time.Since(start).Round(time.Second), final.rss/1024)
			return final, settled
		}
		select {
		case <-ctx.Done():
			return last, false
		case <-time.After(every):
		}
		r, err := read(ctx, client, o, i%metricsEvery == 0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "wsidle: %s: %v\n", phase, err)
			return last, false
		}
		if !r.metrics { // the figures of the last reading that had them
			r.metrics, r.heapInuse, r.heapAlloc, r.stack, r.goroutines, r.gcs = last.metrics, last.heapInuse, last.heapAlloc, last.stack, last.goroutines, last.gcs
		}
		last = r
		fmt.Fprintf(os.Stderr, "wsidle: %s: %3.0fs rss %d KiB, gcs %d, heap in use %d KiB\n",
			phase, time.Since(start).Seconds(), r.rss/1024, r.gcs-first.gcs, r.heapInuse/1024)
	}
}

// read takes a reading: RSS from /proc and, with metrics, the Go runtime's
// figures from GET /metrics if the server has it.
func read(ctx context.Context, client *http.Client, o options, metrics bool) (reading, error) {
	var r reading
	st, err := os.ReadFile("/proc/" + strconv.Itoa(o.pid) + "/status")
	if err != nil {
		return r, err
	}
	for _, f := range []struct {
		name string
		p    *int64
	}{{"VmRSS:", &r.rss}, {"RssAnon:", &r.anon}, {"RssFile:", &r.file}} {
		if *f.p, err = procField(st, f.name); err != nil {
			return r, err
		}
	}
	if !metrics {
		return r, nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", o.base+"/metrics", nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("Accept-Encoding", "identity") // a gzip writer is 1.5 MiB of garbage
	res, err := client.Do(req)
	if err != nil {
		return r, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, res.Body)
		return r, nil
	}
	want := map[string]*int64{
		"go_memstats_heap_inuse_bytes":  &r.heapInuse,
		"go_memstats_heap_alloc_bytes":  &r.heapAlloc,
		"go_memstats_stack_inuse_bytes": &r.stack,
		"go_goroutines":                 &r.goroutines,
		"go_gc_duration_seconds_count":  &r.gcs,
	}
	found := 0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return r, fmt.Errorf("metrics: %s: %w", name, err)
			}
			*p = int64(v)
			found++
		}
	}
	r.metrics = found == len(want)
	return r, sc.Err()
}

// procField reads a "Name: 123 kB" line of /proc/<pid>/status, in bytes.
func procField(status []byte, name string) (int64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", name)
}

// device is one connected WebSocket device. Its goroutine answers pings and
// acks messages, as hub.js does, until the connection ends.
type device struct {
	c        *websocket.Conn
	received atomic.Int64 // messages
	done     chan struct{}
}

func (d *device) dead() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func connect(ctx context.Context, client *http.Client, base, secret string, i int) (*device, error) {
	var tk struct{ Ticket string }
	if err := post(ctx, client, base+"/v1/tickets", secret, "", &tk); err != nil {
		return nil, err
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return nil, fmt.Errorf("dial %d: %w", i, err)
	}
	hello := fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d%d"}`, tk.Ticket, i)
	if err := c.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("hello %d: %w", i, err)
	}
	if _, b, err := c.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"welcome"`)) {
		c.CloseNow()
		return nil, fmt.Errorf("welcome %d: %s %v", i, b, err)
	}
	d := &device{c: c, done: make(chan struct{})}
	go d.run()
	return d, nil
}

func (d *device) run() {
	defer close(d.done)
	ctx := context.Background() // the connection's end (closeAll) stops it
	for {
		_, b, err := d.c.Read(ctx)
		if err != nil {
			return
		}
		var f struct {
			Type string
			Seq  int64
		}
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		var answer string
		switch f.Type {
		case "ping":
			answer = `{"type":"pong"}`
		case "msg":
			d.received.Add(1)
			answer = `{"type":"ack","seq":` + strconv.FormatInt(f.Seq, 10) + `}`
		default:
			continue
		}
		if d.c.Write(ctx, websocket.MessageText, []byte(answer)) != nil {
			return
		}
	}
}

// publishAndAck publishes o.msgs messages to every user and waits until
// every device has received (and acked) them all.
func publishAndAck(ctx context.Context, client *http.Client, o options, users []user, devs []*device) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel)
	for _, u := range users {
		for k := range o.msgs {
			g.Go(func() error {
				return post(gctx, client, o.base+"/v1/push/"+u.token, "", "wsidle "+strconv.Itoa(k), nil)
			})
		}
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		missing := 0
		for _, d := range devs {
			if d.received.Load() < int64(o.msgs) {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d devices did not get all %d messages", missing, o.msgs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// closeAll closes the devices' connections (with a close handshake, as a
// browser closing a tab does) and waits for their goroutines.
func closeAll(devs []*device) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, d := range devs {
		if d != nil {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				d.c.Close(websocket.StatusGoingAway, "")
				d.c.CloseNow()
				<-d.done
			})
		}
	}
	wg.Wait()
}

// post POSTs body (labelled JSON if it is an object) and decodes a 201's JSON answer into v (unless v is nil).
func post(ctx context.Context, client *http.Client, url, bearer, body string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("POST %s: %s %s", url, res.Status, b)
	}
	if v == nil {
		_, err := io.Copy(io.Discard, res.Body)
		return err
	}
	return json.NewDecoder(res.Body).Decode(v)
}
