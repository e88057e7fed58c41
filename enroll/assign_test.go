package enroll_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/storage/bolt"
)

// Racing TokenUpdates of one device queue each of its assignments once;
// devices outside the group get nothing.
func TestAssignmentsQueuedOnce(t *testing.T) {
	ctx := context.Background()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := &enroll.Lifecycle{
		Records: db.Records(), Assignments: db.Assignments(), Settings: db.Settings(),
		Tokens: db.Enroll(), Certs: db.SCEP(), MDM: db.MDM(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	now := time.Now().UTC()
	recs := []*enroll.Record{
		{Serial: "IN1", Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate, Groups: []string{"g"}, Status: enroll.StatusPreApproved, Source: enroll.SourceCSV},
		{Serial: "OUT1", Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate, Status: enroll.StatusPreApproved, Source: enroll.SourceCSV},
	}
	if _, err := db.Records().Import(ctx, recs, nil, now); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"DeviceInformation", "SecurityInfo"} {
		a, err := enroll.NewCommandAssignment("g", rt, map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		if queued, err := l.Assign(ctx, a); err != nil || len(queued) != 0 {
			t.Fatalf("Assign before enrollment: %v, %v", queued, err)
		}
	}
	for _, serial := range []string{"IN1", "OUT1"} {
		udid := "UDID-" + serial
		m := &mdm.Authenticate{UDID: udid, SerialNumber: serial, ProductName: "iPhone15,2"}
		if err := l.Admit(ctx, m, "fp-"+serial); err != nil {
			t.Fatalf("Admit %s: %v", serial, err)
		}
		if err := db.MDM().Authenticated(ctx, &mdm.Enrollment{ID: udid, DeviceID: udid, SerialNumber: serial, CertFingerprint: "fp-" + serial, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := db.MDM().TokenUpdated(ctx, &mdm.Enrollment{ID: udid, DeviceID: udid, Token: []byte{1}, PushMagic: "m", Topic: "t", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				l.HandleEvent(ctx, &mdm.Event{Type: "checkin", EnrollmentID: udid, MessageType: "TokenUpdate"})
			})
		}
		wg.Wait()
	}
	for serial, want := range map[string]int{"IN1": 2, "OUT1": 0} {
		q, err := db.MDM().Queue(ctx, "UDID-"+serial)
		if err != nil || len(q) != want {
			t.Errorf("%s queue: %d commands, %v; want %d", serial, len(q), err, want)
		}
		r, _ := db.Records().Record(ctx, serial)
		if r.Status != enroll.StatusEnrolled || len(r.Applied) != want || r.EnrollmentID != "UDID-"+serial || r.CertFingerprint != "fp-"+serial {
			t.Errorf("%s record after enrolling: %+v", serial, r)
		}
	}
}
