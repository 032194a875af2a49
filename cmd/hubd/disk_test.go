package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/diskguard/diskguardtest"
)

// A full disk, on a small filesystem the test mounts: a real hubd keeps
// its data on a 192 MiB tmpfs with a 64 MiB reserve (floor 32 MiB).

const (
	diskSize    = 192 << 20
	diskReserve = 64 << 20
)

// until calls f until it returns true, failing t after a minute (a
// failsafe: each condition is reached within seconds).
func until(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after a minute", what)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, not a synchronisation
	}
}

func alive(p *proc) bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// pushOnce publishes data and returns the status, the error code and the
// Retry-After header.
func pushOnce(t *testing.T, p *proc, token, data string) (status int, code, retry, id string) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.url+"/v1/push/"+token, strings.NewReader(data))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		ID    string `json:"id"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"), body.ID
}

func TestFullDiskRefusesWritesAndRecovers(t *testing.T) {
	mnt := diskguardtest.SmallDisk(t, diskSize)
	data := filepath.Join(mnt, "data")
	args := []string{"--disk-reserve", fmt.Sprint(diskReserve)}
	p := startHubd(t, data, args...)
	u := register(t, p)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", p.url+"/v1/mailboxes", u.Secret, nil, `{"label":"disk"}`, &mb); s != http.StatusCreated {
		t.Fatalf("create mailbox: %d", s)
	}
	var acked []string // ids answered 201
	push := func(data string) (int, string, string) {
		s, code, retry, id := pushOnce(t, p, mb.Token, data)
		if s == http.StatusCreated {
			acked = append(acked, id)
		}
		return s, code, retry
	}
	for i := range 20 {
		if s, _, _ := push(fmt.Sprint("before ", i)); s != http.StatusCreated {
			t.Fatalf("publish before the disk filled: %d", s)
		}
	}

	// Below the reserve: publishes (single and batch), new users and new
	// mailboxes get 507 disk_full with Retry-After; /readyz says 503.
	remove := diskguardtest.FillTo(t, mnt, diskReserve-8<<20)
	var code, retry string
	until(t, "refusing publishes", func() bool {
		var s int
		s, code, retry = push("while filling")
		return s == http.StatusInsufficientStorage
	})
	if code != "disk_full" || retry == "" {
		t.Fatalf("507 with code %q, Retry-After %q", code, retry)
	}
	var e apiError
	if s := call(t, "POST", p.url+"/v1/push", "", nil, fmt.Sprintf(`{"messages":[{"token":%q,"data":"b"}]}`, mb.Token), &e); s != http.StatusInsufficientStorage || e.Error.Code != "disk_full" {
		t.Fatalf("batch on a full disk: %d %q", s, e.Error.Code)
	}
	if s := call(t, "POST", p.url+"/v1/users", "", nil, "", &e); s != http.StatusInsufficientStorage {
		t.Fatalf("register on a full disk: %d", s)
	}
	if s := call(t, "GET", p.url+"/readyz", "", nil, "", nil); s != http.StatusServiceUnavailable {
		t.Fatalf("/readyz on a full disk: %d", s)
	}
	// Reads still work: every acknowledged message's status, and a
	// device connecting (a ticket, a hello) catches up on all of them.
	checkAcked := func(p *proc) {
		t.Helper()
		for _, id := range acked {
			var st struct {
				ID string `json:"id"`
			}
			if s := call(t, "GET", p.url+"/v1/messages/"+id, mb.Token, nil, "", &st); s != http.StatusOK || st.ID != id {
				t.Fatalf("status of acknowledged %s: %d", id, s)
			}
		}
	}
	checkAcked(p)
	catchUp := func(p *proc, device string) {
		t.Helper()
		var tk struct {
			Ticket string `json:"ticket"`
		}
		if s := call(t, "POST", p.url+"/v1/tickets", u.Secret, nil, "", &tk); s != http.StatusCreated {
			t.Fatalf("ticket: %d", s)
		}
		var ans struct {
			Messages []struct {
				ID string `json:"id"`
			} `json:"messages"`
		}
		body := fmt.Sprintf(`{"hello":{"ticket":%q,"device":%q,"ack":0},"rid":1,"wait":0}`, tk.Ticket, device)
		if s := call(t, "POST", p.url+"/v1/poll", "", nil, body, &ans); s != http.StatusOK {
			t.Fatalf("device hello: %d", s)
		}
		got := map[string]bool{}
		for _, m := range ans.Messages {
			got[m.ID] = true
		}
		for _, id := range acked {
			if !got[id] {
				t.Fatalf("device %s caught up on %d messages, without acknowledged %s", device, len(ans.Messages), id)
			}
		}
	}
	catchUp(p, "tv")

	// Below the floor: still up, still refusing, still reading.
	removeMore := diskguardtest.FillTo(t, mnt, diskReserve/2-8<<20)
	if s, _, _ := push("below the floor"); s != http.StatusInsufficientStorage {
		t.Fatalf("publish below the floor: %d", s)
	}
	checkAcked(p)
	// And with not a byte left (the guard's last reading may still be of
	// a moment before): no SIGBUS in badger's memory-mapped files.
	removeAll := diskguardtest.FillTo(t, mnt, 1)
	if s, _, _ := push("nothing left"); s != http.StatusInsufficientStorage {
		t.Fatalf("publish on a full disk: %d", s)
	}
	checkAcked(p)
	if !alive(p) {
		t.Fatalf("hubd died on a full disk; stderr:\n%s", p.stderr.String())
	}
	removeAll()

	// Space is back: writes are accepted again, without a restart.
	removeMore()
	remove()
	until(t, "accepting publishes again", func() bool {
		s, _, _ := push("after")
		return s == http.StatusCreated
	})
	if s := call(t, "GET", p.url+"/readyz", "", nil, "", nil); s != http.StatusOK {
		t.Fatalf("/readyz after space came back: %d", s)
	}
	checkAcked(p)
	if !strings.Contains(p.stderr.String(), "disk nearly full") || !strings.Contains(p.stderr.String(), "disk has room again") {
		t.Errorf("the log does not say what happened:\n%s", p.stderr.String())
	}

	// A restart on a disk below the reserve comes up, serves reads and
	// refuses writes.
	p.stop()
	remove = diskguardtest.FillTo(t, mnt, diskReserve-8<<20)
	p = startHubd(t, data, args...)
	if s, code, _ := push("after a restart on a full disk"); s != http.StatusInsufficientStorage || code != "disk_full" {
		t.Fatalf("publish after a restart on a full disk: %d %s", s, code)
	}
	checkAcked(p)
	p.stop()

	// A restart below the floor waits, saying so, before it opens the
	// store; it goes on by itself once there is room.
	removeMore = diskguardtest.FillTo(t, mnt, diskReserve/2-8<<20)
	p, lines := launchHubd(t, data, args...)
	until(t, "saying it waits for space", func() bool {
		return strings.Contains(p.stderr.String(), "disk full: waiting for free space")
	})
	if !alive(p) {
		t.Fatalf("hubd exited on a full disk; stderr:\n%s", p.stderr.String())
	}
	removeMore()
	remove()
	p.waitReady(lines)
	checkAcked(p)
	until(t, "accepting publishes after the wait", func() bool {
		s, _, _ := push("after the wait")
		return s == http.StatusCreated
	})
	catchUp(p, "radio")
	p.stop()
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "1024": 1024, "64MiB": 64 << 20, "2 GiB": 2 << 30, "500mb": 500e6, "10KB": 10e3} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "12 parsecs", "99999999999999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
