package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	dp "google.golang.org/api/androiddeviceprovisioning/v1"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/custodymdm/custody/zerotouch"
)

// DefaultAndroidPolicy is the policy of Android devices whose groups have
// none.
const DefaultAndroidPolicy = "default"

// ErrDeviceRefused is returned by Bind for a device enrolled with a token
// its hardware does not match, or not pre-enrolled under the restriction:
// the device has been deleted (wiped).
var ErrDeviceRefused = errors.New("enroll: android device refused and deleted")

// An Android follows Android devices through the Android Management API
// and zero-touch: policies from the groups' android-policy assignments,
// enrollment tokens bound to records or users, devices matched back to
// their records (and refused when they do not match), commands and wipe.
type Android struct {
	Lifecycle    *Lifecycle
	Management   *zerotouch.Management
	Provisioning *zerotouch.Provisioning // nil without zero-touch
	Logger       *slog.Logger
}

func (a *Android) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// policyFor returns the policy id of a record's device: that of its first
// group (its own, then its user's) with an android-policy assignment.
func (a *Android) policyFor(ctx context.Context, groups []string) (string, error) {
	byGroup := map[string]string{}
	err := a.Lifecycle.Assignments.Assignments(ctx, func(as *Assignment) bool {
		if as.Kind == AssignAndroidPolicy {
			byGroup[as.Group] = as.Name
		}
		return true
	})
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		if id := byGroup[g]; id != "" {
			return id, nil
		}
	}
	return DefaultAndroidPolicy, nil
}

// groupsOf returns a record's groups followed by its user's.
func (a *Android) groupsOf(ctx context.Context, rec *Record) []string {
	groups := slices.Clone(rec.Groups)
	if u, err := a.Lifecycle.Records.User(ctx, rec.UserEmail); err == nil {
		groups = append(groups, u.Groups...)
	}
	return groups
}

// SyncPolicies puts the default policy and one policy per group with an
// android-policy assignment, and returns how many it put.
func (a *Android) SyncPolicies(ctx context.Context) (int, error) {
	var list []*Assignment
	err := a.Lifecycle.Assignments.Assignments(ctx, func(as *Assignment) bool {
		if as.Kind == AssignAndroidPolicy {
			list = append(list, as)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if _, err := a.Management.PutPolicy(ctx, DefaultAndroidPolicy, &am.Policy{}); err != nil {
		return 0, err
	}
	for _, as := range list {
		var p am.Policy
		if err := json.Unmarshal(as.Payload, &p); err != nil {
			return 0, fmt.Errorf("enroll: android policy of %s: %w", as.Group, err)
		}
		if _, err := a.Management.PutPolicy(ctx, as.Name, &p); err != nil {
			return 0, err
		}
	}
	return len(list) + 1, nil
}

// Refresh puts the enrolled Android devices of records (by serial) on the
// policy of their groups, after their or their users' groups changed, and
// returns how many devices it moved to another policy.
func (a *Android) Refresh(ctx context.Context, serials []string) (int, error) {
	l := a.Lifecycle
	moved := 0
	for _, serial := range serials {
		rec, err := l.Records.Record(ctx, serial)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return moved, err
		}
		if rec.Status != StatusEnrolled || !isAndroidEnrollment(rec.EnrollmentID) {
			continue
		}
		policy, err := a.policyFor(ctx, a.groupsOf(ctx, rec))
		if err != nil {
			return moved, err
		}
		d, err := a.Management.Device(ctx, rec.EnrollmentID)
		if err != nil {
			return moved, err
		}
		if d.PolicyName == a.Management.PolicyName(policy) {
			continue
		}
		if _, err := a.Management.SetDevicePolicy(ctx, rec.EnrollmentID, policy); err != nil {
			return moved, err
		}
		moved++
		_, err = l.Records.UpdateRecord(ctx, rec.Serial, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: l.now(), Step: StepAssigned, Enrollment: rec.EnrollmentID, Note: "android policy " + policy})
			return r, nil
		})
		if err != nil {
			return moved, err
		}
		a.log().Info("android: device moved to its groups' policy", "serial", rec.Serial, "device", rec.EnrollmentID, "policy", policy)
	}
	return moved, nil
}

// An AndroidToken is an enrollment token with what a device needs to use
// it.
type AndroidToken struct {
	Name    string    `json:"name"`
	Value   string    `json:"value"`
	Policy  string    `json:"policy"`
	QR      []byte    `json:"qr"`   // the provisioning JSON to show as a QR code
	Link    string    `json:"link"` // the enrollment link, for personal devices
	Expires time.Time `json:"expires"`
	For     string    `json:"for"`
}

// Token mints an enrollment token for a record (serial) or a user
// (email). Its additionalData names the record or user so the enrolled
// device can be matched back; a corporate record's token admits only a
// company-owned device; with the restriction on, tokens are minted only
// for existing records and users.
func (a *Android) Token(ctx context.Context, serial, email string, ttl time.Duration) (*AndroidToken, error) {
	l := a.Lifecycle
	var ref string
	var groups []string
	personal := zerotouch.PersonalUsageAllowed
	switch {
	case serial != "" && email != "":
		return nil, invalidf("a token is for a record or for a user, not both")
	case serial != "":
		s, err := NormalizeSerial(serial)
		if err != nil {
			return nil, err
		}
		rec, err := l.Records.Record(ctx, s)
		if err != nil {
			return nil, err
		}
		if rec.Platform != PlatformAndroid {
			return nil, invalidf("record %s is a %s device, not android", s, rec.Platform)
		}
		if rec.Ownership == OwnershipCorporate {
			personal = zerotouch.PersonalUsageDisallowed
		}
		ref, groups = RecordRef(s), a.groupsOf(ctx, rec)
	case email != "":
		e, err := NormalizeEmail(email)
		if err != nil {
			return nil, err
		}
		u, err := l.Records.User(ctx, e)
		if err != nil {
			return nil, err
		}
		if u.Ownership == OwnershipCorporate {
			personal = zerotouch.PersonalUsageDisallowed
		}
		ref, groups = UserRef(e), u.Groups
	default:
		return nil, invalidf("give a serial number or an email")
	}
	policy, err := a.policyFor(ctx, groups)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	t, err := a.Management.CreateToken(ctx, zerotouch.TokenSpec{PolicyID: policy, Duration: ttl, OneTime: serial != "",
		PersonalUsage: personal, AdditionalData: ref})
	if err != nil {
		return nil, err
	}
	out := &AndroidToken{Name: t.Name, Value: t.Value, Policy: policy, QR: zerotouch.QRPayload(t.Value),
		Link: zerotouch.EnrollmentLink(t.Value), For: ref}
	out.Expires, _ = time.Parse(time.RFC3339Nano, t.ExpirationTimestamp)
	if s, _ := ParseRef(ref); s != "" {
		_, err = l.Records.UpdateRecord(ctx, s, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: l.now(), Step: StepLinkMinted, Token: t.Name, Note: "android, policy " + policy})
			return r, nil
		})
	}
	return out, err
}

// hardware returns a device's serial number (normalised) and IMEI.
func hardware(d *am.Device) (serial, imei string) {
	if d.HardwareInfo != nil {
		serial, _ = NormalizeSerial(d.HardwareInfo.SerialNumber)
	}
	if d.NetworkInfo != nil {
		imei = d.NetworkInfo.Imei
	}
	return serial, imei
}

// recordByIMEI finds the record of an IMEI.
func (a *Android) recordByIMEI(ctx context.Context, imei string) (*Record, error) {
	var found *Record
	if imei == "" {
		return nil, nil
	}
	err := a.Lifecycle.Records.Records(ctx, func(r *Record) bool {
		if r.IMEI == imei {
			found = r
			return false
		}
		return true
	})
	return found, err
}

// Bind matches an enrolled device to its record: through the record or
// user its token was minted for (enrollmentTokenData), else by its
// hardware serial number or IMEI (a zero-touch device). A device whose
// hardware does not match its token's record, or (with the restriction
// on) one without a record, is deleted, which wipes it, and the refusal is
// logged on the record: ErrDeviceRefused. With the restriction off an
// unknown device gets a record. Binding again changes nothing.
func (a *Android) Bind(ctx context.Context, d *am.Device) error {
	l := a.Lifecycle
	st, err := l.Settings.Settings(ctx)
	if err != nil {
		return err
	}
	hwSerial, imei := hardware(d)
	refSerial, refEmail := ParseRef(d.EnrollmentTokenData)
	var rec *Record
	refusal := ""
	switch {
	case refSerial != "":
		if rec, err = l.Records.Record(ctx, refSerial); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if rec == nil || rec.Serial != hwSerial && (rec.IMEI == "" || rec.IMEI != imei) {
			refusal = fmt.Sprintf("enrolled with the token of record %s but is serial %s, IMEI %s", refSerial, hwSerial, orNone(imei))
		}
	default:
		if hwSerial != "" {
			if rec, err = l.Records.Record(ctx, hwSerial); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if rec == nil {
			if rec, err = a.recordByIMEI(ctx, imei); err != nil {
				return err
			}
		}
		switch {
		case rec != nil && refEmail != "" && rec.UserEmail != "" && rec.UserEmail != refEmail:
			refusal = fmt.Sprintf("enrolled with the token of user %s but serial %s belongs to %s", refEmail, hwSerial, rec.UserEmail)
		case rec == nil && st.PreEnrolledOnly:
			refusal = fmt.Sprintf("serial %s (IMEI %s) is not pre-enrolled", orNone(hwSerial), orNone(imei))
		}
	}
	now := l.now()
	if refusal != "" {
		blame := refSerial
		if blame == "" && rec != nil {
			blame = rec.Serial
		}
		return a.refuse(ctx, d, blame, refusal, now)
	}
	if rec != nil && rec.EnrollmentID == d.Name && rec.Status == StatusEnrolled {
		return nil // bound already: a status report writes nothing
	}
	if rec == nil && hwSerial == "" {
		return fmt.Errorf("enroll: android device %s reports no serial number", d.Name)
	}
	serial := hwSerial
	if rec != nil {
		serial = rec.Serial
	}
	changed := false
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		changed = false
		if r != nil && r.EnrollmentID == d.Name && r.Status == StatusEnrolled {
			return nil, nil // bound already
		}
		if r == nil {
			r = &Record{Serial: serial, Platform: PlatformAndroid, Ownership: ownershipOf(d), Status: StatusPreApproved,
				Source: SourceEnrollment, IMEI: imei, CreatedAt: now, History: []Event{{At: now, Step: StepCreated, Note: SourceEnrollment}}}
			if refEmail != "" {
				r.UserEmail = refEmail
			}
		} else {
			r = r.Clone()
		}
		if r.IMEI == "" {
			r.IMEI = imei
		}
		r.TokenID, r.EnrollmentID, r.CertFingerprint, r.Applied, r.Removed = d.EnrollmentTokenName, d.Name, "", nil, nil
		r.Status, r.EnrolledAt, r.UpdatedAt = StatusEnrolled, now, now
		r.Log(Event{At: now, Step: StepEnrolled, Enrollment: d.Name, Token: d.EnrollmentTokenName,
			Note: fmt.Sprintf("android %s, %s", d.Ownership, d.ManagementMode)})
		changed = true
		return r, nil
	})
	if err == nil && changed {
		a.log().Info("android: device enrolled", "serial", serial, "device", d.Name, "token", d.EnrollmentTokenName)
	}
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func ownershipOf(d *am.Device) Ownership {
	if d.Ownership == "PERSONALLY_OWNED" {
		return OwnershipPersonal
	}
	return OwnershipCorporate
}

// refuse deletes a device that may not be managed and logs why on the
// record it claimed.
func (a *Android) refuse(ctx context.Context, d *am.Device, serial, reason string, now time.Time) error {
	a.log().Warn("android: device refused; deleting it", "device", d.Name, "reason", reason)
	if err := a.Management.DeleteDevice(ctx, d.Name, nil, "This device is not enrolled with its own enrollment token."); err != nil &&
		!errors.Is(err, zerotouch.ErrNotFound) {
		return err
	}
	if serial != "" {
		_, err := a.Lifecycle.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Log(Event{At: now, Step: StepRefused, Enrollment: d.Name, Token: d.EnrollmentTokenName, Note: reason + "; device deleted"})
			return r, nil
		})
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %s", ErrDeviceRefused, reason)
}

// Sync binds every device of the enterprise, page by page, and returns how
// many it saw and refused.
func (a *Android) Sync(ctx context.Context) (seen, refused int, err error) {
	var devices []*am.Device
	if err := a.Management.Devices(ctx, 100, func(d *am.Device) bool { devices = append(devices, d); return true }); err != nil {
		return 0, 0, err
	}
	for _, d := range devices {
		if d.State == "DELETED" || d.State == "PROVISIONING" {
			continue
		}
		seen++
		if err := a.Bind(ctx, d); errors.Is(err, ErrDeviceRefused) {
			refused++
		} else if err != nil {
			return seen, refused, err
		}
	}
	return seen, refused, a.trackOperations(ctx)
}

// trackOperations asks Google for the commands whose result no push has
// brought, and logs the finished ones.
func (a *Android) trackOperations(ctx context.Context) error {
	var pending []string
	err := a.Lifecycle.Records.Records(ctx, func(r *Record) bool {
		if !isAndroidEnrollment(r.EnrollmentID) {
			return true
		}
		done := map[string]bool{}
		for _, e := range r.History {
			if e.Step == StepCommandResult {
				done[e.Command] = true
			}
		}
		for _, e := range r.History {
			if e.Step == StepCommand && !done[e.Command] {
				pending = append(pending, e.Command)
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, name := range pending {
		op, err := a.Management.Operation(ctx, name)
		if errors.Is(err, zerotouch.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := a.commandDone(ctx, op); err != nil {
			return err
		}
	}
	return nil
}

// HandlePush takes Pub/Sub notifications (zerotouch.PushHandler.Handle):
// an enrollment or status report binds its device; a command's result is
// logged on the device's record.
func (a *Android) HandlePush(ctx context.Context, n *zerotouch.Notification) error {
	switch n.Type {
	case zerotouch.NotifyEnrollment, zerotouch.NotifyStatusReport:
		err := a.Bind(ctx, n.Device)
		if errors.Is(err, ErrDeviceRefused) {
			return nil // handled: the device was deleted
		}
		return err
	case zerotouch.NotifyCommand:
		return a.commandDone(ctx, n.Operation)
	}
	return nil
}

// recordOfDevice finds the record bound to an Android device name.
func (a *Android) recordOfDevice(ctx context.Context, device string) (*Record, error) {
	var found *Record
	err := a.Lifecycle.Records.Records(ctx, func(r *Record) bool {
		if r.EnrollmentID == device {
			found = r
			return false
		}
		return true
	})
	if err == nil && found == nil {
		err = fmt.Errorf("%w: no record bound to %s", ErrNotFound, device)
	}
	return found, err
}

// Command issues a command (LOCK, RESET_PASSWORD, REBOOT, START_LOST_MODE,
// STOP_LOST_MODE...) to the device of a record (by serial) and logs it.
func (a *Android) Command(ctx context.Context, serial string, c *am.Command) (*am.Operation, error) {
	rec, err := a.androidRecord(ctx, serial)
	if err != nil {
		return nil, err
	}
	op, err := a.Management.IssueCommand(ctx, rec.EnrollmentID, c)
	if err != nil {
		return nil, err
	}
	_, err = a.Lifecycle.Records.UpdateRecord(ctx, rec.Serial, func(r *Record) (*Record, error) {
		if r == nil {
			return nil, nil
		}
		r = r.Clone()
		r.Log(Event{At: a.Lifecycle.now(), Step: StepCommand, Enrollment: rec.EnrollmentID, Command: op.Name, Note: c.Type})
		return r, nil
	})
	return op, err
}

// androidRecord returns the record of an enrolled Android device.
func (a *Android) androidRecord(ctx context.Context, serial string) (*Record, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	rec, err := a.Lifecycle.Records.Record(ctx, s)
	if err != nil {
		return nil, err
	}
	if !isAndroidEnrollment(rec.EnrollmentID) {
		return nil, invalidf("%s is not an enrolled android device", s)
	}
	return rec, nil
}

// commandDone logs a finished command on its device's record.
func (a *Android) commandDone(ctx context.Context, op *am.Operation) error {
	if !op.Done {
		return nil
	}
	device, _, ok := strings.Cut(op.Name, "/operations/")
	if !ok {
		return nil
	}
	rec, err := a.recordOfDevice(ctx, device)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var meta struct {
		Type      string `json:"type"`
		ErrorCode string `json:"errorCode"`
	}
	json.Unmarshal(op.Metadata, &meta)
	result := "done"
	if op.Error != nil || meta.ErrorCode != "" {
		result = "failed " + meta.ErrorCode
	}
	_, err = a.Lifecycle.Records.UpdateRecord(ctx, rec.Serial, func(r *Record) (*Record, error) {
		if r == nil {
			return nil, nil
		}
		for _, e := range r.History {
			if e.Step == StepCommandResult && e.Command == op.Name {
				return nil, nil // reported already
			}
		}
		r = r.Clone()
		r.Log(Event{At: a.Lifecycle.now(), Step: StepCommandResult, Enrollment: device, Command: op.Name, Note: meta.Type + " " + result})
		return r, nil
	})
	return err
}

// Wipe deletes a record's device: a company-owned device factory-resets
// (external storage included), a personal one loses its work profile and
// keeps the rest. The record goes wipe-pending, then, when Google has
// accepted the deletion, wiped (company-owned) or unenrolled (personal).
func (a *Android) Wipe(ctx context.Context, serial, reason string) error {
	rec, err := a.androidRecord(ctx, serial)
	if err != nil {
		return err
	}
	l := a.Lifecycle
	now := l.now()
	mark := func(status Status, step Step) error {
		_, err := l.Records.UpdateRecord(ctx, rec.Serial, func(r *Record) (*Record, error) {
			if r == nil {
				return nil, nil
			}
			r = r.Clone()
			r.Status, r.UpdatedAt = status, now
			r.Log(Event{At: now, Step: step, Enrollment: rec.EnrollmentID, Note: reason})
			return r, nil
		})
		return err
	}
	if err := mark(StatusWipePending, StepWipeRequested); err != nil {
		return err
	}
	var flags []string
	if rec.Ownership != OwnershipPersonal {
		flags = []string{zerotouch.WipeExternalStorage}
	}
	if err := a.Management.DeleteDevice(ctx, rec.EnrollmentID, flags, reason); err != nil && !errors.Is(err, zerotouch.ErrNotFound) {
		return err
	}
	if rec.Ownership == OwnershipPersonal {
		return mark(StatusUnenrolled, StepUnenrolled)
	}
	return mark(StatusWiped, StepWiped)
}

// SourceZeroTouch marks records of devices claimed for zero-touch.
const SourceZeroTouch = "zero-touch"

// SyncZeroTouch turns the customer's zero-touch devices into records
// (source zero-touch, corporate, android, with their IMEI), like ADE does
// for Apple; a device already recorded gains its IMEI. It returns how many
// devices it saw.
func (a *Android) SyncZeroTouch(ctx context.Context, group string) (int, error) {
	if a.Provisioning == nil {
		return 0, errors.New("enroll: zero-touch is not configured")
	}
	type claimed struct{ serial, imei, model string }
	var devices []claimed
	err := a.Provisioning.Devices(ctx, func(d *dp.Device) bool {
		if d.DeviceIdentifier == nil {
			return true
		}
		sn, err := NormalizeSerial(d.DeviceIdentifier.SerialNumber)
		if err != nil {
			// Known by IMEI only: the IMEI keys its record.
			sn = d.DeviceIdentifier.Imei
		}
		if sn != "" {
			devices = append(devices, claimed{sn, d.DeviceIdentifier.Imei, d.DeviceIdentifier.Model})
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	serials := make([]string, len(devices))
	bySerial := map[string]claimed{}
	for i, d := range devices {
		serials[i], bySerial[d.serial] = d.serial, d
	}
	now := a.Lifecycle.now()
	err = a.Lifecycle.Records.UpdateRecords(ctx, serials, func(sn string, r *Record) (*Record, error) {
		d := bySerial[sn]
		if r != nil {
			if r.IMEI != "" || d.imei == "" {
				return nil, nil
			}
			r = r.Clone()
			r.IMEI, r.UpdatedAt = d.imei, now
			return r, nil
		}
		r = &Record{Serial: sn, Platform: PlatformAndroid, Ownership: OwnershipCorporate, Status: StatusPreApproved,
			Source: SourceZeroTouch, IMEI: d.imei, DeviceName: d.model, CreatedAt: now, UpdatedAt: now,
			History: []Event{{At: now, Step: StepCreated, Note: SourceZeroTouch}}}
		if group != "" {
			r.Groups = []string{group}
		}
		return r, nil
	})
	return len(devices), err
}
