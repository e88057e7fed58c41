package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
)

// RunMDM runs the mdm.Store conformance tests. newStore must return a
// fresh, empty store each time it is called.
func RunMDM(t *testing.T, newStore func(t *testing.T) mdm.Store) {
	t.Run("EnrollmentLifecycle", func(t *testing.T) { testEnrollmentLifecycle(t, newStore(t)) })
	t.Run("QueueOrderAndResults", func(t *testing.T) { testQueue(t, newStore(t)) })
	t.Run("QueueIsolation", func(t *testing.T) { testQueueIsolation(t, newStore(t)) })
	t.Run("CertBinding", func(t *testing.T) { testCertBinding(t, newStore(t)) })
	t.Run("EnqueueAtomic", func(t *testing.T) { testEnqueueAtomic(t, newStore(t)) })
	t.Run("ResultUpdatesEnrollment", func(t *testing.T) { testResultUpdatesEnrollment(t, newStore(t)) })
	t.Run("AwaitingConfiguration", func(t *testing.T) { testAwaitingConfiguration(t, newStore(t)) })
}

// A device in Setup Assistant says so at each TokenUpdate: the wait starts
// at the first that says it, lasts through repeats, and ends at one that
// does not.
func testAwaitingConfiguration(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "A", "fp")
	update := func(awaiting bool, at time.Time) *mdm.Enrollment {
		t.Helper()
		err := s.TokenUpdated(ctx, &mdm.Enrollment{ID: "A", DeviceID: "A", Topic: "t", PushMagic: "m", Token: []byte("tok"),
			AwaitingConfiguration: awaiting, TokenUpdateAt: at, LastSeenAt: at})
		if err != nil {
			t.Fatal(err)
		}
		e, err := s.Enrollment(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := update(true, t0); !e.AwaitingConfiguration || !e.AwaitingSince.Equal(t0) {
		t.Errorf("first awaiting TokenUpdate: awaiting %v since %v", e.AwaitingConfiguration, e.AwaitingSince)
	}
	if e := update(true, t0.Add(time.Minute)); !e.AwaitingSince.Equal(t0) {
		t.Errorf("a repeated awaiting TokenUpdate moved the start of the wait to %v", e.AwaitingSince)
	}
	if e := update(false, t0.Add(2*time.Minute)); e.AwaitingConfiguration || !e.AwaitingSince.IsZero() {
		t.Errorf("TokenUpdate without AwaitingConfiguration: awaiting %v since %v", e.AwaitingConfiguration, e.AwaitingSince)
	}
}

func authenticate(t *testing.T, s mdm.Store, id, fp string) {
	t.Helper()
	err := s.Authenticated(context.Background(), &mdm.Enrollment{
		ID: id, DeviceID: id, SerialNumber: "SN-" + id, Model: "iPhone16,1", OSVersion: "18.1",
		CertFingerprint: fp, CreatedAt: t0, AuthenticAt: t0,
	})
	if err != nil {
		t.Fatalf("Authenticated(%s): %v", id, err)
	}
}

func tokenUpdate(t *testing.T, s mdm.Store, id, deviceID string) {
	t.Helper()
	err := s.TokenUpdated(context.Background(), &mdm.Enrollment{
		ID: id, DeviceID: deviceID, Topic: "com.apple.mgmt.External.x", PushMagic: "magic-" + id,
		Token: []byte("token-" + id), CreatedAt: t0, TokenUpdateAt: t0.Add(time.Second),
	})
	if err != nil {
		t.Fatalf("TokenUpdated(%s): %v", id, err)
	}
}

func enqueue(t *testing.T, s mdm.Store, uuid string, ids ...string) {
	t.Helper()
	err := s.Enqueue(context.Background(), ids, &mdm.QueuedCommand{
		UUID: uuid, RequestType: "DeviceInformation", Payload: []byte("<plist>" + uuid + "</plist>"), EnqueuedAt: t0,
	})
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", uuid, err)
	}
}

func queueUUIDs(t *testing.T, s mdm.Store, id string) string {
	t.Helper()
	q, err := s.Queue(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, c := range q {
		out += c.UUID
		if c.NotNow {
			out += "(NotNow)"
		}
		out += " "
	}
	return out
}

func result(id, uuid, status string) *mdm.Result {
	return &mdm.Result{EnrollmentID: id, CommandUUID: uuid, RequestType: "DeviceInformation", Status: status,
		Raw: []byte("<plist>" + status + "</plist>"), ReceivedAt: t0}
}

func testEnrollmentLifecycle(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "UDID-1", "fp1")
	e, err := s.Enrollment(ctx, "UDID-1")
	if err != nil || e.Enabled || e.SerialNumber != "SN-UDID-1" || e.CertFingerprint != "fp1" {
		t.Fatalf("after Authenticate: %+v, %v; want disabled, with serial and cert", e, err)
	}
	tokenUpdate(t, s, "UDID-1", "UDID-1")
	tokenUpdate(t, s, "UDID-1:501", "UDID-1")
	e, _ = s.Enrollment(ctx, "UDID-1")
	u, err := s.Enrollment(ctx, "UDID-1:501")
	if !e.Enabled || e.PushMagic != "magic-UDID-1" || string(e.Token) != "token-UDID-1" || e.SerialNumber != "SN-UDID-1" {
		t.Errorf("device after TokenUpdate: %+v", e)
	}
	if err != nil || !u.Enabled || u.DeviceID != "UDID-1" || u.PushMagic != "magic-UDID-1:501" {
		t.Errorf("user channel after TokenUpdate: %+v, %v", u, err)
	}

	enqueue(t, s, "c1", "UDID-1")
	enqueue(t, s, "c2", "UDID-1:501")
	// Re-enrollment: disabled again, both queues cleared, details kept.
	authenticate(t, s, "UDID-1", "fp2")
	e, _ = s.Enrollment(ctx, "UDID-1")
	if e.Enabled || e.CertFingerprint != "fp2" || !e.CreatedAt.Equal(t0) {
		t.Errorf("after re-Authenticate: %+v", e)
	}
	if q := queueUUIDs(t, s, "UDID-1") + queueUUIDs(t, s, "UDID-1:501"); q != "" {
		t.Errorf("queues after re-Authenticate: %q, want empty", q)
	}

	tokenUpdate(t, s, "UDID-1", "UDID-1")
	tokenUpdate(t, s, "UDID-1:501", "UDID-1")
	if err := s.Disable(ctx, "UDID-1"); err != nil {
		t.Fatal(err)
	}
	e, _ = s.Enrollment(ctx, "UDID-1")
	u, _ = s.Enrollment(ctx, "UDID-1:501")
	if e.Enabled || u.Enabled {
		t.Errorf("CheckOut left enabled: device %v, user %v", e.Enabled, u.Enabled)
	}

	if err := s.Update(ctx, "UDID-1", func(e *mdm.Enrollment) error { e.BootstrapToken = []byte("bt"); return nil }); err != nil {
		t.Fatal(err)
	}
	e, _ = s.Enrollment(ctx, "UDID-1")
	if string(e.BootstrapToken) != "bt" {
		t.Errorf("Update did not store: %+v", e)
	}
	if _, err := s.Enrollment(ctx, "nope"); !errors.Is(err, mdm.ErrNotFound) {
		t.Errorf("Enrollment(unknown) = %v, want ErrNotFound", err)
	}
	var ids []string
	s.Enrollments(ctx, func(e *mdm.Enrollment) bool { ids = append(ids, e.ID); return true })
	if fmt.Sprint(ids) != "[UDID-1 UDID-1:501]" {
		t.Errorf("Enrollments = %v", ids)
	}
}

func testQueue(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "D", "fp")
	tokenUpdate(t, s, "D", "D")
	for _, u := range []string{"c1", "c2", "c3"} {
		enqueue(t, s, u, "D")
	}
	enqueue(t, s, "c2", "D") // again: idempotent
	if q := queueUUIDs(t, s, "D"); q != "c1 c2 c3 " {
		t.Fatalf("queue = %q, want c1 c2 c3 in order", q)
	}
	next, err := s.NextCommand(ctx, "D", false)
	if err != nil || next == nil || next.UUID != "c1" || string(next.Payload) != "<plist>c1</plist>" || next.RequestType != "DeviceInformation" {
		t.Fatalf("NextCommand = %+v, %v", next, err)
	}
	// NotNow keeps c1 but lets c2 through until the next Idle.
	if err := s.StoreResult(ctx, result("D", "c1", mdm.StatusNotNow), nil); err != nil {
		t.Fatal(err)
	}
	if next, _ = s.NextCommand(ctx, "D", true); next == nil || next.UUID != "c2" {
		t.Errorf("after NotNow, NextCommand(skip) = %+v, want c2", next)
	}
	if next, _ = s.NextCommand(ctx, "D", false); next == nil || next.UUID != "c1" || !next.NotNow {
		t.Errorf("at Idle, NextCommand = %+v, want c1 again, marked NotNow", next)
	}
	untyped := result("D", "c2", mdm.StatusAcknowledged)
	untyped.RequestType = "" // the store knows it from the queue
	for _, r := range []*mdm.Result{untyped, result("D", "c1", mdm.StatusError), result("D", "c3", mdm.StatusCommandFormatError)} {
		if err := s.StoreResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if next, _ = s.NextCommand(ctx, "D", false); next != nil {
		t.Errorf("queue not empty after final results: %+v", next)
	}
	// A second answer to a finished command is refused.
	if err := s.StoreResult(ctx, result("D", "c2", mdm.StatusAcknowledged), nil); !errors.Is(err, mdm.ErrUnknownCommand) {
		t.Errorf("second result for c2: %v, want ErrUnknownCommand", err)
	}
	rs, err := s.Results(ctx, "D")
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, r := range rs {
		got += r.CommandUUID + "=" + r.Status + " "
		if r.RequestType != "DeviceInformation" {
			t.Errorf("result %s RequestType %q", r.CommandUUID, r.RequestType)
		}
		if string(r.Raw) != "<plist>"+r.Status+"</plist>" {
			t.Errorf("result %s raw = %q", r.CommandUUID, r.Raw)
		}
	}
	if got != "c1=NotNow c2=Acknowledged c1=Error c3=CommandFormatError " {
		t.Errorf("results = %q", got)
	}
}

func testQueueIsolation(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	for _, id := range []string{"A", "B"} {
		authenticate(t, s, id, "fp-"+id)
		tokenUpdate(t, s, id, id)
	}
	enqueue(t, s, "for-A", "A")
	if next, _ := s.NextCommand(ctx, "B", false); next != nil {
		t.Errorf("B sees A's command %s", next.UUID)
	}
	touched := false
	err := s.StoreResult(ctx, result("B", "for-A", mdm.StatusAcknowledged), func(*mdm.Result) func(*mdm.Enrollment) {
		return func(*mdm.Enrollment) { touched = true }
	})
	if !errors.Is(err, mdm.ErrUnknownCommand) {
		t.Errorf("B answering A's command: %v, want ErrUnknownCommand", err)
	}
	if touched {
		t.Error("a refused result updated the enrollment")
	}
	if q := queueUUIDs(t, s, "A"); q != "for-A " {
		t.Errorf("A's queue after B's attempt: %q", q)
	}
	enqueue(t, s, "both", "A", "B")
	if err := s.StoreResult(ctx, result("A", "both", mdm.StatusAcknowledged), nil); err != nil {
		t.Fatal(err)
	}
	if q := queueUUIDs(t, s, "B"); q != "both " {
		t.Errorf("A's answer removed B's copy: B queue %q", q)
	}
}

func testCertBinding(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "A", "fp1")
	if id, err := s.EnrollmentForCert(ctx, "fp1"); err != nil || id != "A" {
		t.Fatalf("EnrollmentForCert(fp1) = %q, %v", id, err)
	}
	// SCEP renewal: A's new certificate replaces the old binding.
	if err := s.BindCert(ctx, "A", "fp2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnrollmentForCert(ctx, "fp1"); !errors.Is(err, mdm.ErrNotFound) {
		t.Errorf("old certificate still bound: %v", err)
	}
	if id, _ := s.EnrollmentForCert(ctx, "fp2"); id != "A" {
		t.Errorf("fp2 bound to %q, want A", id)
	}
	// A certificate taken by a new enrollment leaves the old one.
	authenticate(t, s, "B", "fp2")
	a, _ := s.Enrollment(ctx, "A")
	if id, _ := s.EnrollmentForCert(ctx, "fp2"); id != "B" || a.CertFingerprint != "" {
		t.Errorf("fp2 bound to %q, A keeps %q", id, a.CertFingerprint)
	}
}

func testEnqueueAtomic(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "A", "fp")
	err := s.Enqueue(ctx, []string{"A", "ghost"}, &mdm.QueuedCommand{UUID: "c", RequestType: "DeviceLock", Payload: []byte("p")})
	if !errors.Is(err, mdm.ErrNotFound) {
		t.Fatalf("Enqueue to an unknown enrollment: %v, want ErrNotFound", err)
	}
	if q := queueUUIDs(t, s, "A"); q != "" {
		t.Errorf("a refused Enqueue queued %q for A", q)
	}
}

// StoreResult's update sees the complete result and is stored with it: an
// acknowledged EraseDevice and the wipe it records are one write.
func testResultUpdatesEnrollment(t *testing.T, s mdm.Store) {
	ctx := context.Background()
	authenticate(t, s, "W", "fp")
	tokenUpdate(t, s, "W", "W")
	if err := s.Enqueue(ctx, []string{"W"}, &mdm.QueuedCommand{UUID: "erase", RequestType: "EraseDevice", Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	r := result("W", "erase", mdm.StatusAcknowledged)
	r.RequestType = ""
	// A result whose update makes no change leaves the enrollment as it
	// was.
	if err := s.Enqueue(ctx, []string{"W"}, &mdm.QueuedCommand{UUID: "info", RequestType: "DeviceInformation", Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Enrollment(ctx, "W")
	if err := s.StoreResult(ctx, result("W", "info", mdm.StatusAcknowledged), func(*mdm.Result) func(*mdm.Enrollment) { return nil }); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Enrollment(ctx, "W"); !reflect.DeepEqual(before, after) {
		t.Errorf("enrollment changed by a result without a change: %+v, was %+v", after, before)
	}
	var seen string
	err := s.StoreResult(ctx, r, func(r *mdm.Result) func(*mdm.Enrollment) {
		seen = r.RequestType
		return func(e *mdm.Enrollment) { e.WipedAt, e.Enabled = r.ReceivedAt, false }
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != "EraseDevice" {
		t.Errorf("update saw RequestType %q, want EraseDevice filled in from the queue", seen)
	}
	e, _ := s.Enrollment(ctx, "W")
	if !e.WipedAt.Equal(t0) || e.Enabled {
		t.Errorf("enrollment after the update: wiped %v, enabled %v", e.WipedAt, e.Enabled)
	}
}
