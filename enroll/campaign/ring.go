package campaign

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// Errors of the campaign store and jobs. Missing rings and bad input are
// enroll.ErrNotFound and enroll.ErrInvalid, as for the rest of the
// lifecycle.
var (
	ErrExists = errors.New("campaign: already exists")
	ErrBusy   = errors.New("campaign: a job is under way")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{enroll.ErrInvalid}, args...)...)
}

// A Ring is a cohort of a migration: users and devices invited together,
// with a schedule.
type Ring struct {
	Name string `json:"name"`
	// Group makes every record and user of an enroll group a member, as
	// the group is when the ring is read (a directory group synced into
	// Custody is such a group).
	Group string `json:"group,omitempty"`
	// Members are named explicitly, as refs (enroll.RecordRef,
	// enroll.UserRef), for example from a column of a CSV file.
	Members []string `json:"members,omitempty"`
	// NotBefore holds invitations back until then; Deadline is when the
	// ring should have enrolled. Either may be zero.
	NotBefore time.Time `json:"not_before,omitzero"`
	Deadline  time.Time `json:"deadline,omitzero"`
	// Channel is how the ring is invited: ChannelEmail (the default) or
	// ChannelWebhook.
	Channel string `json:"channel,omitempty"`
	// HelpDesk is where the ring's users get help (a phone number, an
	// address, a link), for the templates.
	HelpDesk string `json:"help_desk,omitempty"`
	// What happens once the deadline has passed, to the members whose
	// devices have not enrolled: they join OverdueGroup (whose
	// assignments can restrict them), and a last reminder goes out when
	// RemindOverdue is set. DeadlineActed is when that was done.
	OverdueGroup  string    `json:"overdue_group,omitempty"`
	RemindOverdue bool      `json:"remind_overdue,omitempty"`
	DeadlineActed time.Time `json:"deadline_acted,omitzero"`
	CreatedAt     time.Time `json:"created_at"`
}

// Channels an invitation can go through.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook" // SMS, Teams, Slack and the like, through a bridge
)

// Check validates a ring before it is stored.
func (r *Ring) Check() error {
	if err := checkName(r.Name); err != nil {
		return err
	}
	if r.Group == "" && len(r.Members) == 0 {
		return invalidf("ring %s has no members: give a group or members", r.Name)
	}
	for _, m := range r.Members {
		if s, e := enroll.ParseRef(m); s == "" && e == "" {
			return invalidf("ring member %q is neither record:SERIAL nor user:EMAIL", m)
		}
	}
	switch r.Channel {
	case "", ChannelEmail, ChannelWebhook:
	default:
		return invalidf("channel %q (want email or webhook)", r.Channel)
	}
	if !r.NotBefore.IsZero() && !r.Deadline.IsZero() && r.Deadline.Before(r.NotBefore) {
		return invalidf("ring %s: the deadline %s is before its start %s", r.Name,
			r.Deadline.Format(time.RFC3339), r.NotBefore.Format(time.RFC3339))
	}
	return nil
}

// checkName accepts ring names that are safe in URLs and file names.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return invalidf("ring name %q: want 1 to 64 letters, digits, '-', '_' or '.'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return invalidf("ring name %q: want letters, digits, '-', '_' or '.'", name)
		}
	}
	return nil
}

// A Job sends one message (an invitation or a reminder) to each of a set
// of a ring's targets, fixed when the job is created. It is durable: each
// target's Delivery is written before its message goes out and again when
// the server has answered, so a job interrupted at any point resumes where
// it stopped.
type Job struct {
	Ring    string    `json:"ring"`
	ID      int       `json:"id"` // 1, 2, ... within the ring
	Kind    string    `json:"kind"`
	Channel string    `json:"channel"`
	State   string    `json:"state"`
	Total   int       `json:"total"`
	Created time.Time `json:"created"`
	// Finished is when the job was done, failed or paused.
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"` // why it failed
}

// Kinds of job.
const (
	KindInvitation = "invitation"
	KindReminder   = "reminder"
)

// Job states. A queued or running job is run (resumed) by the server; a
// paused one waits to be resumed; done and failed ones are finished (a
// failed job can be resumed once its cause is fixed).
const (
	JobQueued  = "queued"
	JobRunning = "running"
	JobPaused  = "paused"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Unfinished reports whether the job still has messages to send.
func (j *Job) Unfinished() bool { return j.State != JobDone }

// A Delivery is one message of a job to one target, and what became of
// it.
type Delivery struct {
	Ring   string `json:"ring"`
	Job    int    `json:"job"`
	Seq    int    `json:"seq"` // the order in which the job sends
	Target Target `json:"target"`
	State  string `json:"state"` // "" (not yet), sending, sent, failed
	// Sends counts the times the message was handed to the server; more
	// than one means the job was interrupted between the server accepting
	// it and the write that says so, and the user may have it twice.
	Sends    int       `json:"sends,omitempty"`
	Attempts int       `json:"attempts,omitempty"` // tries, temporary failures included
	Token    string    `json:"token,omitempty"`    // the enrollment link's token (Apple) or enrollment token name (Android)
	At       time.Time `json:"at,omitzero"`        // when it was sent or failed
	Code     int       `json:"code,omitempty"`     // the server's reply code (SMTP or HTTP) of a failure
	Error    string    `json:"error,omitempty"`
}

// Delivery states.
const (
	DeliveryPending = ""
	DeliverySending = "sending"
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"
)

// Duplicates is how many more times than once the message may have
// reached its user.
func (d *Delivery) Duplicates() int { return max(d.Sends-1, 0) }

// A Target is who a message goes to: a pre-enrolled device (its record)
// or, for a member without one, the user, whose own link enrolls any
// device.
type Target struct {
	Ref       string           `json:"ref"` // enroll.RecordRef or enroll.UserRef
	Email     string           `json:"email,omitempty"`
	Name      string           `json:"name,omitempty"`
	Mobile    string           `json:"mobile,omitempty"`
	Platform  enroll.Platform  `json:"platform,omitempty"` // empty for a user
	Ownership enroll.Ownership `json:"ownership,omitempty"`
	Device    string           `json:"device,omitempty"` // the record's device name
}

// Store keeps rings, jobs and deliveries. Rings are keyed by name, jobs by
// ring and number, deliveries by ring, job and sequence number.
type Store interface {
	// CreateRing stores a new ring; ErrExists if the name is taken.
	CreateRing(ctx context.Context, r *Ring) error
	// Ring returns a ring, or enroll.ErrNotFound.
	Ring(ctx context.Context, name string) (*Ring, error)
	// Rings calls fn for each ring in name order until it returns false.
	Rings(ctx context.Context, fn func(*Ring) bool) error
	// UpdateRing applies fn to a ring (enroll.ErrNotFound if there is
	// none) and stores what it returns unless that is nil.
	UpdateRing(ctx context.Context, name string, fn func(*Ring) (*Ring, error)) (*Ring, error)
	// DeleteRing deletes a ring with its jobs and deliveries.
	DeleteRing(ctx context.Context, name string) error

	// CreateJob numbers a new job of its ring (the ring's last job + 1),
	// and stores it with its deliveries (numbered from 1 in the order
	// given) in one transaction.
	CreateJob(ctx context.Context, j *Job, targets []Target) (*Job, error)
	// Jobs calls fn for a ring's jobs, oldest first, until it returns
	// false; with ring "", for every ring's.
	Jobs(ctx context.Context, ring string, fn func(*Job) bool) error
	// UpdateJob applies fn to a job and stores what it returns unless nil.
	UpdateJob(ctx context.Context, ring string, id int, fn func(*Job) (*Job, error)) (*Job, error)
	// Deliveries calls fn for a job's deliveries in sequence order (for
	// job 0: every job of the ring, oldest first) until it returns false.
	Deliveries(ctx context.Context, ring string, job int, fn func(*Delivery) bool) error
	// PutDeliveries writes deliveries in one transaction: a job's step is
	// the outcome of one message and the start of the next, so that at
	// most one message of a job is ever in flight.
	PutDeliveries(ctx context.Context, ds ...*Delivery) error
}

// Targets resolves a ring's members to whom its messages go, sorted by
// ref: each pre-enrolled device (record) of a member, and each member
// user without one. Records of devices that enrolled through a user's own
// link (source enrollment) count towards their user, not as targets.
func Targets(ctx context.Context, records enroll.RecordStore, r *Ring) ([]Target, error) {
	users := map[string]*enroll.User{}
	member := map[string]bool{}
	for _, m := range r.Members {
		member[m] = true
	}
	err := records.Users(ctx, func(u *enroll.User) bool {
		users[u.Email] = u
		if r.Group != "" && u.InGroup(r.Group) {
			member[enroll.UserRef(u.Email)] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var out []Target
	hasDevice := map[string]bool{}
	err = records.Records(ctx, func(rec *enroll.Record) bool {
		if rec.Source == enroll.SourceEnrollment {
			return true
		}
		ref := enroll.RecordRef(rec.Serial)
		if !member[ref] && !member[enroll.UserRef(rec.UserEmail)] && !(r.Group != "" && rec.InGroup(r.Group, nil)) {
			return true
		}
		t := Target{Ref: ref, Email: rec.UserEmail, Name: rec.UserName, Mobile: rec.Mobile,
			Platform: rec.Platform, Ownership: rec.Ownership, Device: rec.DeviceName}
		if u := users[rec.UserEmail]; u != nil {
			t.Name = orElse(t.Name, u.Name)
			t.Mobile = orElse(t.Mobile, u.Mobile)
		}
		hasDevice[rec.UserEmail] = true
		out = append(out, t)
		return true
	})
	if err != nil {
		return nil, err
	}
	for ref := range member {
		_, email := enroll.ParseRef(ref)
		if email == "" || hasDevice[email] {
			continue
		}
		u := users[email]
		if u == nil {
			continue // named in Members but deleted since
		}
		out = append(out, Target{Ref: ref, Email: u.Email, Name: u.Name, Mobile: u.Mobile, Ownership: u.Ownership})
	}
	slices.SortFunc(out, func(a, b Target) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
