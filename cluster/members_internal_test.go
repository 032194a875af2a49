package cluster

import (
	"errors"
	"fmt"
	"testing"
)

// TestConfigurationChangedIsRetryable: raft's refusal of a membership change
// whose configuration moved on (it has no sentinel) reads as
// ErrMembershipBusy, crosses between nodes as membership_busy, and is tried
// again a bounded number of times before it is given to the caller.
func TestConfigurationChangedIsRetryable(t *testing.T) {
	raw := fmt.Errorf("configuration changed since 7 (latest is 9)")
	err := raftErr(raw)
	if !errors.Is(err, ErrMembershipBusy) {
		t.Fatalf("raftErr(%q) = %v, want ErrMembershipBusy", raw, err)
	}
	if we := toWire(fmt.Errorf("cluster: join n3: %w", err)); we.Code != "membership_busy" || !errors.Is(we.err(), ErrMembershipBusy) {
		t.Errorf("on the wire: %+v", we)
	}

	n := &Node{}
	tries := 0
	err = n.changeMembership(func() error { tries++; return err })
	if !errors.Is(err, ErrMembershipBusy) || tries != membershipTries {
		t.Errorf("always changed: %v after %d tries, want ErrMembershipBusy after %d", err, tries, membershipTries)
	}
	tries = 0
	err = n.changeMembership(func() error {
		if tries++; tries < 3 {
			return raftErr(raw)
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("changed twice: %v after %d tries, want success after 3", err, tries)
	}
}
