package mailbox

// TicketByHash returns the ticket stored under a ticket's hash (see Hash),
// or ErrTicketInvalid when there is none: never issued, already redeemed,
// or expired and collected. It lets a node refuse a hello from its own
// state before proposing a redemption that could only fail.
func (s *Store) TicketByHash(hash []byte) (Ticket, error) {
	var t Ticket
	return t, s.get(ticketKey(hash), &t, ErrTicketInvalid)
}
