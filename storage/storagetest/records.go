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
