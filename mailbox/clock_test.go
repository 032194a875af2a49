package mailbox

import (
	"errors"
	"testing"
	"time"
)

// applyStamped applies cmd stamped at, as a leader whose clock says at would.
func (m *machine) applyStamped(cmd *Command, at int64) Result {
	m.t.Helper()
	cmd.At = at
	m.index++
	res, ev, err := m.s.Apply(m.index, cmd)
	if err != nil {
		m.t.Fatalf("apply %v: %v", cmd.Kind, err)
	}
	m.events = append(m.events, ev...)
	return res
}

// TestOneBadStampMovesTheClockOneStep: one command stamped 24 h ahead (a
// leader whose clock jumped) moves the state machine's clock by
// MaxClockStep, not a day. Tickets issued afterwards by a leader with a
// correct clock still work (their lifetime counts from the state machine's
// clock, the one redeeming compares with), and a message's TTL is its TTL:
// it was a day too long, and every new ticket invalid for a day.
func TestOneBadStampMovesTheClockOneStep(t *testing.T) {
	m := &machine{t: t, s: func() *Store {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	step := int64(DefaultPolicy.MaxClockStep)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	real0 := m.now

	bad := m.applyStamped(&Command{Kind: KindPublish, Publish: &Publish{Items: []PublishItem{
		{ID: NewID(), TokenHash: Hash(tok), Data: "stamped a day ahead", TTL: 60},
	}}}, real0+int64(24*time.Hour)).Published[0]
	if bad.Err != nil {
		t.Fatal(bad.Err)
	}
	if got := m.s.Clock(); got != real0+step {
		t.Fatalf("clock after a stamp 24 h ahead: %v past real time, want %v", time.Duration(got-real0), DefaultPolicy.MaxClockStep)
	}
	if bad.Status.ExpiresAt-bad.Status.At != int64(60*time.Second) {
		t.Fatalf("TTL of the message stamped ahead: %v", time.Duration(bad.Status.ExpiresAt-bad.Status.At))
	}

	// The leader's clock is right again.
	m.advance(time.Second)
	ticket := NewToken()
	issued := m.must(&Command{Kind: KindIssueTicket, IssueTicket: &IssueTicket{
		TicketHash: Hash(ticket), UserID: alice, Lifetime: int64(time.Minute),
	}})
	if issued.Ticket.ExpiresAt != real0+step+int64(time.Minute) {
		t.Fatalf("ticket expires %v past real time", time.Duration(issued.Ticket.ExpiresAt-real0))
	}
	m.advance(5 * time.Second)
	if r := m.apply(&Command{Kind: KindRedeemTicket, RedeemTicket: &RedeemTicket{TicketHash: Hash(ticket)}}); r.Err != nil {
		t.Fatalf("a ticket issued after the bad stamp, redeemed 5 s later: %v", r.Err)
	}
	st := m.publishOK(tok, "right clock", 60)
	if st.ExpiresAt-st.At != int64(60*time.Second) || st.At-m.now > step || st.At < m.now {
		t.Fatalf("message after the bad stamp: at %v past real time, expires %v after", time.Duration(st.At-m.now), time.Duration(st.ExpiresAt-st.At))
	}
	// Once real time passes the step, stamps lead again.
	m.advance(DefaultPolicy.MaxClockStep)
	if st := m.publishOK(tok, "caught up", 60); st.At != m.now {
		t.Fatalf("message once real time passed the step: at %v from real time", time.Duration(st.At-m.now))
	}
	// A ticket outlives its lifetime on no clock.
	late := NewToken()
	m.must(&Command{Kind: KindIssueTicket, IssueTicket: &IssueTicket{TicketHash: Hash(late), UserID: alice, Lifetime: int64(time.Minute)}})
	m.advance(time.Minute)
	m.must(&Command{Kind: KindTick, Tick: &Tick{}}) // as the leader's loop does: a minute is two steps
	if r := m.apply(&Command{Kind: KindRedeemTicket, RedeemTicket: &RedeemTicket{TicketHash: Hash(late)}}); !errors.Is(r.Err, ErrTicketInvalid) {
		t.Fatalf("ticket redeemed after its lifetime: %v", r.Err)
	}
}

// TestTicksCatchTheClockUp: after an idle gap longer than a step (an
// outage), each command moves the clock one step; the Ticks the leader
// proposes bring it to real time, and never past it.
func TestTicksCatchTheClockUp(t *testing.T) {
	m := &machine{t: t, s: func() *Store {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	m.must(&Command{Kind: KindTick, Tick: &Tick{}})
	m.advance(10 * time.Minute)
	ticks := 0
	for m.s.Clock() < m.now {
		before := m.s.Clock()
		m.must(&Command{Kind: KindTick, Tick: &Tick{}})
		if d := m.s.Clock() - before; d <= 0 || d > int64(DefaultPolicy.MaxClockStep) {
			t.Fatalf("one tick moved the clock %v", time.Duration(d))
		}
		ticks++
	}
	if want := int(10 * time.Minute / DefaultPolicy.MaxClockStep); ticks != want {
		t.Fatalf("caught up in %d ticks, want %d", ticks, want)
	}
	if m.s.Clock() != m.now {
		t.Fatalf("clock past real time by %v", time.Duration(m.s.Clock()-m.now))
	}
}
