package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll/directory"
)

// RunDirectory runs the conformance tests of a directory.Store.
func RunDirectory(t *testing.T, newStore func(t *testing.T) directory.Store) {
	t.Run("SettingsAndGroups", func(t *testing.T) { testDirectorySettingsAndGroups(t, newStore(t)) })
	t.Run("Links", func(t *testing.T) { testDirectoryLinks(t, newStore(t)) })
	t.Run("Offboardings", func(t *testing.T) { testDirectoryOffboardings(t, newStore(t)) })
	t.Run("Audit", func(t *testing.T) { testDirectoryAudit(t, newStore(t)) })
}

func testDirectorySettingsAndGroups(t *testing.T, s directory.Store) {
	ctx := context.Background()
	st, err := s.Settings(ctx)
	if err != nil || st.Grace != directory.DefaultGrace || st.DryRun || len(st.Scope) != 0 {
		t.Fatalf("settings before any are stored: %+v, %v; want the defaults", st, err)
	}
	want := &directory.Settings{Scope: []string{"Sales", "scim:g2"}, Grace: directory.Duration(90 * time.Minute), DryRun: true}
	if err := s.PutSettings(ctx, want); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Settings(ctx); err != nil || fmt.Sprint(*st) != fmt.Sprint(*want) {
		t.Errorf("settings: %+v, %v; want %+v", st, err, want)
	}
	for _, g := range []*directory.GroupRecord{
		{Key: "scim:b", Source: "scim", ID: "b", Name: "Sales", UpdatedAt: t0},
		{Key: "google:a", Source: "google", ID: "a", Name: "eng@example.com", UpdatedAt: t0},
		{Key: "scim:b", Source: "scim", ID: "b", Name: "Sales EMEA", UpdatedAt: t0},
	} {
		if err := s.PutGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	s.Groups(ctx, func(g *directory.GroupRecord) bool { got = append(got, g.Key+"="+g.Name); return true })
	if fmt.Sprint(got) != "[google:a=eng@example.com scim:b=Sales EMEA]" {
		t.Errorf("groups: %v, want key order with the rename", got)
	}
	if err := s.DeleteGroup(ctx, "scim:b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(ctx, "scim:b"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("deleting a deleted group: %v, want ErrNotFound", err)
	}
}

func testDirectoryLinks(t *testing.T, s directory.Store) {
	ctx := context.Background()
	if e, err := s.Link(ctx, "scim:1"); err != nil || e != "" {
		t.Fatalf("unknown link: %q, %v", e, err)
	}
	s.SetLinks(ctx, map[string]string{"scim:1": "a@example.com", "scim:2": "c@example.com"})
	s.SetLinks(ctx, map[string]string{"scim:1": "b@example.com"})
	if e, _ := s.Link(ctx, "scim:1"); e != "b@example.com" {
		t.Errorf("link: %q, want the last set", e)
	}
	s.SetLinks(ctx, map[string]string{"scim:1": "", "scim:3": ""})
	if e, _ := s.Link(ctx, "scim:1"); e != "" {
		t.Errorf("unlinked: %q", e)
	}
	if e, _ := s.Link(ctx, "scim:2"); e != "c@example.com" {
		t.Errorf("scim:2: %q, want it kept", e)
	}
}

func testDirectoryOffboardings(t *testing.T, s directory.Store) {
	ctx := context.Background()
	for i, id := range []string{"ob-2", "ob-1", "ob-3"} {
		o := &directory.Offboarding{ID: id, Email: "a@example.com", State: directory.OffboardingPending, CreatedAt: t0.Add(time.Duration(i) * time.Minute),
			DueAt: t0.Add(time.Hour), Devices: []directory.DeviceAction{{Serial: "S" + id, Action: directory.ActionErase}}}
		if err := s.PutOffboarding(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	s.Offboardings(ctx, func(o *directory.Offboarding) bool { ids = append(ids, o.ID); return true })
	if fmt.Sprint(ids) != "[ob-1 ob-2 ob-3]" {
		t.Errorf("offboardings: %v, want id order", ids)
	}
	refused := errors.New("refused")
	if _, err := s.UpdateOffboarding(ctx, "ob-2", func(*directory.Offboarding) (*directory.Offboarding, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("fn's error: %v", err)
	}
	o, err := s.UpdateOffboarding(ctx, "ob-2", func(o *directory.Offboarding) (*directory.Offboarding, error) {
		o.State, o.Note = directory.OffboardingCancelled, "by admin"
		return o, nil
	})
	if err != nil || o.State != directory.OffboardingCancelled {
		t.Fatalf("update: %+v, %v", o, err)
	}
	var got *directory.Offboarding
	s.Offboardings(ctx, func(o *directory.Offboarding) bool {
		if o.ID == "ob-2" {
			got = o
		}
		return true
	})
	if got == nil || got.State != directory.OffboardingCancelled || got.Note != "by admin" || len(got.Devices) != 1 || got.Devices[0].Serial != "Sob-2" || !got.DueAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("stored after update: %+v", got)
	}
	if _, err := s.UpdateOffboarding(ctx, "nope", func(o *directory.Offboarding) (*directory.Offboarding, error) { return o, nil }); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("unknown offboarding: %v, want ErrNotFound", err)
	}
}

func testDirectoryAudit(t *testing.T, s directory.Store) {
	ctx := context.Background()
	for i := range 12 {
		if err := s.Audit(ctx, &directory.AuditEntry{At: t0, Actor: "scim token okta", Action: "user-created", Subject: fmt.Sprintf("u%d@example.com", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	s.AuditLog(ctx, 0, func(e *directory.AuditEntry) bool { seqs = append(seqs, e.Seq); return true })
	if len(seqs) != 12 || seqs[0] != 1 || seqs[11] != 12 {
		t.Fatalf("audit log: %v, want 1…12", seqs)
	}
	var after []string
	s.AuditLog(ctx, 10, func(e *directory.AuditEntry) bool { after = append(after, e.Subject); return true })
	if fmt.Sprint(after) != "[u10@example.com u11@example.com]" {
		t.Errorf("after 10: %v", after)
	}
}
