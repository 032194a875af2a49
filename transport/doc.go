// Package transport is the hub's HTTP API: for publishers and users (user
// registration, mailboxes and their tokens, publishing one message or a
// batch, message status, long-polling of receipts, connect tickets, devices,
// the health checks), and
// for devices (WebSocket, long-polling and Server-Sent Events over the hub's
// sessions, acks), plus the browser client hub.js and the demo page.
// docs/protocol.md describes the wire format it serves; keep the two in step.
//
// Every change of state is a command proposed through a Cluster (the raft
// log); every read goes to the local mailbox.Store. Nothing is validated by
// halves: a request is checked completely before anything is proposed, so a
// refused request changes no state. Where a lookup can tell a request will be
// refused (an unknown device, a revoked token), it is made first and costs no
// log entry.
//
// Errors reach the wire in one way only: Server.writeError, through the table
// in errors.go, which maps the sentinels of this package, of mailbox and of
// cluster to an HTTP status and a stable code. Anything outside the table is
// logged and answered 500 "internal", without its text.
//
// The publish path (POST /v1/push/{token}) is kept lean: headers are parsed
// by hand, the body is read into a pooled buffer, and the answer is encoded
// without reflection. The other endpoints use encoding/json.
//
// The device transports (ws.go, poll.go, sse.go) share devices.go: one way
// to open a session from a hello, one message encoding, one mapping of why a
// session ended to the wire. A session has no goroutine of its own: the
// hub wakes its transport, which takes what there is to send.
//
// A Server is safe for concurrent use. Its publisher and user endpoints keep
// no state between requests; its device sessions live until the device goes
// or Server.Close.
package transport
