package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// RunEnroll runs the enroll.Store conformance tests. newStore must return
// a fresh, empty store each time it is called.
func RunEnroll(t *testing.T, newStore func(t *testing.T) enroll.Store) {
	t.Run("TokenOnce", func(t *testing.T) { testTokenOnce(t, newStore(t)) })
	t.Run("TokenConcurrent", func(t *testing.T) { testTokenConcurrent(t, newStore(t)) })
}

func putToken(t *testing.T, s enroll.Store, id string, ttl time.Duration) *enroll.Token {
	t.Helper()
	tok := &enroll.Token{ID: id, Hash: enroll.HashToken("secret-" + id), CreatedAt: t0, ExpiresAt: t0.Add(ttl), For: "record-" + id}
	if err := s.PutToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func testTokenOnce(t *testing.T, s enroll.Store) {
	ctx := context.Background()
	tok := putToken(t, s, "t1", time.Hour)
	if got, err := s.TokenByHash(ctx, tok.Hash); err != nil || got.ID != "t1" || got.For != "record-t1" {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	got, err := s.ConsumeToken(ctx, tok.Hash, t0.Add(time.Minute), "challenge-1")
	if err != nil || got.ID != "t1" || got.ChallengeID != "challenge-1" || !got.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ConsumeToken = %+v, %v", got, err)
	}
	if byID, err := s.Token(ctx, "t1"); err != nil || byID.ChallengeID != "challenge-1" {
		t.Errorf("Token(t1) after use = %+v, %v", byID, err)
	}
	if _, err := s.ConsumeToken(ctx, tok.Hash, t0.Add(2*time.Minute), "challenge-2"); !errors.Is(err, enroll.ErrTokenUsed) {
		t.Errorf("second ConsumeToken: %v, want ErrTokenUsed", err)
	}
	old := putToken(t, s, "t2", time.Hour)
	if _, err := s.ConsumeToken(ctx, old.Hash, t0.Add(time.Hour), "c"); !errors.Is(err, enroll.ErrTokenExpired) {
		t.Errorf("expired ConsumeToken: %v, want ErrTokenExpired", err)
	}
	if _, err := s.ConsumeToken(ctx, enroll.HashToken("nope"), t0, "c"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("unknown ConsumeToken: %v, want ErrNotFound", err)
	}
	if _, err := s.Token(ctx, "nope"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Token(unknown): %v, want ErrNotFound", err)
	}
}

func testTokenConcurrent(t *testing.T, s enroll.Store) {
	tok := putToken(t, s, "race", time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.ConsumeToken(context.Background(), tok.Hash, t0, "c") })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, enroll.ErrTokenUsed) {
			t.Errorf("racer error %v, want ErrTokenUsed", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d consumptions of one token succeeded, want 1", ok)
	}
}
