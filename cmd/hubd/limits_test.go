package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to hub from the loopback address src.
func dialFrom(t *testing.T, src, hub string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", strings.TrimPrefix(hub, "http://"))
}

// TestSlowBodyFlood: 300 connections from 127.0.0.2 that send a publish's
// headers and then trickle its body, against a per-address cap of 50 and
// a 2 s body deadline, leave the publishes of 127.0.0.3 answered 201; every
// flooding connection is closed, by the cap at once or by the deadline.
// Before, 20,000 such connections exhausted the file table.
func TestSlowBodyFlood(t *testing.T) {
	p := startHubd(t, t.TempDir(), "--max-conns-per-addr", "50", "--body-timeout", "2s")
	u := register(t, p)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", p.url+"/v1/mailboxes", u.Secret, nil, `{"label":"app"}`, &mb); s != http.StatusCreated {
		t.Fatalf("mailbox: %d", s)
	}

	const flood = 300
	var wg sync.WaitGroup
	closed := make(chan string, flood)
	for range flood {
		c, err := dialFrom(t, "127.0.0.2", p.url)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second)) // failsafe only
			fmt.Fprintf(c, "POST /v1/push/%s HTTP/1.1\r\nHost: hub\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n", mb.Token)
			// Trickle a byte at a time until the server hangs up.
			buf := make([]byte, 512)
			go func() {
				for i := 0; i < 1000; i++ {
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond) // the trickle itself
				}
			}()
			var got []byte
			for {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					if err == io.EOF || strings.Contains(err.Error(), "reset") {
						closed <- string(got)
					} else {
						closed <- "not closed: " + err.Error()
					}
					return
				}
			}
		})
	}

	// Another address publishes meanwhile.
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 20 {
		res, err := client.Post(p.url+"/v1/push/"+mb.Token, "text/plain", strings.NewReader(fmt.Sprint("m", i)))
		if err != nil {
			t.Fatalf("publish %d from 127.0.0.3 during the flood: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("publish %d from 127.0.0.3 during the flood: %d", i, res.StatusCode)
		}
	}

	wg.Wait()
	close(closed)
	refused, cut := 0, 0
	for got := range closed {
		switch {
		case got == "":
			refused++ // closed by the cap, before any answer
		case strings.HasPrefix(got, "HTTP/1.1 408"):
			cut++ // the deadline: the body could not be read
		default:
			t.Errorf("flooding connection: %q", got)
		}
	}
	if refused < flood-50 || cut == 0 {
		t.Errorf("%d refused by the cap, %d cut by the deadline; want at least %d and some", refused, cut, flood-50)
	}
}

// TestHeaderLimit: a request header over --max-header-bytes is answered 431.
func TestHeaderLimit(t *testing.T) {
	p := startHubd(t, t.TempDir())
	c, err := dialFrom(t, "127.0.0.1", p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // failsafe only
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %d, want 431", res.StatusCode)
	}
	if s := call(t, "GET", p.url+"/healthz", "", nil, "", nil); s != http.StatusOK {
		t.Fatalf("healthz: %d", s)
	}
}
