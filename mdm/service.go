package mdm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/micromdm/plist"
)

// DefaultMaxBodyBytes caps check-in and command-response bodies.
const DefaultMaxBodyBytes = 2 << 20

// ErrNotAdmitted refuses a device at Authenticate (see Service.Admit).
var ErrNotAdmitted = errors.New("mdm: device not admitted")

// An Event tells an embedder what a device did.
type Event struct {
	Type         string // "checkin" or "result"
	EnrollmentID string
	MessageType  string  // for a check-in
	Result       *Result // for a result
	// Drained, for a result, says the device was sent nothing after it:
	// its queue held nothing more it could be sent then.
	Drained    bool
	Enrollment *Enrollment
}

// An EventHandler receives events after they are stored. It must not block
// for long: it runs in the device's request.
type EventHandler interface {
	HandleEvent(ctx context.Context, e *Event)
}

// A DeclarativeManagementHandler answers DeclarativeManagement check-ins
// (the device's requests for declarations and its status reports).
type DeclarativeManagementHandler interface {
	DeclarativeManagement(ctx context.Context, e *Enrollment, m *DeclarativeManagement) ([]byte, error)
}

// A Service implements the check-in and command endpoints of the MDM
// protocol over a Store. Its handlers authenticate every request with
// Auth, bind the identity certificate to the enrollment, and answer
// refusals with 400 or 403, never 401 (which can make a device unenroll).
type Service struct {
	Store Store
	Auth  *Authenticator
	// RenewedFrom returns the fingerprint of the certificate that the
	// given one renewed by SCEP, or "" — so a renewed identity rebinds.
	RenewedFrom func(ctx context.Context, fingerprint string) (string, error)
	// Admit, when set, decides on each Authenticate, before anything is
	// stored, whether the device may enrol; an error wrapping
	// ErrNotAdmitted refuses it with 403. It is where a pre-enrolled-only
	// restriction is enforced.
	Admit  func(ctx context.Context, m *Authenticate, certFingerprint string) error
	Events EventHandler                 // optional
	DM     DeclarativeManagementHandler // optional
	Logger *slog.Logger                 // slog.Default() when nil
	// MaxBodyBytes caps request bodies; DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	Now          func() time.Time
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// A requestError is a refusal with its HTTP status.
type requestError struct {
	status int
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

func refuse(status int, err error) error { return &requestError{status, err} }

func refusef(status int, format string, args ...any) error {
	return &requestError{status, fmt.Errorf(format, args...)}
}

// statusOf maps an error to the HTTP status a device gets.
func statusOf(err error) int {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.status
	case errors.Is(err, ErrNoIdentity), errors.Is(err, ErrBadSignature):
		return http.StatusBadRequest
	case errors.Is(err, ErrUntrustedCert), errors.Is(err, ErrRevokedCert), errors.Is(err, ErrCertNotAllowed),
		errors.Is(err, ErrNotAdmitted):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// ServeHTTP answers both check-in messages and command responses, told
// apart by their keys (MessageType or Status), so CheckInURL and ServerURL
// may be the same URL.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out, err := s.serve(r)
	if err != nil {
		code := statusOf(err)
		level := slog.LevelWarn
		if code >= 500 {
			level = slog.LevelError
		}
		s.log().Log(r.Context(), level, "mdm: request refused", "status", code, "err", err, "remote", r.RemoteAddr)
		if code == http.StatusGone {
			w.WriteHeader(code)
			return
		}
		http.Error(w, err.Error(), code)
		return
	}
	if len(out) > 0 {
		w.Header().Set("Content-Type", "application/xml")
	}
	w.Write(out)
}

func (s *Service) serve(r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return nil, refusef(http.StatusMethodNotAllowed, "mdm: method %s", r.Method)
	}
	limit := s.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, refusef(http.StatusBadRequest, "mdm: read body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, refusef(http.StatusRequestEntityTooLarge, "mdm: body larger than %d bytes", limit)
	}
	cert, err := s.Auth.Identify(r, body)
	if err != nil {
		return nil, err
	}
	fp := CertFingerprint(cert)
	// One decode serves the hot path (Idle and results); a check-in is
	// decoded again into its own type.
	var head struct {
		MessageType string
		CommandResult
	}
	if err := plist.Unmarshal(body, &head); err != nil {
		return nil, refusef(http.StatusBadRequest, "mdm: body is not a plist dictionary: %v", err)
	}
	if head.MessageType != "" {
		return s.checkin(r.Context(), body, fp)
	}
	resp, err := newResponse(body, head.CommandResult, "")
	if err != nil {
		return nil, refuse(http.StatusBadRequest, err)
	}
	return s.command(r.Context(), resp, fp)
}

// channel holds the keys that name the enrollment a request is for.
type channel struct {
	UDID, EnrollmentID, UserID, EnrollmentUserID string
}

func (c *channel) user() string {
	if c.UserID != "" {
		return c.UserID
	}
	return c.EnrollmentUserID
}

// ids returns the enrollment ID of the channel and of its device.
func (c *channel) ids() (id, device string, err error) {
	device = c.UDID
	if device == "" {
		device = c.EnrollmentID
	}
	if device == "" {
		return "", "", refusef(http.StatusBadRequest, "mdm: message has neither UDID nor EnrollmentID")
	}
	if u := c.user(); u != "" {
		return device + ":" + u, device, nil
	}
	return device, device, nil
}

// authorize checks that the certificate fp may speak for the device. A
// device without a binding gets fp bound; a renewal of the bound
// certificate rebinds.
func (s *Service) authorize(ctx context.Context, device, fp string, authenticate bool) error {
	bound, err := s.Store.EnrollmentForCert(ctx, fp)
	switch {
	case err == nil && bound == device:
		return nil
	case err == nil:
		return fmt.Errorf("%w: certificate %s belongs to %s, not %s", ErrCertNotAllowed, fp[:16], bound, device)
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if authenticate {
		return nil // Authenticated binds it
	}
	e, err := s.Store.Enrollment(ctx, device)
	if errors.Is(err, ErrNotFound) {
		return refusef(http.StatusForbidden, "mdm: device %s has not sent Authenticate", device)
	}
	if err != nil {
		return err
	}
	if e.CertFingerprint != "" && s.RenewedFrom != nil {
		prev, err := s.RenewedFrom(ctx, fp)
		if err != nil {
			return err
		}
		if prev != e.CertFingerprint {
			return fmt.Errorf("%w: %s is bound to another certificate", ErrCertNotAllowed, device)
		}
		s.log().Info("mdm: renewed identity rebound", "enrollment", device, "cert", fp, "previous", prev)
	} else if e.CertFingerprint != "" {
		return fmt.Errorf("%w: %s is bound to another certificate", ErrCertNotAllowed, device)
	}
	return s.Store.BindCert(ctx, device, fp)
}

func (s *Service) checkin(ctx context.Context, body []byte, fp string) ([]byte, error) {
	msg, err := DecodeCheckin(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, err)
	}
	// Every check-in names its channel with the same keys, whether or not
	// the schema lists them for that message type.
	var ch channel
	if err := plist.Unmarshal(body, &ch); err != nil {
		return nil, refuse(http.StatusBadRequest, err)
	}
	id, device, err := ch.ids()
	if err != nil {
		return nil, err
	}
	_, authenticate := msg.(*Authenticate)
	if authenticate && id != device {
		return nil, refusef(http.StatusBadRequest, "mdm: Authenticate on a user channel")
	}
	if err := s.authorize(ctx, device, fp, authenticate); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	var out []byte
	switch m := msg.(type) {
	case *Authenticate:
		if s.Admit != nil {
			if err := s.Admit(ctx, m, fp); err != nil {
				return nil, err
			}
		}
		err = s.Store.Authenticated(ctx, &Enrollment{
			ID: id, DeviceID: device, SerialNumber: m.SerialNumber, Model: m.Model, ModelName: m.ModelName,
			DeviceName: m.DeviceName, OSVersion: m.OSVersion, BuildVersion: m.BuildVersion, ProductName: m.ProductName,
			IMEI: m.IMEI, MEID: m.MEID, Topic: m.Topic, CertFingerprint: fp,
			CreatedAt: now, AuthenticAt: now, LastSeenAt: now,
		})
	case *TokenUpdate:
		err = s.Store.TokenUpdated(ctx, &Enrollment{
			ID: id, DeviceID: device, UserID: ch.user(),
			Topic: m.Topic, PushMagic: m.PushMagic, Token: m.Token, UnlockToken: m.UnlockToken,
			// On a user channel the key means a Shared iPad user's setup,
			// which this service does not track.
			AwaitingConfiguration: id == device && m.AwaitingConfiguration != nil && *m.AwaitingConfiguration,
			CreatedAt:             now, TokenUpdateAt: now, LastSeenAt: now,
		})
	case *CheckOut:
		err = s.Store.Disable(ctx, id)
	case *SetBootstrapToken:
		err = s.Store.Update(ctx, id, func(e *Enrollment) error { e.BootstrapToken = m.BootstrapToken; return nil })
	case *GetBootstrapToken:
		e, err := s.Store.Enrollment(ctx, id)
		if err != nil {
			return nil, err
		}
		out, err = plist.Marshal(&GetBootstrapTokenResponse{BootstrapToken: e.BootstrapToken})
		if err != nil {
			return nil, err
		}
	case *DeclarativeManagement:
		if s.DM == nil {
			return nil, refusef(http.StatusNotImplemented, "mdm: no declarative management handler")
		}
		e, err := s.Store.Enrollment(ctx, id)
		if err != nil {
			return nil, err
		}
		if out, err = s.DM.DeclarativeManagement(ctx, e, m); err != nil {
			return nil, err
		}
	case *UserAuthenticate:
		// Declining user authentication: a 410 tells the device to carry on
		// without it.
		return nil, refusef(http.StatusGone, "mdm: UserAuthenticate not supported")
	default:
		return nil, refusef(http.StatusBadRequest, "mdm: %s check-in not supported", msg.MessageType())
	}
	if err != nil {
		return nil, err
	}
	s.emit(ctx, &Event{Type: "checkin", EnrollmentID: id, MessageType: msg.MessageType()})
	return out, nil
}

func (s *Service) command(ctx context.Context, resp *Response, fp string) ([]byte, error) {
	body := resp.Raw
	ch := channel{resp.UDID, resp.EnrollmentID, resp.UserID, resp.EnrollmentUserID}
	id, device, err := ch.ids()
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, device, fp, false); err != nil {
		return nil, err
	}
	if resp.Status != StatusIdle {
		res := &Result{EnrollmentID: id, CommandUUID: resp.CommandUUID, Status: resp.Status, Raw: body, ReceivedAt: s.now().UTC()}
		wiped := false
		err := s.Store.StoreResult(ctx, res, func(r *Result) func(*Enrollment) {
			if r.Status != StatusAcknowledged {
				return nil
			}
			switch r.RequestType {
			case "EraseDevice":
				// Recorded with its result: the device is erasing itself
				// and will not talk again.
				wiped = true
				return func(e *Enrollment) { e.WipedAt, e.Enabled = r.ReceivedAt, false }
			case "DeviceConfigured":
				// The device leaves Setup Assistant.
				return func(e *Enrollment) {
					e.ConfiguredAt, e.AwaitingConfiguration, e.AwaitingSince = r.ReceivedAt, false, time.Time{}
				}
			}
			return nil
		})
		if errors.Is(err, ErrUnknownCommand) {
			return nil, refuse(http.StatusBadRequest, err)
		} else if err != nil {
			return nil, err
		}
		if wiped {
			s.emit(ctx, &Event{Type: "result", EnrollmentID: id, Result: res, Drained: true})
			s.log().Info("mdm: device wiped", "enrollment", id, "command_uuid", res.CommandUUID)
			return nil, nil
		}
		next, err := s.Store.NextCommand(ctx, id, true)
		// The result is stored: its event goes out whatever comes next.
		s.emit(ctx, &Event{Type: "result", EnrollmentID: id, Result: res, Drained: err == nil && next == nil})
		if err != nil || next == nil {
			return nil, err
		}
		return next.Payload, nil
	}
	next, err := s.Store.NextCommand(ctx, id, false)
	if err != nil || next == nil {
		return nil, err
	}
	return next.Payload, nil
}

func (s *Service) emit(ctx context.Context, e *Event) {
	if s.Events != nil {
		s.Events.HandleEvent(ctx, e)
	}
}
