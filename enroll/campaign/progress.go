package campaign

import (
	"context"
	"slices"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// Where a ring's target stands. Every target is in exactly one of them.
const (
	StatePreApproved = "pre-approved" // not invited yet, not enrolled
	StateInvited     = "invited"      // its invitation went out; not enrolled yet
	StateFailed      = "failed"       // its last invitation failed; not enrolled
	StateEnrolled    = "enrolled"     // its device (a user's: any of theirs) is enrolled
)

// Counts are a ring's targets by state, and what its messages did.
// PreApproved + Invited + Failed + Enrolled = Targets.
type Counts struct {
	Targets     int `json:"targets"`
	PreApproved int `json:"pre_approved"`
	Invited     int `json:"invited"`
	Failed      int `json:"failed"`
	Enrolled    int `json:"enrolled"`
	// Delivered targets had an invitation accepted by the mail server
	// (or webhook), whatever they did next.
	Delivered int `json:"delivered"`
	// Reminded targets had at least one reminder accepted.
	Reminded int `json:"reminded"`
	// Overdue targets have not enrolled and the deadline has passed.
	Overdue int `json:"overdue"`
	// Duplicates counts messages that may have reached their user twice
	// (a job interrupted between the server's acceptance and its write).
	Duplicates int `json:"duplicates"`
}

// A TargetStatus is one target of a ring and where it stands.
type TargetStatus struct {
	Target
	State        string        `json:"state"`
	RecordStatus enroll.Status `json:"record_status,omitempty"` // the record's, for a device target
	Overdue      bool          `json:"overdue,omitempty"`
	InvitedAt    time.Time     `json:"invited_at,omitzero"`
	EnrolledAt   time.Time     `json:"enrolled_at,omitzero"`
	Reminders    int           `json:"reminders,omitempty"`
	Error        string        `json:"error,omitempty"` // why its last invitation failed
}

// A Point is a ring's cumulative counts at one time, for a chart.
type Point struct {
	At       time.Time `json:"at"`
	Invited  int       `json:"invited"` // invitations accepted by then
	Enrolled int       `json:"enrolled"`
	Failed   int       `json:"failed"`
	Overdue  int       `json:"overdue"`
}

// Progress is a ring's state, computed from its deliveries and from the
// records the protocols update.
type Progress struct {
	Ring     *Ring          `json:"ring"`
	Counts   Counts         `json:"counts"`
	Targets  []TargetStatus `json:"targets,omitempty"`
	Timeline []Point        `json:"timeline,omitempty"`
}

// timelinePoints bounds a ring's timeline.
const timelinePoints = 48

// RingProgress computes where each target of a ring stands at now.
func RingProgress(ctx context.Context, s Store, records enroll.RecordStore, r *Ring, now time.Time) (*Progress, error) {
	targets, err := Targets(ctx, records, r)
	if err != nil {
		return nil, err
	}
	// Enrollment, from the records: of each device, and of each user
	// through any of theirs.
	type enrolled struct {
		status enroll.Status
		at     time.Time
	}
	byRef := map[string]enrolled{}
	err = records.Records(ctx, func(rec *enroll.Record) bool {
		e := enrolled{status: rec.Status}
		if rec.Status == enroll.StatusEnrolled {
			e.at = rec.EnrolledAt
			if u := enroll.UserRef(rec.UserEmail); rec.UserEmail != "" {
				if have, ok := byRef[u]; !ok || have.at.IsZero() || e.at.Before(have.at) {
					byRef[u] = enrolled{status: enroll.StatusEnrolled, at: e.at}
				}
			}
		}
		byRef[enroll.RecordRef(rec.Serial)] = e
		return true
	})
	if err != nil {
		return nil, err
	}
	p := &Progress{Ring: r, Targets: make([]TargetStatus, len(targets))}
	index := make(map[string]int, len(targets))
	for i, t := range targets {
		index[t.Ref] = i
		p.Targets[i] = TargetStatus{Target: t, State: StatePreApproved}
	}
	kinds := map[int]string{}
	err = s.Jobs(ctx, r.Name, func(j *Job) bool {
		kinds[j.ID] = j.Kind
		return true
	})
	if err != nil {
		return nil, err
	}
	var failedAt []time.Time
	err = s.Deliveries(ctx, r.Name, 0, func(d *Delivery) bool {
		p.Counts.Duplicates += d.Duplicates()
		i, ok := index[d.Target.Ref]
		if !ok {
			return true // no longer a member
		}
		ts := &p.Targets[i]
		switch {
		case kinds[d.Job] == KindReminder:
			if d.State == DeliverySent {
				ts.Reminders++
			}
		case d.State == DeliverySent:
			if ts.InvitedAt.IsZero() {
				ts.InvitedAt = d.At
			}
			ts.State, ts.Error = StateInvited, ""
		case d.State == DeliveryFailed && ts.InvitedAt.IsZero():
			ts.State, ts.Error = StateFailed, d.Error
			failedAt = append(failedAt, d.At)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	overdue := !r.Deadline.IsZero() && now.After(r.Deadline)
	var invitedAt, enrolledAt []time.Time
	c := &p.Counts
	c.Targets = len(targets)
	for i := range p.Targets {
		ts := &p.Targets[i]
		e := byRef[ts.Ref]
		if ts.Platform != "" {
			ts.RecordStatus = e.status
		}
		if e.status == enroll.StatusEnrolled {
			ts.State, ts.EnrolledAt, ts.Error = StateEnrolled, e.at, ""
			enrolledAt = append(enrolledAt, e.at)
		}
		if !ts.InvitedAt.IsZero() {
			c.Delivered++
			invitedAt = append(invitedAt, ts.InvitedAt)
		}
		if ts.Reminders > 0 {
			c.Reminded++
		}
		switch ts.State {
		case StatePreApproved:
			c.PreApproved++
		case StateInvited:
			c.Invited++
		case StateFailed:
			c.Failed++
		case StateEnrolled:
			c.Enrolled++
		}
		if overdue && ts.State != StateEnrolled {
			ts.Overdue = true
			c.Overdue++
		}
	}
	p.Timeline = timeline(invitedAt, enrolledAt, failedAt, len(targets), r.Deadline, now)
	return p, nil
}

// timeline samples cumulative counts at up to timelinePoints times from
// the first event to now. Overdue, after the deadline, is the targets not
// enrolled by then.
func timeline(invited, enrolled, failed []time.Time, total int, deadline, now time.Time) []Point {
	all := slices.Concat(invited, enrolled, failed)
	if len(all) == 0 {
		return nil
	}
	for _, ts := range [][]time.Time{invited, enrolled, failed} {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	}
	start := slices.MinFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	end := now
	if latest := slices.MaxFunc(all, func(a, b time.Time) int { return a.Compare(b) }); latest.After(end) {
		end = latest
	}
	n := timelinePoints
	step := end.Sub(start) / time.Duration(n-1)
	if step <= 0 {
		n, step = 1, 0
	}
	count := func(ts []time.Time, at time.Time) int {
		i, _ := slices.BinarySearchFunc(ts, at, func(a, b time.Time) int {
			if a.After(b) {
				return 1
			}
			return -1
		})
		return i
	}
	out := make([]Point, n)
	for i := range out {
		at := start.Add(time.Duration(i) * step)
		if i == n-1 {
			at = end
		}
		p := Point{At: at, Invited: count(invited, at), Enrolled: count(enrolled, at), Failed: count(failed, at)}
		if !deadline.IsZero() && !at.Before(deadline) {
			p.Overdue = total - p.Enrolled
		}
		out[i] = p
	}
	return out
}
