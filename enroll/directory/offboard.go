package directory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// ErrNotPending is returned when cancelling an offboarding that is no
// longer waiting.
var ErrNotPending = errors.New("directory: offboarding is not pending")

// actionFor says what offboarding does to a record's device: corporate
// devices (and those Apple or Google enrolled for the organisation) are
// erased, personal ones unmanaged; a device not enrolled needs nothing.
func actionFor(r *enroll.Record) string {
	if r.Status != enroll.StatusEnrolled && r.Status != enroll.StatusWipePending || r.EnrollmentID == "" {
		return ActionNone
	}
	personal := r.Ownership == enroll.OwnershipPersonal ||
		r.Ownership != enroll.OwnershipCorporate && r.Source != enroll.SourceADE && r.Source != enroll.SourceZeroTouch
	switch {
	case r.Platform == enroll.PlatformAndroid && personal:
		return ActionRemoveWorkProfile
	case r.Platform == enroll.PlatformAndroid:
		return ActionDelete
	case personal:
		return ActionUnmanage
	}
	return ActionErase
}

// plan returns what offboarding a user does to each of their devices.
func (d *Directory) plan(ctx context.Context, email string) ([]DeviceAction, error) {
	var out []DeviceAction
	err := d.Lifecycle.Records.Records(ctx, func(r *enroll.Record) bool {
		if r.UserEmail == email {
			out = append(out, DeviceAction{Serial: r.Serial, Platform: string(r.Platform), Ownership: string(r.Ownership), Action: actionFor(r)})
		}
		return true
	})
	return out, err
}

// newOffboardingID returns an id that sorts by creation time.
func newOffboardingID(now time.Time) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("ob-%s-%s", now.UTC().Format("20060102T150405.000000"), hex.EncodeToString(b))
}

// offboard starts offboarding a user's devices (d.mu held). A user with a
// pending offboarding keeps it.
func (d *Directory) offboard(ctx context.Context, email, link, event, actor string) (*Offboarding, error) {
	st, err := d.Store.Settings(ctx)
	if err != nil {
		return nil, err
	}
	now := d.now()
	if st.Disabled {
		return nil, d.Store.Audit(ctx, &AuditEntry{At: now, Actor: actor, Action: "offboarding-off", Subject: email, Detail: event})
	}
	var pending *Offboarding
	err = d.Store.Offboardings(ctx, func(o *Offboarding) bool {
		if o.Email == email && o.State == OffboardingPending {
			pending = o
		}
		return pending == nil
	})
	if err != nil || pending != nil {
		return pending, err
	}
	devices, err := d.plan(ctx, email)
	if err != nil {
		return nil, err
	}
	o := &Offboarding{ID: newOffboardingID(now), Email: email, Directory: link, Event: event, State: OffboardingPending,
		CreatedAt: now, DueAt: now.Add(time.Duration(st.Grace)), UpdatedAt: now, Devices: devices}
	if st.DryRun {
		o.State, o.DryRun, o.DueAt = OffboardingDryRun, true, now
	}
	if err := d.Store.PutOffboarding(ctx, o); err != nil {
		return nil, err
	}
	for _, a := range devices {
		note := fmt.Sprintf("%s: %s; %s at %s", o.ID, event, a.Action, o.DueAt.Format(time.RFC3339))
		if o.DryRun {
			note = fmt.Sprintf("%s (dry run): %s; would %s", o.ID, event, a.Action)
		}
		if err := d.logRecord(ctx, a.Serial, enroll.StepOffboarding, note); err != nil {
			return nil, err
		}
	}
	err = d.Store.Audit(ctx, &AuditEntry{At: now, Actor: actor, Action: "offboarding-started", Subject: o.ID,
		Detail: fmt.Sprintf("%s: %s; %s; due %s", email, event, summary(devices, o.DryRun), o.DueAt.Format(time.RFC3339))})
	if err != nil {
		return nil, err
	}
	d.log().Info("directory: offboarding started", "id", o.ID, "email", email, "event", event, "devices", len(devices), "due", o.DueAt, "dry_run", o.DryRun)
	d.kick()
	return o, nil
}

// summary says what an offboarding does, in a few words.
func summary(devices []DeviceAction, dryRun bool) string {
	var parts []string
	for _, a := range devices {
		parts = append(parts, a.Serial+" "+a.Action)
	}
	s := "no devices"
	if len(parts) > 0 {
		s = strings.Join(parts, ", ")
	}
	if dryRun {
		s = "dry run: " + s
	}
	return s
}

// logRecord appends an event to a record's history.
func (d *Directory) logRecord(ctx context.Context, serial string, step enroll.Step, note string) error {
	_, err := d.Lifecycle.Records.UpdateRecord(ctx, serial, func(r *enroll.Record) (*enroll.Record, error) {
		if r == nil {
			return nil, nil
		}
		r = r.Clone()
		r.Log(enroll.Event{At: d.now(), Step: step, Enrollment: r.EnrollmentID, Note: note})
		return r, nil
	})
	return err
}

// Cancel cancels a pending offboarding: its devices are left as they are.
func (d *Directory) Cancel(ctx context.Context, id, actor, reason string) (*Offboarding, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel(ctx, id, actor, reason)
}

func (d *Directory) cancel(ctx context.Context, id, actor, reason string) (*Offboarding, error) {
	now := d.now()
	note := fmt.Sprintf("cancelled by %s", actor)
	if reason != "" {
		note += ": " + reason
	}
	o, err := d.Store.UpdateOffboarding(ctx, id, func(o *Offboarding) (*Offboarding, error) {
		if o.State != OffboardingPending && o.State != OffboardingFailed {
			return nil, fmt.Errorf("%w: %s is %s", ErrNotPending, id, o.State)
		}
		o.State, o.Note, o.UpdatedAt = OffboardingCancelled, note, now
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	for _, a := range o.Devices {
		if err := d.logRecord(ctx, a.Serial, enroll.StepOffboardingCancelled, o.ID+" "+note); err != nil {
			return nil, err
		}
	}
	d.log().Info("directory: offboarding cancelled", "id", o.ID, "email", o.Email, "by", actor, "reason", reason)
	return o, d.Store.Audit(ctx, &AuditEntry{At: now, Actor: actor, Action: "offboarding-cancelled", Subject: o.ID, Detail: o.Email + ": " + note})
}

// cancelFor cancels the pending offboardings of a user (d.mu held).
func (d *Directory) cancelFor(ctx context.Context, email, actor, reason string) error {
	var ids []string
	err := d.Store.Offboardings(ctx, func(o *Offboarding) bool {
		if o.Email == email && (o.State == OffboardingPending || o.State == OffboardingFailed) {
			ids = append(ids, o.ID)
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := d.cancel(ctx, id, actor, reason); err != nil {
			return err
		}
	}
	return nil
}

// RunDue carries out the offboardings whose grace period has ended (and
// retries those that failed), and returns how many it carried out.
func (d *Directory) RunDue(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	var due []*Offboarding
	err := d.Store.Offboardings(ctx, func(o *Offboarding) bool {
		if (o.State == OffboardingPending || o.State == OffboardingFailed) && !o.DueAt.After(now) {
			due = append(due, o)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	for _, o := range due {
		if err := d.execute(ctx, o); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

// execute acts on the devices of an offboarding, planned again from the
// records as they are now.
func (d *Directory) execute(ctx context.Context, o *Offboarding) error {
	devices, err := d.plan(ctx, o.Email)
	if err != nil {
		return err
	}
	done := map[string]DeviceAction{}
	for _, a := range o.Devices {
		if !a.Done.IsZero() {
			done[a.Serial] = a
		}
	}
	note := fmt.Sprintf("offboarding %s: %s", o.ID, o.Event)
	failed := 0
	for i, a := range devices {
		if prev, ok := done[a.Serial]; ok {
			devices[i] = prev
			continue
		}
		switch a.Action {
		case ActionErase:
			err = d.Lifecycle.Erase(ctx, a.Serial, note)
		case ActionUnmanage:
			err = d.Lifecycle.Unmanage(ctx, a.Serial, note)
		case ActionDelete, ActionRemoveWorkProfile:
			if android := d.android(); android == nil {
				err = errors.New("android management is not configured")
			} else {
				err = android.Wipe(ctx, a.Serial, note)
			}
		}
		if err != nil {
			devices[i].Error = err.Error()
			failed++
			d.log().Error("directory: offboarding action failed", "id", o.ID, "serial", a.Serial, "action", a.Action, "err", err)
			continue
		}
		devices[i].Done, devices[i].Error = d.now(), ""
	}
	now := d.now()
	state, detail := OffboardingDone, summary(devices, false)
	if failed > 0 {
		state = OffboardingFailed
	}
	_, err = d.Store.UpdateOffboarding(ctx, o.ID, func(cur *Offboarding) (*Offboarding, error) {
		if cur.State != OffboardingPending && cur.State != OffboardingFailed {
			return nil, nil
		}
		cur.State, cur.Devices, cur.UpdatedAt = state, devices, now
		if failed > 0 {
			cur.Note = fmt.Sprintf("%d of %d devices failed; retried", failed, len(devices))
		} else {
			cur.Note = ""
		}
		return cur, nil
	})
	if err != nil {
		return err
	}
	d.log().Info("directory: offboarding carried out", "id", o.ID, "email", o.Email, "devices", len(devices), "failed", failed)
	return d.Store.Audit(ctx, &AuditEntry{At: now, Actor: "offboarding", Action: "offboarding-" + string(state), Subject: o.ID, Detail: o.Email + ": " + detail})
}

// kick wakes Run.
func (d *Directory) kick() {
	d.once.Do(func() { d.wake = make(chan struct{}, 1) })
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run carries out due offboardings every interval, and at once when one
// starts with no grace period, until ctx ends.
func (d *Directory) Run(ctx context.Context, interval time.Duration) {
	d.once.Do(func() { d.wake = make(chan struct{}, 1) })
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := d.RunDue(ctx); err != nil && ctx.Err() == nil {
			d.log().Error("directory: offboarding", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}
