package main

import (
	"errors"
	"flag"

	"github.com/notifyhub/hub/transport"
)

// quotaFlags are the flags of what one user may hold (transport.Quotas).
type quotaFlags struct {
	quotas transport.Quotas
}

func (f *quotaFlags) define(parsed func(flag.Value, string, string)) {
	f.quotas = transport.Quotas{MailboxesPerUser: transport.DefaultMailboxesPerUser, DevicesPerUser: transport.DefaultDevicesPerUser}
	parsed(intValue{&f.quotas.MailboxesPerUser}, "max-mailboxes-per-user", "live mailboxes one user may hold (403 quota_exceeded); -1 for no quota")
	parsed(intValue{&f.quotas.DevicesPerUser}, "max-devices-per-user", "devices one user may hold (4413 / 403 quota_exceeded); -1 for no quota")
}

func (f *quotaFlags) check() error {
	if f.quotas.MailboxesPerUser == 0 || f.quotas.MailboxesPerUser < -1 || f.quotas.DevicesPerUser == 0 || f.quotas.DevicesPerUser < -1 {
		return errors.New("--max-mailboxes-per-user and --max-devices-per-user must be positive, or -1 for no quota")
	}
	return nil
}
