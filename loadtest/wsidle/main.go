// Command wsidle measures what an idle WebSocket device costs a hubd: it
// reads the server's RSS, opens N device sessions (hello, welcome, then
// nothing), reads the RSS again, and prints the difference per connection.
//
//	wsidle --url http://127.0.0.1:8080 --pid $(pgrep hubd) --conns 15000
//
// The server must have open registration. Connections go from this process
// to loopback; it needs N open files (the hub's process as well). It is
// bounded: it gives up after --timeout, and closes everything when done.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
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
	url := flag.String("url", "http://127.0.0.1:8080", "hubd base URL (loopback)")
	pid := flag.Int("pid", 0, "hubd's process id, to read its RSS from /proc")
	conns := flag.Int("conns", 1000, "idle WebSocket devices to open")
	perUser := flag.Int("devices-per-user", 3, "devices of each user")
	parallel := flag.Int("parallel", 64, "connections opened at once")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	hold := flag.Duration("hold", 0, "keep the connections open this long after measuring (to profile the server)")
	flag.Parse()
	if *pid == 0 {
		fmt.Fprintln(os.Stderr, "wsidle: --pid is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *url, *pid, *conns, *perUser, *parallel, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "wsidle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base string, pid, n, perUser, parallel int, hold time.Duration) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}}
	users := (n + perUser - 1) / perUser
	secrets := make([]string, users)
	for i := range secrets {
		var u struct{ Secret string }
		if err := postJSON(ctx, client, base+"/v1/users", "", &u); err != nil {
			return err
		}
		secrets[i] = u.Secret
	}
	before, err := rss(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	open := make([]*websocket.Conn, n)
	var opened atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/v1/ws"
	for i := range n {
		g.Go(func() error {
			var tk struct{ Ticket string }
			if err := postJSON(gctx, client, base+"/v1/tickets", secrets[i/perUser], &tk); err != nil {
				return err
			}
			c, _, err := websocket.Dial(gctx, wsURL, &websocket.DialOptions{HTTPClient: client})
			if err != nil {
				return fmt.Errorf("dial %d: %w", i, err)
			}
			open[i] = c
			hello := fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d%d"}`, tk.Ticket, i)
			if err := c.Write(gctx, websocket.MessageText, []byte(hello)); err != nil {
				return fmt.Errorf("hello %d: %w", i, err)
			}
			if _, b, err := c.Read(gctx); err != nil || !bytes.Contains(b, []byte(`"welcome"`)) {
				return fmt.Errorf("welcome %d: %s %v", i, b, err)
			}
			opened.Add(1)
			return nil
		})
	}
	err = g.Wait()
	took := time.Since(start)
	defer closeAll(open)
	if err != nil {
		return fmt.Errorf("after %d connections: %w", opened.Load(), err)
	}
	// Let the server settle: reads goroutines to their parked state, GC.
	time.Sleep(3 * time.Second)
	after, err := rss(pid)
	if err != nil {
		return err
	}
	per := float64(after-before) / float64(n)
	fmt.Printf("RESULT conns=%d users=%d rss_before_kib=%d rss_after_kib=%d rss_per_conn_kib=%.2f connect_seconds=%.1f connects_per_s=%.0f\n",
		n, users, before/1024, after/1024, per/1024, took.Seconds(), float64(n)/took.Seconds())
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	return nil
}

func closeAll(conns []*websocket.Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.CloseNow()
			}()
		}
	}
	wg.Wait()
}

func postJSON(ctx context.Context, client *http.Client, url, bearer string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, nil)
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST %s: %s", url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// rss reads a process's resident set size, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
