package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned for an offboarding or a group that does not
// exist.
var ErrNotFound = errors.New("directory: not found")

// Settings say what the directory mirrors and how it offboards.
type Settings struct {
	// Scope, when not empty, limits mirroring to the members of these
	// groups (by group key, "scim:ID", or display name); only these groups
	// become Custody groups. Empty mirrors everyone and every group.
	Scope []string `json:"scope,omitempty"`
	// Grace is how long offboarding waits after the identity provider's
	// event before it acts on devices; an administrator may cancel it
	// meanwhile, and reactivating the user cancels it.
	Grace Duration `json:"grace"`
	// DryRun plans offboardings and records what they would do, and does
	// nothing to devices.
	DryRun bool `json:"dry_run"`
	// Disabled turns offboarding off: deactivated users keep their
	// devices managed as they are.
	Disabled bool `json:"disabled,omitempty"`
}

// DefaultGrace is the grace period until an administrator sets one.
const DefaultGrace = Duration(4 * time.Hour)

// DefaultSettings are the settings until any are stored.
func DefaultSettings() *Settings { return &Settings{Grace: DefaultGrace} }

// A Duration is a time.Duration written in JSON as Go writes durations
// ("4h0m0s").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("directory: a duration is a string like \"4h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("directory: bad duration %q (want 0s, 30m, 4h...)", s)
	}
	*d = Duration(v)
	return nil
}

// A GroupRecord is a mirrored group: the Custody group Key stands for the
// provider's group, whose name may change.
type GroupRecord struct {
	Key       string    `json:"key"` // SOURCE:ID
	Source    string    `json:"source"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	UpdatedAt time.Time `json:"updated_at"`
}

// An OffboardingState is where an offboarding is.
type OffboardingState string

// Offboarding states.
const (
	OffboardingPending   OffboardingState = "pending"   // waiting for its grace period to end
	OffboardingDone      OffboardingState = "done"      // every device acted on
	OffboardingFailed    OffboardingState = "failed"    // some action failed (see the devices); retried
	OffboardingCancelled OffboardingState = "cancelled" // by an administrator or by reactivation
	OffboardingDryRun    OffboardingState = "dry-run"   // planned with dry-run on: nothing was done
)

// Device actions of an offboarding.
const (
	ActionErase             = "erase"               // Apple corporate: EraseDevice
	ActionUnmanage          = "unmanage"            // Apple personal: the MDM profile and all it installed removed
	ActionDelete            = "delete"              // Android corporate: devices.delete, factory reset
	ActionRemoveWorkProfile = "remove-work-profile" // Android personal: devices.delete, work profile removed
	ActionNone              = "none"                // not enrolled: nothing to do on the device
)

// A DeviceAction is what an offboarding does to one device.
type DeviceAction struct {
	Serial    string    `json:"serial"`
	Platform  string    `json:"platform"`
	Ownership string    `json:"ownership"`
	Action    string    `json:"action"`
	Done      time.Time `json:"done,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// An Offboarding takes a departed user's devices out of management: it
// is planned when the identity provider deactivates the user and acts
// when its grace period ends.
type Offboarding struct {
	ID        string           `json:"id"`
	Email     string           `json:"email"`
	Directory string           `json:"directory"` // SOURCE:ID of the user
	Event     string           `json:"event"`     // what the identity provider did, and who said so
	State     OffboardingState `json:"state"`
	DryRun    bool             `json:"dry_run,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	DueAt     time.Time        `json:"due_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	// Devices are the actions: planned when the offboarding starts,
	// planned again from the records when it acts.
	Devices []DeviceAction `json:"devices"`
	// Note says why it was cancelled (and by whom) or why it failed.
	Note string `json:"note,omitempty"`
}

// An AuditEntry is one thing the directory did, and on whose word.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`   // "scim token okta", "google sync", "admin"
	Action  string    `json:"action"`  // user-created, user-deactivated, group-renamed, offboarding-started...
	Subject string    `json:"subject"` // an email, a group key, an offboarding id
	Detail  string    `json:"detail,omitempty"`
}

// A Store keeps what the directory needs beside enrollment records and
// users: mirrored groups, the provider's user ids, offboardings, the
// audit log and the settings.
type Store interface {
	// Settings returns the stored settings, DefaultSettings when none.
	Settings(ctx context.Context) (*Settings, error)
	PutSettings(ctx context.Context, s *Settings) error

	PutGroup(ctx context.Context, g *GroupRecord) error
	// DeleteGroup removes a group; ErrNotFound when there is none.
	DeleteGroup(ctx context.Context, key string) error
	// Groups calls fn for each group in key order until it returns false.
	Groups(ctx context.Context, fn func(*GroupRecord) bool) error

	// Link returns the email of the Custody user a provider's user
	// (SOURCE:ID) is mirrored as, "" when none.
	Link(ctx context.Context, key string) (string, error)
	// SetLinks links providers' users (SOURCE:ID) to emails, in one
	// transaction; an email "" unlinks.
	SetLinks(ctx context.Context, links map[string]string) error

	// PutOffboarding stores an offboarding, replacing one with its ID.
	PutOffboarding(ctx context.Context, o *Offboarding) error
	// UpdateOffboarding applies fn to an offboarding (ErrNotFound when
	// none) in one transaction, stores what it returns unless nil, and
	// returns the stored offboarding.
	UpdateOffboarding(ctx context.Context, id string, fn func(*Offboarding) (*Offboarding, error)) (*Offboarding, error)
	// Offboardings calls fn for each offboarding, oldest first, until it
	// returns false.
	Offboardings(ctx context.Context, fn func(*Offboarding) bool) error

	// Audit appends entries to the audit log, numbering them.
	Audit(ctx context.Context, entries ...*AuditEntry) error
	// AuditLog calls fn for each entry after seq, oldest first, until it
	// returns false.
	AuditLog(ctx context.Context, after uint64, fn func(*AuditEntry) bool) error
}
