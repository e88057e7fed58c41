package mdm

import (
	"context"
	"errors"
	"time"
)

// Store errors.
var (
	ErrNotFound       = errors.New("mdm: not found")
	ErrUnknownCommand = errors.New("mdm: no such command in this enrollment's queue")
)

// An Enrollment is one MDM channel: a device (ID is its UDID, or its
// EnrollmentID for a user enrollment) or a user on a device (ID is
// "device:user").
type Enrollment struct {
	ID       string `json:"id"`
	DeviceID string `json:"device_id"` // the device's ID; equal to ID on the device channel
	UserID   string `json:"user_id,omitempty"`

	// From Authenticate.
	SerialNumber string `json:"serial_number,omitempty"`
	Model        string `json:"model,omitempty"`
	ModelName    string `json:"model_name,omitempty"`
	DeviceName   string `json:"device_name,omitempty"`
	OSVersion    string `json:"os_version,omitempty"`
	BuildVersion string `json:"build_version,omitempty"`
	ProductName  string `json:"product_name,omitempty"`
	IMEI         string `json:"imei,omitempty"`
	MEID         string `json:"meid,omitempty"`

	// From TokenUpdate.
	Topic        string `json:"topic,omitempty"`
	PushMagic    string `json:"push_magic,omitempty"`
	Token        []byte `json:"token,omitempty"`
	TokenInvalid bool   `json:"token_invalid,omitempty"` // APNs said 410 Unregistered
	UnlockToken  []byte `json:"unlock_token,omitempty"`

	BootstrapToken []byte `json:"bootstrap_token,omitempty"`

	// Enabled is true between a TokenUpdate and the next Authenticate or
	// CheckOut: only then may the server push and queue.
	Enabled bool `json:"enabled"`
	// CertFingerprint is the identity certificate bound to the enrollment.
	CertFingerprint string `json:"cert_fingerprint,omitempty"`

	// WipedAt is when the device acknowledged EraseDevice.
	WipedAt time.Time `json:"wiped_at,omitzero"`

	// AwaitingConfiguration is what the device channel's last TokenUpdate
	// said: the device waits in Setup Assistant (ADE with
	// await_device_configured) for the DeviceConfigured command.
	// AwaitingSince is when it started to wait, and ConfiguredAt when it
	// acknowledged DeviceConfigured.
	AwaitingConfiguration bool      `json:"awaiting_configuration,omitempty"`
	AwaitingSince         time.Time `json:"awaiting_since,omitzero"`
	ConfiguredAt          time.Time `json:"configured_at,omitzero"`

	CreatedAt     time.Time `json:"created_at"`
	AuthenticAt   time.Time `json:"authenticated_at,omitzero"`
	TokenUpdateAt time.Time `json:"token_update_at,omitzero"`
	LastSeenAt    time.Time `json:"last_seen_at,omitzero"`
}

// TakeTokenUpdate copies into e what a TokenUpdate u brings (the push
// details, a new unlock token, whether the device awaits configuration,
// the times) and enables e, as Store.TokenUpdated does to a stored
// enrollment.
func (e *Enrollment) TakeTokenUpdate(u *Enrollment) {
	e.Topic, e.PushMagic, e.Token, e.TokenInvalid = u.Topic, u.PushMagic, u.Token, false
	if len(u.UnlockToken) > 0 {
		e.UnlockToken = u.UnlockToken
	}
	switch {
	case !u.AwaitingConfiguration:
		e.AwaitingSince = time.Time{}
	case !e.AwaitingConfiguration || e.AwaitingSince.IsZero():
		e.AwaitingSince = u.TokenUpdateAt
	}
	e.AwaitingConfiguration = u.AwaitingConfiguration
	e.TokenUpdateAt, e.LastSeenAt = u.TokenUpdateAt, u.LastSeenAt
	e.Enabled = true
}

// A QueuedCommand is a command waiting in an enrollment's queue.
type QueuedCommand struct {
	UUID        string    `json:"uuid"`
	RequestType string    `json:"request_type"`
	Payload     []byte    `json:"payload"` // the plist sent to the device
	EnqueuedAt  time.Time `json:"enqueued_at"`
	// NotNow is set when the device answered NotNow; the command is sent
	// again at the device's next Idle.
	NotNow bool `json:"not_now,omitempty"`
}

// A Result is a device's answer to a command, kept with the raw plist.
type Result struct {
	EnrollmentID string    `json:"enrollment_id"`
	CommandUUID  string    `json:"command_uuid"`
	RequestType  string    `json:"request_type"`
	Status       string    `json:"status"`
	Raw          []byte    `json:"raw"`
	ReceivedAt   time.Time `json:"received_at"`
}

// A ResultUpdate looks at a complete result and returns the change it
// makes to its enrollment, or nil when it makes none (most results).
type ResultUpdate func(*Result) func(*Enrollment)

// Store keeps enrollments, their certificate bindings and command queues.
// Each method is one transaction.
type Store interface {
	// Authenticated records an Authenticate: it creates or replaces the
	// device's enrollment with e (disabled), clears the queues of the
	// device and of its user channels, and binds e.CertFingerprint to it,
	// removing the certificate's binding to any other enrollment.
	Authenticated(ctx context.Context, e *Enrollment) error
	// TokenUpdated stores the push details of e and enables it, creating a
	// user-channel enrollment on its first TokenUpdate. Fields other than
	// the push details, LastSeenAt and TokenUpdateAt are taken only when
	// the enrollment is new.
	TokenUpdated(ctx context.Context, e *Enrollment) error
	// Disable disables an enrollment (CheckOut) and those of its user
	// channels when it is a device.
	Disable(ctx context.Context, id string) error
	// Enrollment returns one enrollment, or ErrNotFound.
	Enrollment(ctx context.Context, id string) (*Enrollment, error)
	// Enrollments calls fn for each enrollment in ID order until fn
	// returns false.
	Enrollments(ctx context.Context, fn func(*Enrollment) bool) error
	// Update applies fn to a stored enrollment and stores the result
	// (bootstrap token, invalid push token, last seen, binding changes).
	Update(ctx context.Context, id string, fn func(*Enrollment) error) error

	// EnrollmentForCert returns the ID of the enrollment a certificate is
	// bound to, or ErrNotFound.
	EnrollmentForCert(ctx context.Context, fingerprint string) (string, error)
	// BindCert binds a certificate to an enrollment, replacing the
	// enrollment's previous binding (SCEP renewal).
	BindCert(ctx context.Context, id, fingerprint string) error

	// Enqueue appends cmd to the queue of each enrollment in ids.
	Enqueue(ctx context.Context, ids []string, cmd *QueuedCommand) error
	// NextCommand returns the first command in an enrollment's queue,
	// skipping commands answered NotNow when skipNotNow is set, or nil.
	NextCommand(ctx context.Context, id string, skipNotNow bool) (*QueuedCommand, error)
	// StoreResult records a result for a command in the enrollment's
	// queue: Acknowledged, Error and CommandFormatError remove it, NotNow
	// marks it. An empty RequestType is filled in from the queued command.
	// If update is not nil it is called with r complete, and the change it
	// returns, if any, is applied to the enrollment in the same
	// transaction (a wipe recorded with its EraseDevice result). It
	// returns ErrUnknownCommand if the command is not queued for this
	// enrollment, and then stores nothing.
	StoreResult(ctx context.Context, r *Result, update ResultUpdate) error
	// Queue returns an enrollment's queued commands in order.
	Queue(ctx context.Context, id string) ([]*QueuedCommand, error)
	// Results returns the results an enrollment has sent, oldest first.
	Results(ctx context.Context, id string) ([]*Result, error)
}
