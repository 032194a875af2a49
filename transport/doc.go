// Package transport is the hub's HTTP API for publishers and users: user
// registration, mailboxes and their tokens, publishing (one message or a
// batch), message status, connect tickets, devices, and the health checks.
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
// A Server is safe for concurrent use; it keeps no state between requests.
package transport
