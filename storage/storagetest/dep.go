package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/custodymdm/custody/dep"
)

// RunDEP runs the conformance tests of a dep.Store.
func RunDEP(t *testing.T, newStore func(t *testing.T) dep.Store) {
	t.Run("Cursor", func(t *testing.T) { testDEPCursor(t, newStore(t)) })
	t.Run("Tokens", func(t *testing.T) { testDEPTokens(t, newStore(t)) })
}

func testDEPCursor(t *testing.T, s dep.Store) {
	ctx := context.Background()
	c, err := s.Cursor(ctx, "abm")
	if err != nil || c == nil || c.Cursor != "" || c.Fetched {
		t.Fatalf("Cursor of a new token = %+v, %v; want a zero Cursor", c, err)
	}
	want := &dep.Cursor{Cursor: "MTIz", Fetched: true, FetchedUntil: t0, UpdatedAt: t0}
	if err := s.PutCursor(ctx, "abm", want); err != nil {
		t.Fatal(err)
	}
	c, err = s.Cursor(ctx, "abm")
	if err != nil || c.Cursor != "MTIz" || !c.Fetched || !c.FetchedUntil.Equal(t0) {
		t.Errorf("Cursor = %+v, %v; want %+v", c, err, want)
	}
	if c, _ := s.Cursor(ctx, "other"); c.Cursor != "" {
		t.Errorf("another token's cursor: %+v", c)
	}
}

func testDEPTokens(t *testing.T, s dep.Store) {
	ctx := context.Background()
	for _, name := range []string{"school", "abm"} {
		tok := &dep.Token{Name: name, OAuth: dep.OAuth1Tokens{ConsumerKey: "CK_" + name, ConsumerSecret: "CS", AccessToken: "AT", AccessSecret: "AS"},
			BaseURL: "http://127.0.0.1:1", DefaultProfile: "P1", CreatedAt: t0, UpdatedAt: t0}
		if err := s.PutToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := s.Token(ctx, "abm")
	if err != nil || tok.OAuth.ConsumerKey != "CK_abm" || tok.DefaultProfile != "P1" || !tok.CreatedAt.Equal(t0) {
		t.Errorf("Token(abm) = %+v, %v", tok, err)
	}
	if _, err := s.Token(ctx, "nope"); !errors.Is(err, dep.ErrNotFound) {
		t.Errorf("Token(unknown): %v, want ErrNotFound", err)
	}
	var names []string
	s.Tokens(ctx, func(t *dep.Token) bool { names = append(names, t.Name); return true })
	if len(names) != 2 || names[0] != "abm" || names[1] != "school" {
		t.Errorf("Tokens: %v, want [abm school]", names)
	}
}
