// Package hub is the registry of device sessions connected to this node and
// the fan-out of applied messages to them.
//
// The state machine (package mailbox) applies every committed entry; the
// cluster hands the resulting events to Hub.Applied on raft's FSM goroutine.
// For a published message the hub appends it to the send queue of each
// session of that user connected here, and wakes the session's transport.
// No node forwards messages to another: each delivers what its own log
// applied.
//
// # Sessions
//
// A Session is one connected device: a WebSocket, a long-poll session or an
// event stream. It starts at the seq its device has acknowledged and reads
// what it missed from the store, then takes live messages from its queue,
// without a gap or a duplicate: it joins the registry before it reads, so a
// message applied after the read is in its queue, and everything at or below
// the last seq it handed out is dropped.
//
// The queue is bounded. A session whose transport does not drain it (a slow
// or stuck device) ends with ErrTooSlow; it never blocks the apply loop or the
// other sessions. While a session is still catching up from the store its
// queue may overflow without harm: what was dropped is read from the store.
//
// A session has no goroutine of its own. Its transport is woken through a
// callback when there is something to take, and takes it with Take from
// whatever goroutine it likes; a WebSocket starts a writer only then.
//
// # Acks
//
// Sessions pass the device's cumulative acks to the hub, which proposes them
// in batches (one mailbox.Acks command for every ack that arrived while the
// previous batch was being committed), one batch in flight at a time.
package hub
