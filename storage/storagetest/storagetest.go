// Package storagetest is the conformance suite for Custody's storage
// backends. A backend's tests call one Run function per store interface it
// implements, with a constructor for a fresh, empty store; every backend
// (bbolt, PostgreSQL) passes the same suite.
package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/scep"
)

// RunSCEP runs the scep.Store conformance tests. newStore must return a
// fresh, empty store each time it is called.
func RunSCEP(t *testing.T, newStore func(t *testing.T) scep.Store) {
	t.Run("ChallengeRoundTrip", func(t *testing.T) { testChallengeRoundTrip(t, newStore(t)) })
	t.Run("ConsumeOnce", func(t *testing.T) { testConsumeOnce(t, newStore(t)) })
	t.Run("ConsumeRefusals", func(t *testing.T) { testConsumeRefusals(t, newStore(t)) })
	t.Run("ConcurrentConsume", func(t *testing.T) { testConcurrentConsume(t, newStore(t)) })
	t.Run("DuplicateSerial", func(t *testing.T) { testDuplicateSerial(t, newStore(t)) })
	t.Run("CertsInOrder", func(t *testing.T) { testCertsInOrder(t, newStore(t)) })
	t.Run("Revoke", func(t *testing.T) { testRevoke(t, newStore(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelledContext(t, newStore(t)) })
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newChallenge(t *testing.T, s scep.Store, ttl time.Duration) *scep.Challenge {
	t.Helper()
	sum := sha256.Sum256([]byte(randomHex(20)))
	c := &scep.Challenge{
		ID: randomHex(8), Hash: sum[:], CreatedAt: t0, ExpiresAt: t0.Add(ttl),
		Note: "laptop for ana", For: "record-" + randomHex(4),
	}
	if err := s.PutChallenge(context.Background(), c); err != nil {
		t.Fatalf("PutChallenge: %v", err)
	}
	return c
}

func newCert(serial string) *scep.IssuedCert {
	return &scep.IssuedCert{
		Fingerprint: randomHex(32), Serial: serial, Subject: "CN=device",
		NotBefore: t0, NotAfter: t0.Add(365 * 24 * time.Hour), DER: []byte{0x30, 0x03, 0x02, 0x01, 0x01},
		IssuedAt: t0,
	}
}

func testChallengeRoundTrip(t *testing.T, s scep.Store) {
	ctx := context.Background()
	c := newChallenge(t, s, time.Hour)
	got, err := s.Challenge(ctx, c.Hash)
	if err != nil {
		t.Fatalf("Challenge: %v", err)
	}
	if got.ID != c.ID || !got.ExpiresAt.Equal(c.ExpiresAt) || got.Note != c.Note || got.For != c.For || got.Used() {
		t.Errorf("Challenge = %+v, want %+v", got, c)
	}
	if byID, err := s.ChallengeByID(ctx, c.ID); err != nil || string(byID.Hash) != string(c.Hash) {
		t.Errorf("ChallengeByID(%s) = %+v, %v", c.ID, byID, err)
	}
	if _, err := s.ChallengeByID(ctx, "nope"); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("ChallengeByID(unknown) error = %v, want ErrNotFound", err)
	}
	other := sha256.Sum256([]byte("not stored"))
	if _, err := s.Challenge(ctx, other[:]); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("Challenge(unknown) error = %v, want ErrNotFound", err)
	}
}

func testConsumeOnce(t *testing.T, s scep.Store) {
	ctx := context.Background()
	c := newChallenge(t, s, time.Hour)
	cert := newCert("0a")
	cert.ChallengeID, cert.For = c.ID, c.For
	if err := s.ConsumeChallenge(ctx, c.Hash, t0.Add(time.Minute), cert); err != nil {
		t.Fatalf("ConsumeChallenge: %v", err)
	}
	got, err := s.Challenge(ctx, c.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Used() || got.CertFingerprint != cert.Fingerprint || !got.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("consumed challenge = %+v, want used by %s at %v", got, cert.Fingerprint, t0.Add(time.Minute))
	}
	stored, err := s.Cert(ctx, cert.Fingerprint)
	if err != nil {
		t.Fatalf("Cert: %v", err)
	}
	if stored.ChallengeID != c.ID || stored.For != c.For || stored.Serial != "0a" || string(stored.DER) != string(cert.DER) {
		t.Errorf("stored cert = %+v, want %+v", stored, cert)
	}
	second := newCert("0b")
	if err := s.ConsumeChallenge(ctx, c.Hash, t0.Add(2*time.Minute), second); !errors.Is(err, scep.ErrChallengeUsed) {
		t.Errorf("second ConsumeChallenge error = %v, want ErrChallengeUsed", err)
	}
	if _, err := s.Cert(ctx, second.Fingerprint); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("refused cert was stored (Cert error = %v)", err)
	}
}

func testConsumeRefusals(t *testing.T, s scep.Store) {
	ctx := context.Background()
	expired := newChallenge(t, s, time.Hour)
	cert := newCert("01")
	if err := s.ConsumeChallenge(ctx, expired.Hash, t0.Add(time.Hour), cert); !errors.Is(err, scep.ErrChallengeExpired) {
		t.Errorf("ConsumeChallenge at expiry error = %v, want ErrChallengeExpired", err)
	}
	unknown := sha256.Sum256([]byte("unknown"))
	if err := s.ConsumeChallenge(ctx, unknown[:], t0, cert); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("ConsumeChallenge(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Cert(ctx, cert.Fingerprint); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("cert of a refused consumption was stored (Cert error = %v)", err)
	}
	got, _ := s.Challenge(ctx, expired.Hash)
	if got == nil || got.Used() {
		t.Errorf("expired challenge was marked used: %+v", got)
	}
}

// testConcurrentConsume is the property the issuance path relies on: many
// requests racing with one challenge yield exactly one certificate.
func testConcurrentConsume(t *testing.T, s scep.Store) {
	ctx := context.Background()
	c := newChallenge(t, s, time.Hour)
	const racers = 16
	var wg sync.WaitGroup
	errs := make([]error, racers)
	certs := make([]*scep.IssuedCert, racers)
	for i := range racers {
		certs[i] = newCert(fmt.Sprintf("%02x", 0x10+i))
		wg.Go(func() { errs[i] = s.ConsumeChallenge(ctx, c.Hash, t0.Add(time.Second), certs[i]) })
	}
	wg.Wait()
	var winner *scep.IssuedCert
	for i, err := range errs {
		switch {
		case err == nil && winner == nil:
			winner = certs[i]
		case err == nil:
			t.Errorf("two consumptions of one challenge succeeded")
		case !errors.Is(err, scep.ErrChallengeUsed):
			t.Errorf("racer %d: error = %v, want ErrChallengeUsed", i, err)
		}
	}
	if winner == nil {
		t.Fatal("no consumption succeeded")
	}
	n := 0
	s.Certs(ctx, func(*scep.IssuedCert) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d certificates stored, want 1", n)
	}
	got, _ := s.Challenge(ctx, c.Hash)
	if got.CertFingerprint != winner.Fingerprint {
		t.Errorf("challenge bound to %s, want the winner %s", got.CertFingerprint, winner.Fingerprint)
	}
}

func testDuplicateSerial(t *testing.T, s scep.Store) {
	ctx := context.Background()
	if err := s.PutCert(ctx, newCert("77")); err != nil {
		t.Fatalf("PutCert: %v", err)
	}
	if err := s.PutCert(ctx, newCert("77")); !errors.Is(err, scep.ErrDuplicateSerial) {
		t.Errorf("PutCert(same serial) error = %v, want ErrDuplicateSerial", err)
	}
	c := newChallenge(t, s, time.Hour)
	if err := s.ConsumeChallenge(ctx, c.Hash, t0, newCert("77")); !errors.Is(err, scep.ErrDuplicateSerial) {
		t.Errorf("ConsumeChallenge(same serial) error = %v, want ErrDuplicateSerial", err)
	}
	if got, _ := s.Challenge(ctx, c.Hash); got.Used() {
		t.Error("challenge consumed although its certificate was refused")
	}
}

func testCertsInOrder(t *testing.T, s scep.Store) {
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 20 {
		c := newCert(fmt.Sprintf("%x", 0x100+i))
		want[c.Fingerprint] = true
		if err := s.PutCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	prev, n := "", 0
	err := s.Certs(ctx, func(c *scep.IssuedCert) bool {
		if c.Fingerprint <= prev {
			t.Errorf("Certs out of order: %s after %s", c.Fingerprint, prev)
		}
		if !want[c.Fingerprint] {
			t.Errorf("Certs returned unknown %s", c.Fingerprint)
		}
		prev = c.Fingerprint
		n++
		return true
	})
	if err != nil || n != 20 {
		t.Errorf("Certs visited %d (err %v), want 20", n, err)
	}
	n = 0
	s.Certs(ctx, func(*scep.IssuedCert) bool { n++; return n < 5 })
	if n != 5 {
		t.Errorf("Certs did not stop when fn returned false: %d visits", n)
	}
}

func testRevoke(t *testing.T, s scep.Store) {
	ctx := context.Background()
	c := newCert("aa")
	if err := s.PutCert(ctx, c); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(48 * time.Hour)
	if r, err := s.Revoked(ctx, c.Fingerprint); err != nil || r {
		t.Errorf("Revoked before revocation = %v, %v", r, err)
	}
	if err := s.RevokeCert(ctx, c.Fingerprint, at); err != nil {
		t.Fatalf("RevokeCert: %v", err)
	}
	got, err := s.Cert(ctx, c.Fingerprint)
	if err != nil || !got.Revoked() || !got.RevokedAt.Equal(at) {
		t.Errorf("after revoke: %+v, %v; want revoked at %v", got, err, at)
	}
	if r, err := s.Revoked(ctx, c.Fingerprint); err != nil || !r {
		t.Errorf("Revoked after revocation = %v, %v", r, err)
	}
	if r, err := s.Revoked(ctx, randomHex(32)); err != nil || r {
		t.Errorf("Revoked(unknown) = %v, %v", r, err)
	}
	if err := s.RevokeCert(ctx, c.Fingerprint, at); !errors.Is(err, scep.ErrAlreadyRevoked) {
		t.Errorf("second RevokeCert error = %v, want ErrAlreadyRevoked", err)
	}
	if err := s.RevokeCert(ctx, randomHex(32), at); !errors.Is(err, scep.ErrNotFound) {
		t.Errorf("RevokeCert(unknown) error = %v, want ErrNotFound", err)
	}
}

func testCancelledContext(t *testing.T, s scep.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutCert(ctx, newCert("bb")); !errors.Is(err, context.Canceled) {
		t.Errorf("PutCert with cancelled context error = %v, want context.Canceled", err)
	}
	n := 0
	s.Certs(context.Background(), func(*scep.IssuedCert) bool { n++; return true })
	if n != 0 {
		t.Errorf("a write with a cancelled context stored %d certs", n)
	}
}
