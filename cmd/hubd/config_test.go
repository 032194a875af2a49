package main

import (
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func TestConfigDefaultsFlagsAndEnvironment(t *testing.T) {
	c, err := parseConfig(nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != "./data" || c.listen != "127.0.0.1:8080" || c.pollWaitMax != time.Minute || c.pollInactivity != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	env := map[string]string{"HUB_POLL_WAIT_MAX": "30s", "HUB_POLL_INACTIVITY": "2m"}
	c, err = parseConfig([]string{"--poll-inactivity", "90s"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	// The variable beats the default; the flag beats the variable.
	if c.pollWaitMax != 30*time.Second || c.pollInactivity != 90*time.Second {
		t.Fatalf("poll wait max %s, inactivity %s", c.pollWaitMax, c.pollInactivity)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--poll-wait-max", "0s"},
		{"--poll-wait-max", "1500ms"},
		{"--poll-inactivity", "10ms"},
		{"--ping-interval", "0s"},
		{"--session-queue", "0"},
		{"--payload-limit", "-1"},
		{"--default-ttl", "48h", "--max-ttl", "24h"},
		{"stray"},
	} {
		if _, err := parseConfig(args, noEnv); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	if _, err := parseConfig(nil, func(k string) (string, bool) { return "soon", k == "HUB_POLL_WAIT_MAX" }); err == nil {
		t.Error("HUB_POLL_WAIT_MAX=soon: accepted")
	}
}
