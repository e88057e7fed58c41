package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

// ErrRestricted is returned when the pre-enrolled-only restriction forbids
// minting a link or a challenge.
var ErrRestricted = errors.New("enroll: only pre-enrolled devices may enrol")

// A Lifecycle follows pre-enrolled devices through the protocols: it
// decides at Authenticate whether a device may enrol (Admit, for
// mdm.Service.Admit), links the record to the certificate and enrollment
// the device got, queues its group's assignments when it completes
// enrollment, and records unenrollment and wipe (HandleEvent, an
// mdm.EventHandler).
type Lifecycle struct {
	Records     RecordStore
	Assignments AssignmentStore
	Settings    SettingsStore
	Tokens      Store
	Certs       scep.Store
	MDM         mdm.Store

	// Assigned profiles are signed with this identity when installed.
	SignerCert *x509.Certificate
	SignerKey  crypto.Signer
	Chain      []*x509.Certificate

	// EnrollmentProfile is the PayloadIdentifier of the enrollment
	// profile the server hands out: Unmanage removes it.
	EnrollmentProfile string

	// ReleaseAfter is how long a device held in Setup Assistant (ADE's
	// await_device_configured) waits for its assignments before
	// DeviceConfigured releases it anyway; DefaultReleaseAfter when zero.
	ReleaseAfter time.Duration

	// Push, when set, wakes devices that have new commands queued.
	Push   func(ctx context.Context, enrollmentIDs []string)
	Logger *slog.Logger
	Now    func() time.Time

	// applyMu serialises queueing assignments per record (striped by
	// serial number), so that two TokenUpdates of one device racing cannot
	// queue an assignment twice while different devices proceed at once.
	applyMu [64]sync.Mutex
}

func (l *Lifecycle) lockRecord(serial string) func() {
	h := fnv.New32a()
	h.Write([]byte(serial))
	mu := &l.applyMu[h.Sum32()%uint32(len(l.applyMu))]
	mu.Lock()
	return mu.Unlock
}

func (l *Lifecycle) log() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

func (l *Lifecycle) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

// CheckMint returns ErrRestricted when the restriction is on and ref (the
// For of a link or challenge to mint) does not name a record or a user
// that exists.
func (l *Lifecycle) CheckMint(ctx context.Context, ref string) error {
	st, err := l.Settings.Settings(ctx)
	if err != nil || !st.PreEnrolledOnly {
		return err
	}
	serial, email := ParseRef(ref)
	switch {
	case serial != "":
		_, err = l.Records.Record(ctx, serial)
	case email != "":
		_, err = l.Records.User(ctx, email)
	default:
		return fmt.Errorf("%w: mint links and challenges for a record (record:SERIAL) or a user (user:EMAIL)", ErrRestricted)
	}
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s has no record", ErrRestricted, ref)
	}
	return err
}

// MintLink mints a one-time enrollment link for a record (serial) or a
// user (email), and logs it on the record.
func (l *Lifecycle) MintLink(ctx context.Context, serial, email string, ttl time.Duration, note string) (*Token, string, error) {
	var ref string
	switch {
	case serial != "" && email != "":
		return nil, "", invalidf("a link is for a record or for a user, not both")
	case serial != "":
		s, err := NormalizeSerial(serial)
		if err != nil {
			return nil, "", err
		}
		if _, err := l.Records.Record(ctx, s); err != nil {
			return nil, "", err
		}
		ref = RecordRef(s)
	case email != "":
		e, err := NormalizeEmail(email)
		if err != nil {
			return nil, "", err
		}
		if _, err := l.Records.User(ctx, e); err != nil {
			return nil, "", err
		}
		ref = UserRef(e)
	default:
		return nil, "", invalidf("give a serial number or an email")
	}
	t, secret, err := NewToken(ctx, l.Tokens, ttl, note, ref)
	if err != nil {
		return nil, "", err
	}
	if s, _ := ParseRef(ref); s != "" {
		_, err = l.Records.UpdateRecord(ctx, s, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: t.CreatedAt, Step: StepLinkMinted, Token: t.ID})
			return r, nil
		})
	}
	return t, secret, err
}

// linkOf follows a certificate back through its renewals to the challenge
// that authorised it and the enrollment link that minted the challenge,
// and returns what the link (or challenge) was minted for and the link's
// token ID.
func (l *Lifecycle) linkOf(ctx context.Context, fingerprint string) (ref, tokenID string, err error) {
	c, err := l.Certs.Cert(ctx, fingerprint)
	for i := 0; err == nil && c.RenewedFrom != "" && i < 1000; i++ {
		c, err = l.Certs.Cert(ctx, c.RenewedFrom)
	}
	if errors.Is(err, scep.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	if s, e := ParseRef(c.For); s != "" || e != "" {
		return c.For, "", nil // a challenge minted for a record or user
	}
	if c.For == "" {
		return "", "", nil
	}
	t, err := l.Tokens.Token(ctx, c.For)
	if errors.Is(err, ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return t.For, t.ID, nil
}

// Admit decides whether a device may enrol; it is mdm.Service.Admit. A
// device enrolling with a link minted for a record must report that
// record's serial number, and one enrolling with a user's link must be
// one of that user's records. With the restriction on, the serial must
// have a record and the link must have been minted for it or its user.
// With it off, an unknown device gets a record (source enrollment). An
// admitted device's record is linked to its token, certificate and
// enrollment; a refusal is logged on the record.
func (l *Lifecycle) Admit(ctx context.Context, m *mdm.Authenticate, fingerprint string) error {
	st, err := l.Settings.Settings(ctx)
	if err != nil {
		return err
	}
	serial, serr := NormalizeSerial(m.SerialNumber)
	if serr != nil {
		if st.PreEnrolledOnly {
			return l.refuse(ctx, "", m, fingerprint, "Authenticate without a serial number")
		}
		return nil // a user enrollment: no serial, no record
	}
	ref, tokenID, err := l.linkOf(ctx, fingerprint)
	if err != nil {
		return err
	}
	linkSerial, linkEmail := ParseRef(ref)
	if linkSerial != "" && linkSerial != serial {
		return l.refuse(ctx, linkSerial, m, fingerprint,
			fmt.Sprintf("enrolled with the link of record %s but reports serial number %s", linkSerial, serial))
	}
	var user *User
	if linkEmail != "" {
		if user, err = l.Records.User(ctx, linkEmail); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	now := l.now()
	enrollment := m.UDID
	if enrollment == "" {
		enrollment = m.EnrollmentID
	}
	var refusal string
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		refusal = ""
		switch {
		case r == nil && st.PreEnrolledOnly:
			refusal = fmt.Sprintf("serial number %s is not pre-enrolled", serial)
		case r != nil && linkEmail != "" && r.UserEmail != "" && r.UserEmail != linkEmail:
			refusal = fmt.Sprintf("enrolled with the link of user %s but serial number %s belongs to %s", linkEmail, serial, r.UserEmail)
		case st.PreEnrolledOnly && ref == "":
			refusal = "enrolled with a link that was not minted for a record or a user"
		}
		if refusal != "" {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: now, Step: StepRefused, Enrollment: enrollment, Cert: fingerprint, Note: refusal})
			return r, nil
		}
		if r == nil {
			r = &Record{Serial: serial, Platform: platformOf(m), Status: StatusPreApproved, Source: SourceEnrollment,
				DeviceName: m.DeviceName, CreatedAt: now, History: []Event{{At: now, Step: StepCreated, Note: SourceEnrollment}}}
			if user != nil {
				r.UserEmail, r.UserName, r.Mobile, r.Ownership = user.Email, user.Name, user.Mobile, user.Ownership
			}
		} else {
			r = r.Clone()
		}
		if r.UserEmail == "" && user != nil {
			r.UserEmail, r.UserName = user.Email, user.Name
		}
		r.TokenID, r.CertFingerprint, r.EnrollmentID = tokenID, fingerprint, enrollment
		r.Platform = platformOf(m) // what the device is, whatever the import said
		r.Applied, r.Removed, r.EnrolledAt = nil, nil, time.Time{}
		r.UpdatedAt = now
		r.Log(Event{At: now, Step: StepAuthenticated, Enrollment: enrollment, Cert: fingerprint, Token: tokenID})
		return r, nil
	})
	if err != nil {
		return err
	}
	if refusal != "" {
		l.log().Warn("enroll: device refused", "serial", serial, "enrollment", enrollment, "cert", fingerprint, "reason", refusal)
		return fmt.Errorf("%w: %s", mdm.ErrNotAdmitted, refusal)
	}
	l.log().Info("enroll: device admitted", "serial", serial, "enrollment", enrollment, "token_id", tokenID, "for", ref)
	return nil
}

// refuse logs a refusal on the record of serial, if there is one, and
// returns the error that refuses the device.
func (l *Lifecycle) refuse(ctx context.Context, serial string, m *mdm.Authenticate, fingerprint, reason string) error {
	l.log().Warn("enroll: device refused", "serial", m.SerialNumber, "udid", m.UDID, "cert", fingerprint, "reason", reason)
	if serial != "" {
		_, err := l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: l.now(), Step: StepRefused, Enrollment: m.UDID, Cert: fingerprint, Note: reason})
			return r, nil
		})
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %s", mdm.ErrNotAdmitted, reason)
}

func platformOf(m *mdm.Authenticate) Platform {
	return platformOfProduct(m.ProductName + " " + m.Model)
}

// isAndroidEnrollment reports whether an enrollment ID is an Android
// Management API device name.
func isAndroidEnrollment(id string) bool { return strings.HasPrefix(id, "enterprises/") }

// platformOfProduct tells macOS from iOS by a product name (iPhone15,2,
// Mac14,2, MacBookPro18,1...).
func platformOfProduct(product string) Platform {
	if strings.Contains(strings.ToLower(product), "mac") {
		return PlatformMacOS
	}
	return PlatformIOS
}

// Reset returns a record to pre-approved and forgets its links, so that
// its device may enrol again (a replayed ADE MachineInfo is refused while
// the record is enrolled). Its history is kept.
func (l *Lifecycle) Reset(ctx context.Context, serial string) (*Record, error) {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	r, err := l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		if r == nil {
			return nil, nil
		}
		r = r.Clone()
		now := l.now()
		r.Log(Event{At: now, Step: StepReset, Enrollment: r.EnrollmentID, Note: "was " + string(r.Status)})
		r.Status, r.UpdatedAt = StatusPreApproved, now
		r.TokenID, r.CertFingerprint, r.EnrollmentID, r.Applied, r.Removed, r.EnrolledAt = "", "", "", nil, nil, time.Time{}
		return r, nil
	})
	if err == nil && r == nil {
		err = fmt.Errorf("%w: record %s", ErrNotFound, serial)
	}
	return r, err
}

// HandleEvent records what devices do: the first TokenUpdate after
// Authenticate completes enrollment and queues the record's assignments,
// CheckOut unenrolls, and an acknowledged EraseDevice marks the record
// wiped and revokes the device's certificate.
func (l *Lifecycle) HandleEvent(ctx context.Context, e *mdm.Event) {
	var err error
	switch {
	case strings.Contains(e.EnrollmentID, ":"):
		return // a user channel: the device channel carries the record
	case e.Type == "checkin" && e.MessageType == "TokenUpdate":
		if err = l.enrolled(ctx, e.EnrollmentID); err == nil {
			err = l.releaseWhenReady(ctx, e.EnrollmentID, true)
		}
	case e.Type == "checkin" && e.MessageType == "CheckOut":
		err = l.checkedOut(ctx, e.EnrollmentID)
	case e.Type == "result" && e.Result.RequestType == "EraseDevice" && e.Result.Status == mdm.StatusAcknowledged:
		err = l.wiped(ctx, e.EnrollmentID, e.Result)
	case e.Type == "result" && e.Result.RequestType == "DeviceConfigured" && e.Result.Status == mdm.StatusAcknowledged:
		err = l.configured(ctx, e.EnrollmentID)
	case e.Type == "result" && e.Drained:
		err = l.releaseWhenReady(ctx, e.EnrollmentID, false)
	}
	if err != nil {
		l.log().Error("enroll: lifecycle", "enrollment", e.EnrollmentID, "event", e.Type, "message", e.MessageType, "err", err)
	}
}

// updateByEnrollment applies fn to the record linked to an enrollment and
// returns the record, or nil when the enrollment has none.
func (l *Lifecycle) updateByEnrollment(ctx context.Context, id string, fn func(*Record)) (*Record, error) {
	enr, err := l.MDM.Enrollment(ctx, id)
	if err != nil {
		return nil, err
	}
	serial, err := NormalizeSerial(enr.SerialNumber)
	if err != nil {
		return nil, nil
	}
	return l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		if r == nil || r.EnrollmentID != id {
			return nil, nil
		}
		r = r.Clone()
		fn(r)
		r.UpdatedAt = l.now()
		return r, nil
	})
}

func (l *Lifecycle) enrolled(ctx context.Context, id string) error {
	rec, err := l.updateByEnrollment(ctx, id, func(r *Record) {
		if r.EnrolledAt.IsZero() {
			r.Status, r.EnrolledAt = StatusEnrolled, l.now()
			r.Log(Event{At: r.EnrolledAt, Step: StepEnrolled, Enrollment: id})
		}
	})
	if err != nil || rec == nil {
		return err
	}
	var all []*Assignment
	if err := l.Assignments.Assignments(ctx, func(a *Assignment) bool { all = append(all, a); return true }); err != nil {
		return err
	}
	_, err = l.apply(ctx, rec.Serial, all)
	return err
}

// RequestWipe records that EraseDevice was queued for enrollments.
func (l *Lifecycle) RequestWipe(ctx context.Context, enrollmentIDs []string, commandUUID string) error {
	for _, id := range enrollmentIDs {
		_, err := l.updateByEnrollment(ctx, id, func(r *Record) {
			r.Status = StatusWipePending
			r.Log(Event{At: l.now(), Step: StepWipeRequested, Enrollment: id, Command: commandUUID})
		})
		if err != nil && !errors.Is(err, mdm.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Erase queues EraseDevice for the enrolled Apple device of a record (by
// serial), wakes it, and marks the record wipe-pending with note (why) in
// its history. Erasing a record already wipe-pending queues nothing more.
func (l *Lifecycle) Erase(ctx context.Context, serial, note string) error {
	return l.remove(ctx, serial, "EraseDevice", &mdm.EraseDevice{}, StepWipeRequested, note)
}

// Unmanage removes the MDM enrollment profile from the enrolled Apple
// device of a record (by serial), which takes with it every managed
// profile, app and their data and leaves the rest of the device alone;
// the device then checks out. note (why) goes in the record's history.
func (l *Lifecycle) Unmanage(ctx context.Context, serial, note string) error {
	if l.EnrollmentProfile == "" {
		return errors.New("enroll: the enrollment profile's identifier is not configured")
	}
	return l.remove(ctx, serial, "Unmanage", &mdm.RemoveProfile{Identifier: l.EnrollmentProfile}, StepUnmanageRequested, note)
}

// remove queues a command that ends a device's management (what names it
// for its UUID) and logs step.
func (l *Lifecycle) remove(ctx context.Context, serial, what string, cmd mdm.Command, step Step, note string) error {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return err
	}
	rec, err := l.Records.Record(ctx, serial)
	if err != nil {
		return err
	}
	if rec.EnrollmentID == "" || isAndroidEnrollment(rec.EnrollmentID) || rec.Status != StatusEnrolled && rec.Status != StatusWipePending {
		return invalidf("%s is not an enrolled Apple device (status %s)", serial, rec.Status)
	}
	id := l.commandUUID(rec, what, "")
	if err := l.enqueue(ctx, rec.EnrollmentID, id, cmd); err != nil {
		return err
	}
	_, err = l.updateByEnrollment(ctx, rec.EnrollmentID, func(r *Record) {
		for _, e := range r.History {
			if e.Step == step && e.Command == id {
				return // logged already
			}
		}
		if step == StepWipeRequested {
			r.Status = StatusWipePending
		}
		r.Log(Event{At: l.now(), Step: step, Enrollment: rec.EnrollmentID, Command: id, Note: note})
	})
	if err != nil {
		return err
	}
	l.log().Info("enroll: device removal queued", "serial", serial, "enrollment", rec.EnrollmentID, "command", cmd.RequestType(), "note", note)
	if l.Push != nil {
		l.Push(ctx, []string{rec.EnrollmentID})
	}
	return nil
}

// checkedOut marks a record unenrolled when its device checks out (its
// MDM profile was removed) and revokes the enrollment's certificate: the
// identity is of no further use.
func (l *Lifecycle) checkedOut(ctx context.Context, id string) error {
	now := l.now()
	revoked, err := l.revoke(ctx, id, now)
	if err != nil {
		return err
	}
	_, err = l.updateByEnrollment(ctx, id, func(r *Record) {
		r.Status = StatusUnenrolled
		r.Log(Event{At: now, Step: StepUnenrolled, Enrollment: id})
		if revoked != "" {
			r.Log(Event{At: now, Step: StepCertRevoked, Enrollment: id, Cert: revoked})
		}
	})
	return err
}

// revoke revokes the certificate of an enrollment and returns its
// fingerprint, or "" when there was nothing to revoke.
func (l *Lifecycle) revoke(ctx context.Context, id string, at time.Time) (string, error) {
	enr, err := l.MDM.Enrollment(ctx, id)
	if err != nil {
		return "", err
	}
	fp := enr.CertFingerprint
	if fp == "" {
		return "", nil
	}
	err = l.Certs.RevokeCert(ctx, fp, at)
	switch {
	case err == nil:
		return fp, nil
	case errors.Is(err, scep.ErrAlreadyRevoked) || errors.Is(err, scep.ErrNotFound):
		return "", nil
	}
	return "", err
}

// wiped marks a record wiped and revokes the certificate of the enrollment.
func (l *Lifecycle) wiped(ctx context.Context, id string, res *mdm.Result) error {
	revoked, err := l.revoke(ctx, id, res.ReceivedAt)
	if err != nil {
		return err
	}
	_, err = l.updateByEnrollment(ctx, id, func(r *Record) {
		r.Status = StatusWiped
		r.Log(Event{At: res.ReceivedAt, Step: StepWiped, Enrollment: id, Command: res.CommandUUID})
		if revoked != "" {
			r.Log(Event{At: res.ReceivedAt, Step: StepCertRevoked, Enrollment: id, Cert: revoked})
		}
	})
	l.log().Info("enroll: device wiped", "enrollment", id, "cert_revoked", revoked)
	return err
}

// commandNamespace makes assignment command UUIDs: one per assignment and
// enrollment identity, so queueing again after a crash is idempotent.
var commandNamespace = uuid.MustParse("9a1c2f0e-5b7d-4e38-9d61-2f4b8c0a7e13")

// apply brings the enrolled device of a record in line with assignments:
// each assignment of a group the record is in (directly or through its
// user) and not yet queued for its current enrollment is queued and marked
// applied; each profile assignment applied but of a group the record has
// left is removed with RemoveProfile (a command assignment is only
// forgotten: what it did cannot be undone). It returns the enrollment ID
// when it queued anything.
//
// A command is queued before it is marked; its UUID is derived from the
// assignment, the enrollment's certificate and the command that last
// removed it, and queueing a UUID already in the queue is a no-op, so a
// crash between the two writes at most re-sends a command the device
// already answered.
func (l *Lifecycle) apply(ctx context.Context, serial string, assignments []*Assignment) (string, error) {
	defer l.lockRecord(serial)()
	rec, err := l.Records.Record(ctx, serial)
	if err != nil || rec.Status != StatusEnrolled || rec.EnrollmentID == "" || isAndroidEnrollment(rec.EnrollmentID) {
		return "", err // Android devices get their group's policy through Android
	}
	var user *User
	if rec.UserEmail != "" {
		if user, err = l.Records.User(ctx, rec.UserEmail); err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	type queued struct {
		assignment, command string
		removed             bool
	}
	var done []queued
	for _, a := range assignments {
		if a.Kind == AssignAndroidPolicy {
			continue // Android policies reach devices through their enrollment token
		}
		member, applied := rec.InGroup(a.Group, user), rec.Applied[a.ID]
		var cmd mdm.Command
		var id string
		switch {
		case member && applied == "":
			id = l.commandUUID(rec, a.ID, rec.Removed[a.ID])
			payload, err := l.payload(a, id)
			if err != nil {
				return "", err
			}
			err = l.MDM.Enqueue(ctx, []string{rec.EnrollmentID}, &mdm.QueuedCommand{
				UUID: id, RequestType: a.commandType(), Payload: payload, EnqueuedAt: l.now(),
			})
			if err != nil {
				return "", err
			}
			done = append(done, queued{a.ID, id, false})
			continue
		case !member && applied != "" && a.Kind == AssignProfile:
			id, cmd = l.commandUUID(rec, a.ID, applied), &mdm.RemoveProfile{Identifier: a.Name}
		case !member && applied != "":
			done = append(done, queued{a.ID, "", true})
			continue
		default:
			continue
		}
		if err := l.enqueue(ctx, rec.EnrollmentID, id, cmd); err != nil {
			return "", err
		}
		done = append(done, queued{a.ID, id, true})
	}
	if len(done) == 0 {
		return "", nil
	}
	enrollment := rec.EnrollmentID
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		if r == nil || r.EnrollmentID != enrollment {
			return nil, nil
		}
		r = r.Clone()
		if r.Applied == nil {
			r.Applied = map[string]string{}
		}
		now := l.now()
		for _, q := range done {
			if q.removed {
				delete(r.Applied, q.assignment)
				if r.Removed == nil {
					r.Removed = map[string]string{}
				}
				r.Removed[q.assignment] = q.command
				r.Log(Event{At: now, Step: StepUnassigned, Enrollment: enrollment, Assignment: q.assignment, Command: q.command})
				continue
			}
			r.Applied[q.assignment] = q.command
			r.Log(Event{At: now, Step: StepAssigned, Enrollment: enrollment, Assignment: q.assignment, Command: q.command})
		}
		return r, nil
	})
	if err != nil {
		return "", err
	}
	l.log().Info("enroll: assignments reconciled", "serial", serial, "enrollment", enrollment, "changes", len(done))
	if l.Push != nil {
		l.Push(ctx, []string{enrollment})
	}
	return enrollment, nil
}

// commandUUID derives the UUID of a command for a record's enrollment
// from what it does (an assignment, "EraseDevice"...) and the command
// before it in that line (empty for the first), so that the same step
// queued twice is one command.
func (l *Lifecycle) commandUUID(rec *Record, what, previous string) string {
	seed := rec.EnrollmentID + "\x00" + rec.CertFingerprint + "\x00" + what
	if previous != "" {
		seed += "\x00" + previous
	}
	return strings.ToUpper(uuid.NewSHA1(commandNamespace, []byte(seed)).String())
}

// enqueue queues a command for one enrollment.
func (l *Lifecycle) enqueue(ctx context.Context, enrollment, id string, cmd mdm.Command) error {
	payload, err := mdm.MarshalCommand(id, cmd)
	if err != nil {
		return err
	}
	return l.MDM.Enqueue(ctx, []string{enrollment}, &mdm.QueuedCommand{
		UUID: id, RequestType: cmd.RequestType(), Payload: payload, EnqueuedAt: l.now(),
	})
}

func (a *Assignment) commandType() string {
	if a.Kind == AssignProfile {
		return "InstallProfile"
	}
	return a.Name
}

// payload builds the command an assignment sends, signing its profile.
func (l *Lifecycle) payload(a *Assignment, commandUUID string) ([]byte, error) {
	var signed []byte
	if a.Kind == AssignProfile {
		if l.SignerCert == nil {
			return nil, errors.New("enroll: no profile-signing identity configured")
		}
		var err error
		if signed, err = SignProfile(a.Payload, l.SignerCert, l.SignerKey, l.Chain...); err != nil {
			return nil, err
		}
	}
	cmd, err := a.command(signed)
	if err != nil {
		return nil, err
	}
	return mdm.MarshalCommand(commandUUID, cmd)
}

// Assign stores an assignment and queues it at once for the group's
// enrolled devices, whose enrollment IDs it returns.
func (l *Lifecycle) Assign(ctx context.Context, a *Assignment) ([]string, error) {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = l.now()
	}
	if err := l.Assignments.PutAssignment(ctx, a); err != nil {
		return nil, err
	}
	members, err := l.members(ctx, a.Group)
	if err != nil {
		return nil, err
	}
	return l.applyAll(ctx, members, []*Assignment{a})
}

func (l *Lifecycle) applyAll(ctx context.Context, serials []string, assignments []*Assignment) ([]string, error) {
	var queued []string
	for _, s := range serials {
		id, err := l.apply(ctx, s, assignments)
		if err != nil {
			return queued, err
		}
		if id != "" {
			queued = append(queued, id)
		}
	}
	return queued, nil
}

// members returns the serial numbers of the records in a group, directly
// or through their user.
func (l *Lifecycle) members(ctx context.Context, group string) ([]string, error) {
	users := map[string]bool{}
	err := l.Records.Users(ctx, func(u *User) bool {
		if u.InGroup(group) {
			users[u.Email] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var serials []string
	err = l.Records.Records(ctx, func(r *Record) bool {
		if r.InGroup(group, nil) || users[r.UserEmail] {
			serials = append(serials, r.Serial)
		}
		return true
	})
	return serials, err
}

// AddToGroup adds records (by serial) and users (by email) to a group and
// queues the group's assignments for those of their devices that are
// enrolled; it returns their enrollment IDs. Unknown serials or emails are
// an ErrNotFound naming them, and then nothing is changed.
func (l *Lifecycle) AddToGroup(ctx context.Context, group string, serials, emails []string) ([]string, error) {
	return l.regroup(ctx, group, serials, emails, true)
}

// RemoveFromGroup takes records (by serial) and users (by email) out of a
// group and removes the group's profiles from those of their devices that
// are enrolled and no longer in the group by another way (a device stays
// in a group its user is in); it returns their enrollment IDs.
func (l *Lifecycle) RemoveFromGroup(ctx context.Context, group string, serials, emails []string) ([]string, error) {
	return l.regroup(ctx, group, serials, emails, false)
}

func (l *Lifecycle) regroup(ctx context.Context, group string, serials, emails []string, add bool) ([]string, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	serials, emails, err := l.known(ctx, serials, emails)
	if err != nil {
		return nil, err
	}
	now := l.now()
	edit := func(groups []string) ([]string, bool) {
		has := slices.Contains(groups, group)
		switch {
		case add && !has:
			return append(groups, group), true
		case !add && has:
			return slices.DeleteFunc(groups, func(g string) bool { return g == group }), true
		}
		return nil, false
	}
	for _, s := range serials {
		_, err := l.Records.UpdateRecord(ctx, s, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			var changed bool
			if r.Groups, changed = edit(r.Groups); !changed {
				return nil, nil
			}
			r.UpdatedAt = now
			return r, nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, e := range emails {
		_, err := l.Records.UpdateUser(ctx, e, func(u *User) (*User, error) {
			if u == nil {
				return nil, nil
			}
			u = u.Clone()
			var changed bool
			if u.Groups, changed = edit(u.Groups); !changed {
				return nil, nil
			}
			u.UpdatedAt = now
			return u, nil
		})
		if err != nil {
			return nil, err
		}
	}
	affected, err := l.DevicesOf(ctx, emails)
	if err != nil {
		return nil, err
	}
	affected = append(affected, serials...)
	var all []*Assignment
	err = l.Assignments.Assignments(ctx, func(a *Assignment) bool {
		if a.Group == group {
			all = append(all, a)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return l.applyAll(ctx, affected, all)
}

// DevicesOf returns the serial numbers of the records of users (by email).
func (l *Lifecycle) DevicesOf(ctx context.Context, emails []string) ([]string, error) {
	if len(emails) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	for _, e := range emails {
		want[e] = true
	}
	var serials []string
	err := l.Records.Records(ctx, func(r *Record) bool {
		if want[r.UserEmail] {
			serials = append(serials, r.Serial)
		}
		return true
	})
	return serials, err
}

// Refresh brings the enrolled devices of records (by serial) in line with
// every assignment, after their or their users' groups changed: the
// assignments of groups joined are queued, the profiles of groups left are
// removed. It returns the enrollment IDs it queued commands for.
func (l *Lifecycle) Refresh(ctx context.Context, serials []string) ([]string, error) {
	var all []*Assignment
	if err := l.Assignments.Assignments(ctx, func(a *Assignment) bool { all = append(all, a); return true }); err != nil {
		return nil, err
	}
	return l.applyAll(ctx, serials, all)
}

// known normalises serials and emails and checks that each has a record or
// a user.
func (l *Lifecycle) known(ctx context.Context, serials, emails []string) ([]string, []string, error) {
	var missing []string
	var ss, es []string
	for _, s := range serials {
		n, err := NormalizeSerial(s)
		if err != nil {
			return nil, nil, err
		}
		if _, err := l.Records.Record(ctx, n); errors.Is(err, ErrNotFound) {
			missing = append(missing, n)
		} else if err != nil {
			return nil, nil, err
		}
		ss = append(ss, n)
	}
	for _, e := range emails {
		n, err := NormalizeEmail(e)
		if err != nil {
			return nil, nil, err
		}
		if _, err := l.Records.User(ctx, n); errors.Is(err, ErrNotFound) {
			missing = append(missing, n)
		} else if err != nil {
			return nil, nil, err
		}
		es = append(es, n)
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", "))
	}
	return ss, es, nil
}
