package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// RunRecords runs the conformance tests of an enroll.RecordStore.
func RunRecords(t *testing.T, newStore func(t *testing.T) enroll.RecordStore) {
	t.Run("ImportAndReimport", func(t *testing.T) { testImportAndReimport(t, newStore(t)) })
	t.Run("NotFound", func(t *testing.T) { testRecordNotFound(t, newStore(t)) })
	t.Run("Update", func(t *testing.T) { testRecordUpdate(t, newStore(t)) })
}

// RunAssignments runs the conformance tests of an enroll.AssignmentStore
// and an enroll.SettingsStore.
func RunAssignments(t *testing.T, newStores func(t *testing.T) (enroll.AssignmentStore, enroll.SettingsStore)) {
	t.Run("Assignments", func(t *testing.T) { a, _ := newStores(t); testAssignments(t, a) })
	t.Run("Settings", func(t *testing.T) { _, s := newStores(t); testSettings(t, s) })
}

func record(serial, email string, groups ...string) *enroll.Record {
	return &enroll.Record{Serial: serial, Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate,
		UserEmail: email, UserName: "User " + serial, Groups: groups, Status: enroll.StatusPreApproved, Source: enroll.SourceCSV}
}

func testImportAndReimport(t *testing.T, s enroll.RecordStore) {
	ctx := context.Background()
	var recs []*enroll.Record
	var users []*enroll.User
	for i := range 50 {
		email := fmt.Sprintf("u%02d@example.com", i)
		recs = append(recs, record(fmt.Sprintf("SN%03d", i), email, "ring-1"))
		users = append(users, &enroll.User{Email: email, Name: "User", Groups: []string{"ring-1"}})
	}
	st, err := s.Import(ctx, recs, users, t0)
	if err != nil || st.RecordsCreated != 50 || st.UsersCreated != 50 {
		t.Fatalf("first import: %+v, %v", st, err)
	}
	// The same file again changes nothing.
	st, err = s.Import(ctx, recs, users, t0.Add(time.Hour))
	if err != nil || st.RecordsUnchanged != 50 || st.UsersUnchanged != 50 || st.RecordsCreated+st.RecordsUpdated != 0 {
		t.Fatalf("same import again: %+v, %v", st, err)
	}
	// A changed row updates its record, adds its group, and keeps what the
	// import does not carry (status, source, creation time).
	changed := record("SN007", "new@example.com", "ring-2")
	changed.DeviceName = "Kiosk 7"
	changed.Status, changed.Source = "", ""
	st, err = s.Import(ctx, []*enroll.Record{changed}, nil, t0.Add(2*time.Hour))
	if err != nil || st.RecordsUpdated != 1 {
		t.Fatalf("changed import: %+v, %v", st, err)
	}
	got, err := s.Record(ctx, "SN007")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserEmail != "new@example.com" || got.DeviceName != "Kiosk 7" || !slices.Equal(got.Groups, []string{"ring-1", "ring-2"}) ||
		got.Status != enroll.StatusPreApproved || got.Source != enroll.SourceCSV || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("record after the changed import: %+v", got)
	}
	var serials []string
	if err := s.Records(ctx, func(r *enroll.Record) bool { serials = append(serials, r.Serial); return len(serials) < 10 }); err != nil {
		t.Fatal(err)
	}
	if len(serials) != 10 || !slices.IsSorted(serials) || serials[0] != "SN000" {
		t.Errorf("Records: %v, want the first 10 in serial order", serials)
	}
	n := 0
	s.Users(ctx, func(*enroll.User) bool { n++; return true })
	if u, err := s.User(ctx, "u07@example.com"); n != 50 || err != nil || u.Name != "User" {
		t.Errorf("users: %d, %+v, %v", n, u, err)
	}
}

func testRecordNotFound(t *testing.T, s enroll.RecordStore) {
	ctx := context.Background()
	if r, err := s.Record(ctx, "NOPE"); !errors.Is(err, enroll.ErrNotFound) || r != nil {
		t.Errorf("Record of an unknown serial: %v, %v", r, err)
	}
	if u, err := s.User(ctx, "nobody@example.com"); !errors.Is(err, enroll.ErrNotFound) || u != nil {
		t.Errorf("User of an unknown email: %v, %v", u, err)
	}
}

func testRecordUpdate(t *testing.T, s enroll.RecordStore) {
	ctx := context.Background()
	// Creating through UpdateRecord.
	got, err := s.UpdateRecord(ctx, "NEW1", func(r *enroll.Record) (*enroll.Record, error) {
		if r != nil {
			t.Errorf("fn got %+v for an unknown serial, want nil", r)
		}
		return record("NEW1", "a@example.com"), nil
	})
	if err != nil || got == nil || got.Serial != "NEW1" {
		t.Fatalf("UpdateRecord (create) = %+v, %v", got, err)
	}
	// A nil result changes nothing and returns the stored record.
	got, err = s.UpdateRecord(ctx, "NEW1", func(*enroll.Record) (*enroll.Record, error) { return nil, nil })
	if err != nil || got == nil || got.UserEmail != "a@example.com" {
		t.Fatalf("UpdateRecord (no change) = %+v, %v", got, err)
	}
	if got, err := s.UpdateRecord(ctx, "NONE", func(*enroll.Record) (*enroll.Record, error) { return nil, nil }); err != nil || got != nil {
		t.Errorf("UpdateRecord of an unknown serial, no change = %+v, %v; want nil, nil", got, err)
	}
	// An error from fn stores nothing.
	boom := errors.New("boom")
	_, err = s.UpdateRecord(ctx, "NEW1", func(r *enroll.Record) (*enroll.Record, error) {
		r = r.Clone()
		r.Status = enroll.StatusWiped
		return r, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("UpdateRecord with a failing fn: %v, want boom", err)
	}
	// Links, history and applied assignments round-trip.
	_, err = s.UpdateRecord(ctx, "NEW1", func(r *enroll.Record) (*enroll.Record, error) {
		r = r.Clone()
		r.EnrollmentID, r.CertFingerprint, r.TokenID = "UDID-1", "ab12", "tok1"
		r.Applied = map[string]string{"as1": "CMD-1"}
		r.Log(enroll.Event{At: t0, Step: enroll.StepAuthenticated, Enrollment: "UDID-1", Cert: "ab12", Token: "tok1"})
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Record(ctx, "NEW1")
	if err != nil || r.Status != enroll.StatusPreApproved || r.EnrollmentID != "UDID-1" || r.Applied["as1"] != "CMD-1" ||
		len(r.History) != 1 || r.History[0].Step != enroll.StepAuthenticated || !r.History[0].At.Equal(t0) {
		t.Errorf("record after updates: %+v, %v", r, err)
	}
	// UpdateRecords: several serials in one transaction, an error storing
	// none of them.
	err = s.UpdateRecords(ctx, []string{"NEW1", "NEW2", "NEW3"}, func(serial string, r *enroll.Record) (*enroll.Record, error) {
		if serial == "NEW3" {
			return nil, nil
		}
		if r == nil {
			r = record(serial, "c@example.com")
		} else {
			r = r.Clone()
		}
		r.ADE = &enroll.ADEDevice{Token: "abm", Model: "iPad", UpdatedAt: t0}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range []string{"NEW1", "NEW2"} {
		if r, err := s.Record(ctx, sn); err != nil || r.ADE == nil || r.ADE.Model != "iPad" {
			t.Errorf("%s after UpdateRecords: %+v, %v", sn, r, err)
		}
	}
	if _, err := s.Record(ctx, "NEW3"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("UpdateRecords stored a record fn declined: %v", err)
	}
	err = s.UpdateRecords(ctx, []string{"NEW4", "NEW1"}, func(serial string, r *enroll.Record) (*enroll.Record, error) {
		if serial == "NEW1" {
			return nil, boom
		}
		return record(serial, "d@example.com"), nil
	})
	if _, err2 := s.Record(ctx, "NEW4"); !errors.Is(err, boom) || !errors.Is(err2, enroll.ErrNotFound) {
		t.Errorf("a failing UpdateRecords: %v, and NEW4: %v; want nothing stored", err, err2)
	}
	u, err := s.UpdateUser(ctx, "b@example.com", func(u *enroll.User) (*enroll.User, error) {
		return &enroll.User{Email: "b@example.com", Name: "B", Groups: []string{"g"}}, nil
	})
	if err != nil || u.Name != "B" {
		t.Fatalf("UpdateUser = %+v, %v", u, err)
	}
	if u, err := s.User(ctx, "b@example.com"); err != nil || !u.InGroup("g") {
		t.Errorf("User after UpdateUser = %+v, %v", u, err)
	}
}

func testAssignments(t *testing.T, s enroll.AssignmentStore) {
	ctx := context.Background()
	for _, id := range []string{"b2", "a1", "c3"} {
		a := &enroll.Assignment{ID: id, Group: "g-" + id, Kind: enroll.AssignCommand, Name: "DeviceInformation",
			Payload: []byte("<plist/>"), CreatedAt: t0}
		if err := s.PutAssignment(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Assignment(ctx, "b2")
	if err != nil || a.Group != "g-b2" || string(a.Payload) != "<plist/>" || !a.CreatedAt.Equal(t0) {
		t.Errorf("Assignment(b2) = %+v, %v", a, err)
	}
	if _, err := s.Assignment(ctx, "zz"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Assignment(unknown): %v, want ErrNotFound", err)
	}
	if err := s.DeleteAssignment(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAssignment(ctx, "b2"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("second DeleteAssignment: %v, want ErrNotFound", err)
	}
	var ids []string
	if err := s.Assignments(ctx, func(a *enroll.Assignment) bool { ids = append(ids, a.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"a1", "c3"}) {
		t.Errorf("Assignments: %v, want [a1 c3]", ids)
	}
}

func testSettings(t *testing.T, s enroll.SettingsStore) {
	ctx := context.Background()
	st, err := s.Settings(ctx)
	if err != nil || st.PreEnrolledOnly {
		t.Fatalf("fresh Settings = %+v, %v; want the zero value", st, err)
	}
	st, err = s.UpdateSettings(ctx, func(st *enroll.Settings) error { st.PreEnrolledOnly = true; return nil })
	if err != nil || !st.PreEnrolledOnly {
		t.Fatalf("UpdateSettings = %+v, %v", st, err)
	}
	_, err = s.UpdateSettings(ctx, func(st *enroll.Settings) error { st.PreEnrolledOnly = false; return errors.New("refused") })
	if err == nil {
		t.Error("UpdateSettings with a failing fn succeeded")
	}
	if st, err := s.Settings(ctx); err != nil || !st.PreEnrolledOnly {
		t.Errorf("Settings after a failed update = %+v, %v; want the earlier value", st, err)
	}
}
