package transport

import (
	"net/http"

	"github.com/notifyhub/hub/mailbox"
)

// propose runs cmd through the cluster. The error is the cluster's failure
// or the state machine's refusal; both go to writeError as they are.
func (s *Server) propose(r *http.Request, cmd *mailbox.Command) (mailbox.Result, error) {
	res, err := s.cluster.Propose(r.Context(), cmd)
	if err != nil {
		return res, err
	}
	return res, res.Err
}

type createUserResponse struct {
	UserID string `json:"user_id"`
	Secret string `json:"secret"`
}

// POST /v1/users
func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.OpenRegistration {
		present, admin := s.isAdmin(r)
		switch {
		case admin:
		case !present || s.cfg.AdminToken == "":
			s.writeError(w, r, errRegistrationShut)
			return
		default:
			s.writeError(w, r, s.authFailed(r, errUnauthorized))
			return
		}
	}
	id := mailbox.NewID()
	secret := mailbox.NewSecret(id)
	_, err := s.propose(r, &mailbox.Command{
		Kind:       mailbox.KindCreateUser,
		CreateUser: &mailbox.CreateUser{UserID: id, SecretHash: mailbox.Hash(secret)},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusCreated, createUserResponse{UserID: id, Secret: secret})
}

// DELETE /v1/users/me
func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_, err = s.propose(r, &mailbox.Command{
		Kind:       mailbox.KindDeleteUser,
		DeleteUser: &mailbox.DeleteUser{UserID: u.ID},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type ticketResponse struct {
	Ticket    string   `json:"ticket"`
	ExpiresAt wireTime `json:"expires_at"`
}

// POST /v1/tickets
func (s *Server) handleIssueTicket(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ticket := mailbox.NewToken()
	res, err := s.propose(r, &mailbox.Command{
		Kind: mailbox.KindIssueTicket,
		IssueTicket: &mailbox.IssueTicket{
			TicketHash: mailbox.Hash(ticket),
			UserID:     u.ID,
			Lifetime:   int64(s.cfg.TicketTTL),
		},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusCreated, ticketResponse{Ticket: ticket, ExpiresAt: wireTime(res.Ticket.ExpiresAt)})
}

type deviceJSON struct {
	DeviceID  string      `json:"device_id"`
	Cursor    mailbox.Seq `json:"cursor"`
	LastSeen  wireTime    `json:"last_seen"`
	CreatedAt wireTime    `json:"created_at"`
}

type devicesResponse struct {
	Devices []deviceJSON `json:"devices"`
	Next    string       `json:"next,omitempty"` // pass as after for the next page; absent on the last
}

// GET /v1/devices?limit=&after=: a page of the user's devices, by id.
func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after, limit, err := userPage(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	devs, err := s.store.UserDevices(u.ID, after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := devicesResponse{Devices: make([]deviceJSON, 0, len(devs))}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceJSON{
			DeviceID:  d.ID,
			Cursor:    d.Cursor,
			LastSeen:  wireTime(d.LastSeen),
			CreatedAt: wireTime(d.Created),
		})
	}
	if len(devs) == limit {
		out.Next = devs[len(devs)-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// DELETE /v1/devices/{id}
func (s *Server) handleDeleteDevice(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if !mailbox.ValidDeviceID(id) {
		s.writeError(w, r, mailbox.ErrDeviceUnknown)
		return
	}
	// Look first, so that a wrong id costs no log entry; a device that
	// connected through another node a moment ago may not be here yet.
	known, err := s.hasDevice(u.ID, id)
	if err == nil && !known && s.caughtUp(r) {
		known, err = s.hasDevice(u.ID, id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !known {
		s.writeError(w, r, mailbox.ErrDeviceUnknown)
		return
	}
	_, err = s.propose(r, &mailbox.Command{
		Kind:         mailbox.KindDeleteDevice,
		DeleteDevice: &mailbox.DeleteDevice{UserID: u.ID, DeviceID: id},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// hasDevice reports whether the user has the device in this node's store.
func (s *Server) hasDevice(userID, deviceID string) (bool, error) {
	devs, err := s.store.Devices(userID)
	if err != nil {
		return false, err
	}
	for _, d := range devs {
		if d.ID == deviceID {
			return true, nil
		}
	}
	return false, nil
}
