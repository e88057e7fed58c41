package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Store errors.
var (
	ErrNotFound     = errors.New("enroll: not found")
	ErrTokenUsed    = errors.New("enroll: enrollment token already used")
	ErrTokenExpired = errors.New("enroll: enrollment token expired")
)

// DefaultTokenTTL is how long an enrollment link stays valid.
const DefaultTokenTTL = 7 * 24 * time.Hour

// A Token is a one-time enrollment token: the secret part of an enrollment
// URL. Only its SHA-256 hash is stored.
type Token struct {
	ID        string    `json:"id"`
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Note      string    `json:"note,omitempty"`
	// For is the opaque id of what the token was minted for (a
	// pre-enrollment record, a user).
	For    string    `json:"for,omitempty"`
	UsedAt time.Time `json:"used_at,omitzero"`
	// ChallengeID names the SCEP challenge minted when the token was used.
	ChallengeID string `json:"challenge_id,omitempty"`
}

// Consume marks the token used at now by the SCEP challenge challengeID:
// ErrTokenUsed or ErrTokenExpired (judged against now) when it cannot be,
// and then it is unchanged. Stores call it inside the transaction of
// ConsumeToken.
func (t *Token) Consume(now time.Time, challengeID string) error {
	switch {
	case !t.UsedAt.IsZero():
		return ErrTokenUsed
	case !now.Before(t.ExpiresAt):
		return ErrTokenExpired
	}
	t.UsedAt, t.ChallengeID = now.UTC(), challengeID
	return nil
}

// Store keeps enrollment tokens.
type Store interface {
	// PutToken stores a new token, keyed by its Hash.
	PutToken(ctx context.Context, t *Token) error
	// ConsumeToken marks the token with the given hash used at now by the
	// given SCEP challenge and returns it, in one transaction. It returns
	// ErrNotFound, ErrTokenUsed or ErrTokenExpired, and then changes
	// nothing.
	ConsumeToken(ctx context.Context, hash []byte, now time.Time, challengeID string) (*Token, error)
	// Token returns the token with the given ID, or ErrNotFound.
	Token(ctx context.Context, id string) (*Token, error)
	// TokenByHash returns the token with the given hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
}

// NewToken mints and stores a token and returns it with its secret, the
// last element of the enrollment URL.
func NewToken(ctx context.Context, store Store, ttl time.Duration, note, mintedFor string) (*Token, string, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	secret, id := make([]byte, 24), make([]byte, 8)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	s := base64.RawURLEncoding.EncodeToString(secret)
	now := time.Now().UTC()
	t := &Token{ID: hex.EncodeToString(id), Hash: HashToken(s), CreatedAt: now, ExpiresAt: now.Add(ttl), Note: note, For: mintedFor}
	if err := store.PutToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("enroll: store token: %w", err)
	}
	return t, s, nil
}

// HashToken is the stored form of a token secret.
func HashToken(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}
