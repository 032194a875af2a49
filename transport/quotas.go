package transport

import (
	"net/http"
	"strconv"
)

// Quotas bound what one user may hold. The transport puts them in the
// commands it proposes (mailbox.CreateMailbox.MaxMailboxes,
// mailbox.TouchDevice.MaxDevices) and the state machine checks them when it
// applies, so every node refuses alike whatever its own flags say; nodes of
// one cluster should still run with the same ones, or which limit holds
// depends on the node a request came through.
type Quotas struct {
	MailboxesPerUser int // live (not revoked) mailboxes; default 1,000; -1: none
	DevicesPerUser   int // devices; default 100; -1: none
}

// The defaults of Quotas: far above what an app needs (an app makes one
// mailbox per user, a user has a few devices), low enough that one account
// cannot fill a node.
const (
	DefaultMailboxesPerUser = 1000
	DefaultDevicesPerUser   = 100
)

// quota is q's value for a command: the default for 0, none (0) for -1.
func quota(q, def int) int {
	switch {
	case q == 0:
		return def
	case q < 0:
		return 0
	}
	return q
}

func (s *Server) maxMailboxes() int {
	return quota(s.cfg.Quotas.MailboxesPerUser, DefaultMailboxesPerUser)
}
func (s *Server) maxDevices() int { return quota(s.cfg.Quotas.DevicesPerUser, DefaultDevicesPerUser) }

// Pages of GET /v1/mailboxes and GET /v1/devices: ?limit= (1 to 1000,
// default 100) and ?after= (the previous page's next).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// userPage reads the limit and after parameters of a user's listing.
func userPage(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	limit = defaultPageSize
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPageSize {
			return "", 0, withDetail(errBadPage, "limit must be 1 to 1000")
		}
	}
	return q.Get("after"), limit, nil
}
