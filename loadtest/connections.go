package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perWorker is the most connections one worker process opens: a process
// may have 20,000 open files here, and each connection is one.
const perWorker = 10_000

// workerJob is what a worker is told on its stdin, as one JSON line.
type workerJob struct {
	Node    string   `json:"node"`
	Source  string   `json:"source,omitempty"` // local IP to dial from ("" lets the kernel pick)
	Secrets []string `json:"secrets"`          // a user per entry
	Devices int      `json:"devices"`          // per user
	Timeout float64  `json:"timeout_s"`
}

// workerReport is a worker's one line of JSON on stdout, once every device
// is connected (or the timeout passed).
type workerReport struct {
	Connected int    `json:"connected"`
	Failed    string `json:"failed,omitempty"`
}

// Connections opens o.Conns idle WebSocket devices (default 1,000; 3 per
// user) from worker processes, each dialling from its own loopback address
// when the node is on loopback, and reports the node's RSS per connection
// (from its /metrics) and the connect rate. The devices stay connected, and
// answer pings, until the figures are read.
func Connections(ctx context.Context, o Options) (*Result, error) {
	if o.Devices <= 0 {
		o.Devices = 3
	}
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	o.Users = (o.Conns + o.Devices - 1) / o.Devices
	if err := o.withDefaults(1, 0); err != nil {
		return nil, err
	}
	if o.Workers <= 0 {
		o.Workers = (o.Conns + perWorker - 1) / perWorker
	}
	if o.Conns > perWorker*o.Workers {
		return nil, fmt.Errorf("connections: %d connections need at least %d workers", o.Conns, (o.Conns+perWorker-1)/perWorker)
	}
	spawn := o.Spawn
	if spawn == nil {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("connections: find this executable to start workers: %w", err)
		}
		spawn = func() *exec.Cmd { return exec.Command(self, "worker") }
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout+10*time.Minute)
	defer cancel()

	res := &Result{Scenario: "connections", Started: time.Now().UTC()}
	res.param("nodes", strings.Join(o.Nodes, " "))
	res.param("connections", o.Conns)
	res.param("devices per user", o.Devices)
	res.param("worker processes", o.Workers)
	c := newClient(o.Nodes, 64)
	secrets := make([]string, o.Users)
	for i := range secrets {
		u, err := c.newUser(ctx, o.AdminToken)
		if err != nil {
			return nil, fmt.Errorf("connections: user %d: %w", i, err)
		}
		secrets[i] = u.secret
	}
	before, err := readNodeMetrics(ctx, c, o.Nodes)
	if err != nil {
		return nil, fmt.Errorf("connections: %w", err)
	}

	start := time.Now()
	workers := make([]*exec.Cmd, 0, o.Workers)
	stdins := make([]io.Closer, 0, o.Workers)
	defer func() {
		for _, in := range stdins {
			in.Close() // the workers hang up and exit
		}
		for _, w := range workers {
			if w.Process != nil {
				done := make(chan struct{})
				go func() { w.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					w.Process.Kill()
					<-done
				}
			}
		}
	}()
	usersPer := (o.Users + o.Workers - 1) / o.Workers
	reports := make(chan workerReport, o.Workers)
	for i := range o.Workers {
		lo, hi := i*usersPer, min((i+1)*usersPer, o.Users)
		if lo >= hi {
			break
		}
		job := workerJob{
			Node:    o.Nodes[i%len(o.Nodes)],
			Source:  sourceAddr(o.Nodes[i%len(o.Nodes)], i),
			Secrets: secrets[lo:hi],
			Devices: o.Devices,
			Timeout: o.ConnectTimeout.Seconds(),
		}
		w := spawn()
		w.Stderr = o.Log
		in, err := w.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := w.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := w.Start(); err != nil {
			return nil, fmt.Errorf("connections: start worker: %w", err)
		}
		workers, stdins = append(workers, w), append(stdins, in)
		if err := json.NewEncoder(in).Encode(job); err != nil {
			return nil, fmt.Errorf("connections: tell worker %d: %w", i, err)
		}
		go func() {
			var r workerReport
			if err := json.NewDecoder(out).Decode(&r); err != nil {
				r.Failed = "worker: " + err.Error()
			}
			reports <- r
			io.Copy(io.Discard, out)
		}()
	}
	connected := 0
	var failures []string
	for range workers {
		select {
		case r := <-reports:
			connected += r.Connected
			if r.Failed != "" {
				failures = append(failures, r.Failed)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("connections: waiting for the workers: %w", ctx.Err())
		}
	}
	elapsed := time.Since(start)
	if len(failures) > 0 || connected < o.Conns {
		return nil, fmt.Errorf("connections: %d of %d connected: %s", connected, o.Conns, strings.Join(failures, "; "))
	}
	after, err := settledMetrics(ctx, c, o.Nodes)
	if err != nil {
		return nil, fmt.Errorf("connections: %w", err)
	}
	res.Seconds = time.Since(start).Seconds()
	n := float64(connected)
	res.figure("connected", n, "")
	res.figure("connect rate", n/elapsed.Seconds(), "/s")
	res.figure("server RSS before", float64(before.rss)/(1<<20), "MiB")
	res.figure("server RSS after", float64(after.rss)/(1<<20), "MiB")
	res.figure("server RSS per connection", float64(after.rss-before.rss)/n/1024, "KiB")
	res.figure("server heap in use per connection", float64(after.heap-before.heap)/n/1024, "KiB")
	res.figure("server sessions", float64(after.sessions), "")
	return res, nil
}

// sourceAddr is the local address worker i dials node from: 127.0.0.2 and
// up when the node is on loopback (each source address has its own
// ephemeral ports), else the kernel's choice.
func sourceAddr(node string, i int) string {
	u, err := url.Parse(node)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("127.0.%d.%d", 1+i/250, 2+i%250)
}

// nodeMetrics is what the connections scenario reads from the nodes'
// /metrics, summed over nodes.
type nodeMetrics struct {
	rss, heap, sessions int64
}

func readNodeMetrics(ctx context.Context, c *client, nodes []string) (nodeMetrics, error) {
	var m nodeMetrics
	for _, n := range nodes {
		req, err := http.NewRequestWithContext(ctx, "GET", n+"/metrics", nil)
		if err != nil {
			return m, err
		}
		res, err := c.http.Do(req)
		if err != nil {
			return m, fmt.Errorf("read %s/metrics: %w", n, err)
		}
		values, err := parseMetrics(res.Body, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "hub_sessions")
		res.Body.Close()
		if err != nil {
			return m, fmt.Errorf("read %s/metrics: %w", n, err)
		}
		m.rss += int64(values[0])
		m.heap += int64(values[1])
		m.sessions += int64(values[2])
	}
	return m, nil
}

// settledMetrics reads the metrics once a second until the RSS moves by
// less than 1% between two reads (at most 30 reads): the connect storm's
// garbage collected, what is left is the connections'.
func settledMetrics(ctx context.Context, c *client, nodes []string) (nodeMetrics, error) {
	last, err := readNodeMetrics(ctx, c, nodes)
	for i := 0; i < 30 && err == nil; i++ {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
		var m nodeMetrics
		if m, err = readNodeMetrics(ctx, c, nodes); err != nil {
			break
		}
		d := m.rss - last.rss
		last = m
		if max(d, -d)*100 < m.rss {
			break
		}
	}
	return last, err
}

// parseMetrics reads the unlabelled samples names from a Prometheus text
// exposition.
func parseMetrics(r io.Reader, names ...string) ([]float64, error) {
	out := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		for i, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", n, err)
				}
				out[i], found[i] = f, true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("no %s", names[i])
		}
	}
	return out, nil
}

// RunWorker is a connections worker: it reads a job from in, connects the
// job's devices (answering pings, taking whatever they are sent), writes one
// report line to out, and keeps the devices connected until in is closed.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer, log io.Writer) error {
	raiseOpenFiles()
	br := bufio.NewReader(in)
	var job workerJob
	if err := json.NewDecoder(br).Decode(&job); err != nil {
		return fmt.Errorf("worker: read job: %w", err)
	}
	f := &fleet{nodes: []string{job.Node}, client: newClient([]string{job.Node}, 64), rec: newRecorder(time.Now()), log: log,
		connecting: make(chan struct{}, 64)}
	if job.Source != "" {
		tr := f.client.http.Transport.(*http.Transport)
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(job.Source)}, Timeout: 30 * time.Second}
		tr.DialContext = d.DialContext
	}
	f.gate.init()
	for _, s := range job.Secrets {
		u := &user{secret: s}
		for j := range job.Devices {
			d := &device{fleet: f, user: u, id: "idle-" + strconv.Itoa(j), transport: WebSocket}
			u.devices = append(u.devices, d)
			f.devices = append(f.devices, d)
		}
		f.users = append(f.users, u)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.start(runCtx)
	defer f.close()
	var rep workerReport
	err := f.waitConnected(ctx, time.Duration(job.Timeout*float64(time.Second)))
	rep.Connected = int(f.connected.Load())
	if err != nil {
		rep.Failed = err.Error()
	}
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		return err
	}
	// Hold until the parent hangs up (or ctx ends; the reader of in then
	// ends with the process).
	go func() {
		io.Copy(io.Discard, br)
		cancel()
	}()
	<-runCtx.Done()
	return nil
}

// raiseOpenFiles lifts the soft limit on open files to the hard one.
func raiseOpenFiles() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
