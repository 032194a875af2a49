package main

import "testing"

func TestShortReason(t *testing.T) {
	for in, want := range map[string]string{
		"cluster: http://127.0.0.1:8082 is unreachable: connect: connection refused":             "connection refused",
		"its API address is not known yet":                                                       "its API address is not known yet",
		"cluster: /internal/v1/status answered 502: a very long body from some proxy in between": "a very long body from some prox…",
		"": "no answer",
	} {
		if got := shortReason(in); got != want {
			t.Errorf("shortReason(%q) = %q, want %q", in, got, want)
		}
	}
}
