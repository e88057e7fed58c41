package enroll

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodymdm/custody/mdm"
)

// DefaultReleaseAfter is how long a device awaiting configuration waits
// for its assignments before it is released anyway.
const DefaultReleaseAfter = 15 * time.Minute

// A device enrolled by ADE with await_device_configured stays in Setup
// Assistant, its TokenUpdate saying AwaitingConfiguration, until the
// server sends DeviceConfigured. The lifecycle sends it once the device
// has been sent everything queued for it (its group's profiles and
// commands, queued at its first TokenUpdate, before it leaves Setup
// Assistant, which is why ADE holds it there), or, if that takes longer than
// ReleaseAfter, without waiting any longer (ReleaseOverdue, run
// periodically). The release is recorded on the device's record (trace
// shows awaiting-configuration, released and configured), and its command
// UUID is derived from the enrollment and its certificate, so releasing
// twice queues one command.

func (l *Lifecycle) releaseAfter() time.Duration {
	if l.ReleaseAfter > 0 {
		return l.ReleaseAfter
	}
	return DefaultReleaseAfter
}

// releaseWhenReady sends DeviceConfigured to an enrollment awaiting
// configuration whose queue holds nothing more it can be sent. At a
// TokenUpdate (checkin) it also records that the device awaits.
func (l *Lifecycle) releaseWhenReady(ctx context.Context, id string, checkin bool) error {
	if strings.Contains(id, ":") || isAndroidEnrollment(id) {
		return nil
	}
	e, err := l.MDM.Enrollment(ctx, id)
	if err != nil || !e.AwaitingConfiguration || !e.ConfiguredAt.IsZero() {
		return err
	}
	if checkin {
		l.noteAwaiting(ctx, e)
	}
	queue, err := l.MDM.Queue(ctx, id)
	if err != nil {
		return err
	}
	release := releaseUUID(e)
	for _, q := range queue {
		if q.UUID == release {
			return nil // already on its way
		}
		if !q.NotNow {
			return nil // the device has more to do first
		}
	}
	return l.release(ctx, e, "everything queued for the device was sent")
}

// ReleaseOverdue sends DeviceConfigured to every enrollment that has
// awaited configuration for longer than ReleaseAfter, and returns how many
// it released.
func (l *Lifecycle) ReleaseOverdue(ctx context.Context) (int, error) {
	cutoff := l.now().Add(-l.releaseAfter())
	var due []*mdm.Enrollment
	err := l.MDM.Enrollments(ctx, func(e *mdm.Enrollment) bool {
		if e.AwaitingConfiguration && e.ConfiguredAt.IsZero() && e.Enabled && !e.AwaitingSince.IsZero() &&
			e.AwaitingSince.Before(cutoff) && e.ID == e.DeviceID {
			due = append(due, e)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range due {
		err := l.release(ctx, e, fmt.Sprintf("still awaiting after %s", l.releaseAfter()))
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// RunReleases calls ReleaseOverdue every interval until ctx ends.
func (l *Lifecycle) RunReleases(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := l.ReleaseOverdue(ctx); err != nil {
			l.log().Error("enroll: releasing devices awaiting configuration", "err", err)
		} else if n > 0 {
			l.log().Info("enroll: released devices awaiting configuration past the timeout", "devices", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func releaseUUID(e *mdm.Enrollment) string {
	seed := e.ID + "\x00" + e.CertFingerprint + "\x00DeviceConfigured"
	return strings.ToUpper(uuid.NewSHA1(commandNamespace, []byte(seed)).String())
}

// release queues DeviceConfigured, pushes, and records why.
func (l *Lifecycle) release(ctx context.Context, e *mdm.Enrollment, why string) error {
	id := releaseUUID(e)
	if err := l.enqueue(ctx, e.ID, id, &mdm.DeviceConfigured{}); err != nil {
		return err
	}
	l.log().Info("enroll: device released from Setup Assistant", "enrollment", e.ID, "command_uuid", id, "why", why)
	if _, err := l.updateByEnrollment(ctx, e.ID, func(r *Record) {
		r.Log(Event{At: l.now(), Step: StepReleased, Enrollment: e.ID, Command: id, Note: why})
	}); err != nil {
		return err
	}
	if l.Push != nil {
		l.Push(ctx, []string{e.ID})
	}
	return nil
}

// noteAwaiting records on the device's record, once per wait, that the
// device awaits configuration.
func (l *Lifecycle) noteAwaiting(ctx context.Context, e *mdm.Enrollment) {
	_, err := l.updateByEnrollment(ctx, e.ID, func(r *Record) {
		for _, ev := range r.History {
			if ev.Step == StepAwaitingConfiguration && ev.Enrollment == e.ID && !ev.At.Before(e.AwaitingSince) {
				return
			}
		}
		r.Log(Event{At: e.AwaitingSince, Step: StepAwaitingConfiguration, Enrollment: e.ID})
	})
	if err != nil {
		l.log().Warn("enroll: recording a device awaiting configuration", "enrollment", e.ID, "err", err)
	}
}

// configured records that the device acknowledged DeviceConfigured.
func (l *Lifecycle) configured(ctx context.Context, id string) error {
	_, err := l.updateByEnrollment(ctx, id, func(r *Record) {
		r.Log(Event{At: l.now(), Step: StepConfigured, Enrollment: id})
	})
	return err
}
