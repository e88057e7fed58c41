package scep

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"time"
)

// DefaultChallengeTTL is how long a challenge stays valid when no TTL is given.
const DefaultChallengeTTL = 24 * time.Hour

// challengeEncoding is upper-case base32 without padding: a PrintableString,
// as the PKCS#9 challengePassword attribute requires, and easy to type.
var challengeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewChallenge mints a one-time challenge, stores its hash and returns the
// record and the secret to hand to the device. The secret is not stored.
func NewChallenge(ctx context.Context, store Store, ttl time.Duration, note, mintedFor string) (*Challenge, string, error) {
	if ttl <= 0 {
		ttl = DefaultChallengeTTL
	}
	secret := make([]byte, 20)
	id := make([]byte, 8)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	password := challengeEncoding.EncodeToString(secret)
	now := time.Now().UTC()
	c := &Challenge{
		ID:        hex.EncodeToString(id),
		Hash:      hashChallenge(password),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
		Note:      note,
		For:       mintedFor,
	}
	if err := store.PutChallenge(ctx, c); err != nil {
		return nil, "", fmt.Errorf("scep: store challenge: %w", err)
	}
	return c, password, nil
}

func hashChallenge(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	return sum[:]
}

// lookupChallenge finds the stored challenge for a password. The store is
// keyed by the hash, and the hash is compared again in constant time so that
// no backend's lookup shape can leak how much of a guess was right.
func lookupChallenge(ctx context.Context, store Store, password string) (*Challenge, []byte, error) {
	h := hashChallenge(password)
	c, err := store.Challenge(ctx, h)
	if err != nil {
		return nil, h, err
	}
	if subtle.ConstantTimeCompare(c.Hash, h) != 1 {
		return nil, h, ErrNotFound
	}
	return c, h, nil
}
