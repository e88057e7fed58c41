package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/custodymdm/custody/enroll/scim"
)

// RunSCIM runs the conformance tests of a scim.Store.
func RunSCIM(t *testing.T, newStore func(t *testing.T) scim.Store) {
	t.Run("Resources", func(t *testing.T) { testSCIMResources(t, newStore(t)) })
	t.Run("UniqueKeys", func(t *testing.T) { testSCIMUniqueKeys(t, newStore(t)) })
	t.Run("Tokens", func(t *testing.T) { testSCIMTokens(t, newStore(t)) })
}

func scimUser(id, key string) *scim.Stored {
	return &scim.Stored{Type: "User", ID: id, Key: key, Version: 1, Created: t0, Modified: t0,
		Attrs: scim.Resource{"userName": key, "active": true, "emails": []any{map[string]any{"value": key, "primary": true}}}}
}

func testSCIMResources(t *testing.T, s scim.Store) {
	ctx := context.Background()
	for _, id := range []string{"c", "a", "b"} {
		if err := s.Create(ctx, scimUser(id, id+"@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, &scim.Stored{Type: "Group", ID: "a", Version: 1, Attrs: scim.Resource{"displayName": "G"}}); err != nil {
		t.Fatalf("a group with a user's id: %v", err)
	}
	var ids []string
	s.List(ctx, "User", func(st *scim.Stored) bool { ids = append(ids, st.ID); return true })
	if fmt.Sprint(ids) != "[a b c]" {
		t.Errorf("List(User): %v, want ID order", ids)
	}
	got, err := s.Get(ctx, "User", "b")
	if err != nil || got.Attrs["active"] != true || got.Attrs["emails"].([]any)[0].(map[string]any)["primary"] != true || !got.Created.Equal(t0) {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "Group", "b"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("Get of another type: %v", err)
	}
	up, err := s.Update(ctx, "User", "b", func(st *scim.Stored) (*scim.Stored, error) {
		out := *st
		out.Version, out.Attrs = 2, scim.Resource{"userName": "b@example.com", "active": false}
		return &out, nil
	})
	if err != nil || up.Version != 2 || up.Attrs["active"] != false {
		t.Fatalf("Update: %+v, %v", up, err)
	}
	if _, err := s.Update(ctx, "User", "zz", func(st *scim.Stored) (*scim.Stored, error) { return st, nil }); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("Update of a missing resource: %v", err)
	}
	refused := errors.New("refused")
	if _, err := s.Update(ctx, "User", "b", func(*scim.Stored) (*scim.Stored, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("Update's fn error: %v", err)
	}
	del, err := s.Delete(ctx, "User", "b")
	if err != nil || del.Version != 2 {
		t.Fatalf("Delete: %+v, %v", del, err)
	}
	if _, err := s.Delete(ctx, "User", "b"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("Delete twice: %v", err)
	}
	// The deleted user's key is free again.
	if err := s.Create(ctx, scimUser("d", "b@example.com")); err != nil {
		t.Errorf("re-using a deleted user's key: %v", err)
	}
}

func testSCIMUniqueKeys(t *testing.T, s scim.Store) {
	ctx := context.Background()
	s.Create(ctx, scimUser("1", "ana@example.com"))
	s.Create(ctx, scimUser("2", "bo@example.com"))
	if err := s.Create(ctx, scimUser("3", "ana@example.com")); !errors.Is(err, scim.ErrUniqueness) {
		t.Errorf("a taken key: %v", err)
	}
	if err := s.Create(ctx, scimUser("1", "cy@example.com")); !errors.Is(err, scim.ErrUniqueness) {
		t.Errorf("a taken id: %v", err)
	}
	rename := func(id, key string) error {
		_, err := s.Update(ctx, "User", id, func(st *scim.Stored) (*scim.Stored, error) {
			out := *st
			out.Key = key
			return &out, nil
		})
		return err
	}
	if err := rename("2", "ana@example.com"); !errors.Is(err, scim.ErrUniqueness) {
		t.Errorf("renaming onto a taken key: %v", err)
	}
	if err := rename("1", "ana.lima@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := rename("2", "ana@example.com"); err != nil {
		t.Errorf("the old key was not freed by the rename: %v", err)
	}
	if err := rename("2", "ana@example.com"); err != nil {
		t.Errorf("an update keeping its own key: %v", err)
	}
}

func testSCIMTokens(t *testing.T, s scim.Store) {
	ctx := context.Background()
	for _, id := range []string{"t1", "t2"} {
		if err := s.PutToken(ctx, &scim.Token{ID: id, Name: "okta", Hash: []byte{1, 2, 3}, Created: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken(ctx, "t1"); !errors.Is(err, scim.ErrNotFound) {
		t.Errorf("DeleteToken twice: %v", err)
	}
	tokens, err := s.Tokens(ctx)
	if err != nil || len(tokens) != 1 || tokens[0].ID != "t2" || string(tokens[0].Hash) != "\x01\x02\x03" {
		t.Errorf("Tokens: %+v, %v", tokens, err)
	}
}
