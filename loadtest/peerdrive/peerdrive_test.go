package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// startHub serves a real node (raft, badger, hub) over HTTP on loopback.
func startHub(t *testing.T) string {
	t.Helper()
	var st struct{ *mailbox.Store }
	h := hub.New(hub.Config{}, &st)
	store, node := clustertest.Start(t, clustertest.WithApplied(h))
	st.Store = store
	h.Start(node)
	api := transport.New(transport.Config{OpenRegistration: true}, store, node, h)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		h.Close(ctx)
		api.Close(ctx)
		srv.Close()
	})
	return srv.URL
}

func drive(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*clustertest.Timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("peerdrive %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

var kv = regexp.MustCompile(`(\w+)=(-?[0-9.]+)`)

// fields is every key=number of the output's lines that start with prefix.
func fields(t *testing.T, out, prefix string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, f := range kv.FindAllStringSubmatch(line, -1) {
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				t.Fatalf("%s in %q: %v", f[0], line, err)
			}
			m[f[1]] = v
		}
	}
	if len(m) == 0 {
		t.Fatalf("no %q line in:\n%s", prefix, out)
	}
	return m
}

// A load run against a real node delivers every accepted message to every
// device, in seq order, has every device ack, and reports it in the lines
// loadtest/peers.sh reads.
func TestLoadDeliversAndAcksEverything(t *testing.T) {
	base := startHub(t)
	out := drive(t, "-mode", "load", "-base", base, "-pid", strconv.Itoa(os.Getpid()),
		"-users", "20", "-devices", "2", "-rate", "400", "-warmup", "200ms", "-duration", "1s", "-dialers", "8")
	pub := fields(t, out, "published_ok=")
	recv := fields(t, out, "received=")
	hubc := fields(t, out, "hub_counters")
	lat := fields(t, out, "latency_ms")
	win := fields(t, out, "window:")
	if pub["published_ok"] == 0 || pub["publish_errors"] != 0 || pub["request_errors"] != 0 {
		t.Fatalf("publishing failed:\n%s", out)
	}
	if recv["received"] != 2*pub["published_ok"] || recv["lost"] != 0 || recv["extra"] != 0 {
		t.Errorf("want every one of %v messages at both devices of its user:\n%s", pub["published_ok"], out)
	}
	if recv["seq_gaps"] != 0 || recv["dup_seqs"] != 0 || recv["disconnects"] != 0 || recv["server_error_frames"] != 0 || recv["ack_write_errors"] != 0 {
		t.Errorf("a device saw a gap, a repeat, a cut or a refused ack:\n%s", out)
	}
	if hubc["published"] != pub["published_ok"] || hubc["acks"] == 0 {
		t.Errorf("the hub's own counters disagree (published %v, acks %v):\n%s", hubc["published"], hubc["acks"], out)
	}
	if lat["samples"] == 0 || lat["samples"] > recv["received"] || win["delivered_msgs_s"] == 0 {
		t.Errorf("no latency measured inside the window:\n%s", out)
	}
}

// An idle run connects each step's devices and reads the server's memory
// after each step.
func TestIdleReportsEachStep(t *testing.T) {
	base := startHub(t)
	out := drive(t, "-mode", "idle", "-base", base, "-pid", strconv.Itoa(os.Getpid()),
		"-steps", "5,12", "-settle", "0s", "-dialers", "4")
	for _, row := range []string{"| 0 |", "| 5 |", "| 12 |"} {
		if !strings.Contains(out, "\n"+row) {
			t.Errorf("no %q row:\n%s", row, out)
		}
	}
	if !strings.HasPrefix(out, "provisioned 12 users and mailboxes") {
		t.Errorf("want the provisioning line first:\n%s", out)
	}
}

// Flags that would leave loopback or the run's bounds are refused before
// anything is sent.
func TestRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-base", "http://192.0.2.1:8080"}, "loopback only"},
		{[]string{"-base", "http://example.com"}, "loopback only"},
		{[]string{"-base", "ftp://127.0.0.1"}, "want http://"},
		{[]string{"-users", "0"}, "must be positive"},
		{[]string{"-users", "100000", "-devices", "2"}, "at most 100000"},
		{[]string{"-rate", "-1"}, "-rate"},
		{[]string{"-duration", "2h"}, "at most 1h"},
		{[]string{"-workers", "0"}, "must be positive"},
		{[]string{"-mode", "recover"}, "unknown -mode"},
		{[]string{"-mode", "idle", "-pid", "1", "-steps", "10,5"}, "bad -steps"},
		{[]string{"stray"}, "unexpected arguments"},
	} {
		var out, errOut bytes.Buffer
		// Nobody listens on port 1: a flag that got through fails on
		// connect, with another error.
		args := append([]string{"-base", "http://127.0.0.1:1", "-timeout", "5s"}, c.args...)
		err := run(context.Background(), args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q before refusing", c.args, out.String())
		}
	}
}
