package enroll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"reflect"
	"slices"
	"strings"
	"time"
)

// ErrInvalid is matched (errors.Is) by the errors that refuse bad input: a
// malformed serial number or email, an unknown platform, ownership or
// field, a bad group name, profile or command.
var ErrInvalid = errors.New("enroll: invalid input")

// An inputError is bad input, its message written for the administrator.
type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &inputError{fmt.Sprintf(format, args...)}
}

// A Platform is the operating-system family of a pre-enrolled device.
type Platform string

// Platforms.
const (
	PlatformIOS     Platform = "ios"     // iPhone and iPad
	PlatformMacOS   Platform = "macos"   // the seed's "apple"
	PlatformAndroid Platform = "android" // Android Enterprise
)

// ParsePlatform reads a platform as administrators write it: any case, with
// "apple", "mac" and "osx" meaning macOS and "ipados" meaning iOS.
func ParsePlatform(s string) (Platform, error) {
	switch squash(s) {
	case "ios", "ipados", "iphone", "ipad":
		return PlatformIOS, nil
	case "apple", "macos", "mac", "osx":
		return PlatformMacOS, nil
	case "android":
		return PlatformAndroid, nil
	}
	return "", invalidf("unknown platform %q (want android, ios or apple)", s)
}

// Ownership says who owns a device, and so what the organisation may do
// to it.
type Ownership string

// Ownerships. With SelectUser the user chooses at enrollment.
const (
	OwnershipPersonal   Ownership = "personal"
	OwnershipCorporate  Ownership = "corporate"
	OwnershipSelectUser Ownership = "selectuser"
)

// ParseOwnership reads an ownership in any case, with or without spaces,
// hyphens or underscores ("Select User", "select_user").
func ParseOwnership(s string) (Ownership, error) {
	switch squash(s) {
	case "personal":
		return OwnershipPersonal, nil
	case "corporate":
		return OwnershipCorporate, nil
	case "selectuser":
		return OwnershipSelectUser, nil
	}
	return "", invalidf("unknown ownership %q (want personal, corporate or selectuser)", s)
}

// A Status is where a pre-enrolled device is in its life:
// pre-approved → invited → enrolled → (unenrolled | wipe-pending → wiped).
type Status string

// Statuses.
const (
	StatusPreApproved Status = "pre-approved"
	StatusInvited     Status = "invited"
	StatusEnrolled    Status = "enrolled"
	StatusUnenrolled  Status = "unenrolled"
	StatusWipePending Status = "wipe-pending"
	StatusWiped       Status = "wiped"
)

// Sources of records.
const (
	SourceCSV        = "csv"
	SourceEnrollment = "enrollment" // an unknown device enrolled while the restriction was off
	SourceADE        = "ade"        // Apple Automated Device Enrollment
)

// Refs name what an enrollment link or a challenge was minted for, in their
// For fields: "record:SERIAL" or "user:EMAIL".
const (
	refRecord = "record:"
	refUser   = "user:"
)

// RecordRef is the For of a link minted for a record.
func RecordRef(serial string) string { return refRecord + serial }

// UserRef is the For of a link minted for a user.
func UserRef(email string) string { return refUser + email }

// ParseRef splits a For into the serial or the email it names; both are
// empty for anything else (a free-form note of an unbound link).
func ParseRef(ref string) (serial, email string) {
	if s, ok := strings.CutPrefix(ref, refRecord); ok {
		return s, ""
	}
	if e, ok := strings.CutPrefix(ref, refUser); ok {
		return "", e
	}
	return "", ""
}

// A Record is a device known before it enrols, keyed by its serial number.
type Record struct {
	Serial     string    `json:"serial"` // upper case
	Platform   Platform  `json:"platform"`
	Ownership  Ownership `json:"ownership"`
	UserEmail  string    `json:"user_email,omitempty"` // lower case; the User's key
	UserName   string    `json:"user_name,omitempty"`
	Mobile     string    `json:"mobile,omitempty"`
	DeviceName string    `json:"device_name,omitempty"`
	IMEI       string    `json:"imei,omitempty"` // Android devices, for zero-touch and matching
	Groups     []string  `json:"groups,omitempty"`
	Status     Status    `json:"status"`
	Source     string    `json:"source"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`

	// The links of the identity chain of the device's current enrollment,
	// each written when the step happens: the enrollment token (link) it
	// used, its identity certificate and its MDM enrollment.
	TokenID         string `json:"token_id,omitempty"`
	CertFingerprint string `json:"cert_fingerprint,omitempty"`
	EnrollmentID    string `json:"enrollment_id,omitempty"`
	// EnrolledAt is when the current enrollment completed (its first
	// TokenUpdate).
	EnrolledAt time.Time `json:"enrolled_at,omitzero"`
	// Applied maps the assignments queued for the current enrollment to
	// the UUID of the command that carried them, so each is queued once.
	Applied map[string]string `json:"applied,omitempty"`
	// Removed maps the profile assignments taken away from the current
	// enrollment (the record left their group) to the UUID of the
	// RemoveProfile that took them away.
	Removed map[string]string `json:"removed,omitempty"`
	// History is the record's life, oldest first, appended as it happens.
	History []Event `json:"history,omitempty"`
	// ADE is what Apple's device assignment service says of the device,
	// for a device assigned to one of the organisation's ADE servers.
	ADE *ADEDevice `json:"ade,omitempty"`
}

// An ADEDevice is a record's device as Apple Business Manager has it.
type ADEDevice struct {
	Token        string    `json:"token"` // the server token's name
	Model        string    `json:"model,omitempty"`
	Description  string    `json:"description,omitempty"`
	Color        string    `json:"color,omitempty"`
	AssetTag     string    `json:"asset_tag,omitempty"`
	OS           string    `json:"os,omitempty"`
	DeviceFamily string    `json:"device_family,omitempty"`
	AssignedDate time.Time `json:"device_assigned_date,omitzero"`
	// ProfileUUID and ProfileStatus are the ADE profile Apple has for the
	// device.
	ProfileUUID   string `json:"profile_uuid,omitempty"`
	ProfileStatus string `json:"profile_status,omitempty"`
	// AssignProfile, AssignResult and AssignedAt are our last request to
	// assign a profile and Apple's answer (SUCCESS, NOT_ACCESSIBLE,
	// FAILED).
	AssignProfile string    `json:"assign_profile,omitempty"`
	AssignResult  string    `json:"assign_result,omitempty"`
	AssignedAt    time.Time `json:"assigned_at,omitzero"`
	// DeletedAt is when a sync said the device left the server;
	// DisownedAt when we disowned it.
	DeletedAt  time.Time `json:"deleted_at,omitzero"`
	DisownedAt time.Time `json:"disowned_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// A Step is a kind of Event in a record's history.
type Step string

// Steps.
const (
	StepCreated               Step = "created"                // Note: the source
	StepLinkMinted            Step = "link-minted"            // Token: an enrollment link minted for the record
	StepInvited               Step = "invited"                // Token, Note: an invitation with that link went out (channel, address, ring)
	StepReminded              Step = "reminded"               // Token, Note: a reminder went out
	StepAuthenticated         Step = "authenticated"          // Enrollment, Cert, Token: admitted at Authenticate
	StepRefused               Step = "refused"                // Note: why an Authenticate was refused
	StepEnrolled              Step = "enrolled"               // Enrollment: the first TokenUpdate
	StepAwaitingConfiguration Step = "awaiting-configuration" // Enrollment: held in Setup Assistant until DeviceConfigured
	StepReleased              Step = "released"               // Command, Note: DeviceConfigured queued, and why then
	StepConfigured            Step = "configured"             // Enrollment: DeviceConfigured acknowledged; Setup Assistant goes on
	StepAssigned              Step = "assigned"               // Assignment, Command: an assignment queued
	StepUnassigned            Step = "unassigned"             // Assignment, Command: the record left the group; its profile removed (Command: the RemoveProfile)
	StepOffboarding           Step = "offboarding"            // Note: the identity provider's event that started offboarding, and what will be done
	StepOffboardingCancelled  Step = "offboarding-cancelled"  // Note: who cancelled and why
	StepUnmanageRequested     Step = "unmanage-requested"     // Command, Note: RemoveProfile of the MDM profile queued (Android: the work profile deleted)
	StepUnenrolled            Step = "unenrolled"             // Enrollment: CheckOut
	StepWipeRequested         Step = "wipe-requested"         // Command: EraseDevice queued
	StepWiped                 Step = "wiped"                  // Command: EraseDevice acknowledged
	StepCertRevoked           Step = "cert-revoked"           // Cert: revoked after the wipe
	StepADEAssigned           Step = "ade-assigned"           // Note: ADE profile and Apple's answer
	StepADEDeleted            Step = "ade-deleted"            // Note: the token whose server the device left
	StepADEDisowned           Step = "ade-disowned"           // disowned in Apple Business Manager
	StepADEProfile            Step = "ade-profile"            // Token: enrollment profile served for the device's MachineInfo
	StepReset                 Step = "reset"                  // Note: the status before; links forgotten
	StepCommand               Step = "command"                // Command: an Android command issued (Note: its type)
	StepCommandResult         Step = "command-result"         // Command: an Android command finished (Note: type and result)
)

// An Event is one step in the life of a record, with the ids of the links
// it involved.
type Event struct {
	At         time.Time `json:"at"`
	Step       Step      `json:"step"`
	Enrollment string    `json:"enrollment,omitempty"`
	Token      string    `json:"token,omitempty"`
	Cert       string    `json:"cert,omitempty"`
	Command    string    `json:"command,omitempty"`
	Assignment string    `json:"assignment,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// maxHistory bounds a record's history; the oldest events after the first
// (its creation) are dropped.
const maxHistory = 200

// Log appends an event to the record's history.
func (r *Record) Log(e Event) {
	if len(r.History) >= maxHistory {
		r.History = append(r.History[:1], r.History[len(r.History)-maxHistory+2:]...)
	}
	r.History = append(r.History, e)
}

// InGroup reports whether the record, or its user (u may be nil), is in a
// group.
func (r *Record) InGroup(group string, u *User) bool {
	return slices.Contains(r.Groups, group) || u != nil && slices.Contains(u.Groups, group)
}

// InGroup reports whether the user is in a group.
func (u *User) InGroup(group string) bool { return slices.Contains(u.Groups, group) }

// A User is a person devices are enrolled for, keyed by email address.
type User struct {
	Email     string    `json:"email"` // lower case
	Name      string    `json:"name"`
	Mobile    string    `json:"mobile,omitempty"`
	Ownership Ownership `json:"ownership,omitempty"` // for users imported without devices
	Groups    []string  `json:"groups,omitempty"`
	// Directory is the identity provider's user this user mirrors,
	// "SOURCE:ID" (scim:…, google:…); empty for a user Custody made.
	Directory string `json:"directory,omitempty"`
	// Deactivated is when the identity provider deactivated, suspended
	// or deleted the user; zero while it is active.
	Deactivated time.Time `json:"deactivated,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// NormalizeSerial returns a serial number as records are keyed: trimmed and
// upper case. It refuses anything but letters, digits and hyphens, up to 64
// characters.
func NormalizeSerial(s string) (string, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" || len(s) > 64 {
		return "", invalidf("bad serial number %q (want 1 to 64 letters, digits or hyphens)", s)
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "", invalidf("bad serial number %q (want letters, digits or hyphens)", s)
		}
	}
	return s, nil
}

// NormalizeIMEI returns an IMEI as 14 to 16 digits, without the spaces,
// hyphens or slashes people write in it.
func NormalizeIMEI(s string) (string, error) {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			b.WriteRune(c)
		case c == ' ' || c == '-' || c == '/':
		default:
			return "", invalidf("bad IMEI %q (want 14 to 16 digits)", s)
		}
	}
	if n := b.Len(); n < 14 || n > 16 {
		return "", invalidf("bad IMEI %q (want 14 to 16 digits)", s)
	}
	return b.String(), nil
}

// NormalizeEmail returns a bare email address in lower case, or an error
// for anything else (a display name, angle brackets, no domain).
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", invalidf("bad email %q", s)
	}
	return strings.ToLower(s), nil
}

// squash lowers s and drops spaces, hyphens, underscores and dots, so that
// "Serial Number", "serial_number" and "SerialNumber" read alike.
func squash(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(strings.TrimSpace(s)) {
		switch c {
		case ' ', '-', '_', '.', '\t':
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// A RecordStore keeps pre-enrollment records and users.
type RecordStore interface {
	// Import creates or updates records (by serial) and users (by email)
	// in one transaction: all of them or none. Existing ones are merged
	// with MergeRecord and MergeUser.
	Import(ctx context.Context, records []*Record, users []*User, now time.Time) (*ImportStats, error)
	// Record returns the record of a serial number, or ErrNotFound.
	Record(ctx context.Context, serial string) (*Record, error)
	// Records calls fn for each record in serial order until fn returns
	// false.
	Records(ctx context.Context, fn func(*Record) bool) error
	// User returns the user with an email address, or ErrNotFound.
	User(ctx context.Context, email string) (*User, error)
	// Users calls fn for each user in email order until fn returns false.
	Users(ctx context.Context, fn func(*User) bool) error
	// UpdateRecord calls fn with the record of a serial (nil when there is
	// none) and stores the record fn returns, in one transaction; fn
	// returns nil to change nothing, and must not modify its argument (it
	// may run more than once). UpdateRecord returns the record as stored
	// afterwards, nil when there is none.
	UpdateRecord(ctx context.Context, serial string, fn func(*Record) (*Record, error)) (*Record, error)
	// UpdateRecords is UpdateRecord for several serial numbers in one
	// transaction; fn is called once per serial with its record (nil when
	// there is none).
	UpdateRecords(ctx context.Context, serials []string, fn func(serial string, r *Record) (*Record, error)) error
	// UpdateUser is UpdateRecord for users.
	UpdateUser(ctx context.Context, email string, fn func(*User) (*User, error)) (*User, error)
}

// ImportStats counts what an import did.
type ImportStats struct {
	RecordsCreated   int `json:"records_created"`
	RecordsUpdated   int `json:"records_updated"`
	RecordsUnchanged int `json:"records_unchanged"`
	UsersCreated     int `json:"users_created"`
	UsersUpdated     int `json:"users_updated"`
	UsersUnchanged   int `json:"users_unchanged"`
}

// MergeRecord returns what a stored record becomes when imported again:
// the imported user, ownership, platform, device name and mobile (where
// given), its groups added to the stored ones; its status, source and
// creation time kept. It reports whether anything changed. With no stored
// record, the imported one is created at now.
func MergeRecord(stored, imported *Record, now time.Time) (*Record, bool) {
	if stored == nil {
		r := *imported
		r.Groups = slices.Clone(imported.Groups)
		r.CreatedAt, r.UpdatedAt = now, now
		r.History = []Event{{At: now, Step: StepCreated, Note: r.Source}}
		return &r, true
	}
	r := *stored
	r.Groups = slices.Clone(stored.Groups)
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&r.UserEmail, imported.UserEmail)
	set(&r.UserName, imported.UserName)
	set(&r.Mobile, imported.Mobile)
	set(&r.DeviceName, imported.DeviceName)
	set(&r.IMEI, imported.IMEI)
	if imported.Platform != "" {
		r.Platform = imported.Platform
	}
	if imported.Ownership != "" {
		r.Ownership = imported.Ownership
	}
	r.Groups = mergeGroups(r.Groups, imported.Groups)
	if reflect.DeepEqual(&r, stored) {
		return stored, false
	}
	r.UpdatedAt = now
	return &r, true
}

// MergeUser is MergeRecord for users.
func MergeUser(stored, imported *User, now time.Time) (*User, bool) {
	if stored == nil {
		u := *imported
		u.Groups = slices.Clone(imported.Groups)
		u.CreatedAt, u.UpdatedAt = now, now
		return &u, true
	}
	u := *stored
	u.Groups = slices.Clone(stored.Groups)
	if imported.Name != "" {
		u.Name = imported.Name
	}
	if imported.Mobile != "" {
		u.Mobile = imported.Mobile
	}
	if imported.Ownership != "" {
		u.Ownership = imported.Ownership
	}
	u.Groups = mergeGroups(u.Groups, imported.Groups)
	if reflect.DeepEqual(&u, stored) {
		return stored, false
	}
	u.UpdatedAt = now
	return &u, true
}

// Clone returns a copy of r that shares nothing with it.
func (r *Record) Clone() *Record {
	c := *r
	c.Groups = slices.Clone(r.Groups)
	c.History = slices.Clone(r.History)
	c.Applied = maps.Clone(r.Applied)
	c.Removed = maps.Clone(r.Removed)
	if r.ADE != nil {
		ade := *r.ADE
		c.ADE = &ade
	}
	return &c
}

// Clone returns a copy of u that shares nothing with it.
func (u *User) Clone() *User {
	c := *u
	c.Groups = slices.Clone(u.Groups)
	return &c
}

func mergeGroups(have, add []string) []string {
	for _, g := range add {
		if !slices.Contains(have, g) {
			have = append(have, g)
		}
	}
	return have
}
