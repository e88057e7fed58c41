package scep

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns. The Server maps them to SCEP failures; the admin API
// maps them to HTTP statuses.
var (
	ErrNotFound         = errors.New("scep: not found")
	ErrChallengeUsed    = errors.New("scep: challenge already used")
	ErrChallengeExpired = errors.New("scep: challenge expired")
	ErrDuplicateSerial  = errors.New("scep: certificate serial number already issued")
	ErrAlreadyRevoked   = errors.New("scep: certificate already revoked")
)

// A Challenge is a one-time SCEP challenge password. Only the SHA-256 hash of
// the secret is stored.
type Challenge struct {
	ID        string    `json:"id"`   // public, non-secret name of the challenge
	Hash      []byte    `json:"hash"` // SHA-256 of the secret
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Note      string    `json:"note,omitempty"`
	// For is the opaque id of what the challenge was minted for (an
	// enrollment record, say); the certificate it authorises records it.
	For string `json:"for,omitempty"`

	UsedAt          time.Time `json:"used_at,omitzero"`
	CertFingerprint string    `json:"cert_fingerprint,omitempty"` // set when used
}

// Used reports whether the challenge has authorised a certificate.
func (c *Challenge) Used() bool { return c.CertFingerprint != "" }

// Consume marks the challenge used at now by the certificate with the given
// fingerprint: ErrChallengeUsed or ErrChallengeExpired (judged against now)
// when it cannot be, and then it is unchanged. Stores call it inside the
// transaction of ConsumeChallenge.
func (c *Challenge) Consume(now time.Time, fingerprint string) error {
	switch {
	case c.Used():
		return ErrChallengeUsed
	case !now.Before(c.ExpiresAt):
		return ErrChallengeExpired
	}
	c.UsedAt, c.CertFingerprint = now.UTC(), fingerprint
	return nil
}

// An IssuedCert is the record of a certificate the Server issued.
type IssuedCert struct {
	Fingerprint string    `json:"fingerprint"` // lower-case hex SHA-256 of DER
	Serial      string    `json:"serial"`      // lower-case hex
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DER         []byte    `json:"der"`
	IssuedAt    time.Time `json:"issued_at"`

	// ChallengeID names the challenge that authorised the certificate; empty
	// for a renewal.
	ChallengeID string `json:"challenge_id,omitempty"`
	// For is copied from the challenge, or from the renewed certificate.
	For string `json:"for,omitempty"`
	// RenewedFrom is the fingerprint of the certificate that signed the
	// RenewalReq.
	RenewedFrom string `json:"renewed_from,omitempty"`

	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Revoked reports whether the certificate has been revoked.
func (c *IssuedCert) Revoked() bool { return !c.RevokedAt.IsZero() }

// Store keeps challenges and issued certificates. Implementations must make
// ConsumeChallenge atomic: of any number of concurrent calls with the same
// challenge, exactly one succeeds, and its certificate is stored in the same
// transaction that marks the challenge used.
type Store interface {
	// PutChallenge stores a new challenge, keyed by its Hash.
	PutChallenge(ctx context.Context, c *Challenge) error
	// Challenge returns the challenge with the given hash, or ErrNotFound.
	Challenge(ctx context.Context, hash []byte) (*Challenge, error)
	// ChallengeByID returns the challenge with the given ID, or
	// ErrNotFound.
	ChallengeByID(ctx context.Context, id string) (*Challenge, error)
	// ConsumeChallenge marks the challenge with the given hash used by cert
	// and stores cert, in one transaction. It returns ErrNotFound,
	// ErrChallengeUsed, ErrChallengeExpired (judged against now) or
	// ErrDuplicateSerial, and then stores nothing.
	ConsumeChallenge(ctx context.Context, hash []byte, now time.Time, cert *IssuedCert) error
	// PutCert stores a certificate issued without a challenge (a renewal).
	// It returns ErrDuplicateSerial if the serial is taken.
	PutCert(ctx context.Context, cert *IssuedCert) error
	// Cert returns the certificate with the given fingerprint, or ErrNotFound.
	Cert(ctx context.Context, fingerprint string) (*IssuedCert, error)
	// Certs calls fn for each issued certificate in fingerprint order until fn
	// returns false.
	Certs(ctx context.Context, fn func(*IssuedCert) bool) error
	// RevokeCert marks the certificate revoked at the given time. It returns
	// ErrNotFound or ErrAlreadyRevoked.
	RevokeCert(ctx context.Context, fingerprint string, at time.Time) error
	// Revoked reports whether the certificate is revoked; false for a
	// certificate the store does not know. It is on the path of every
	// authenticated MDM request, so it must be cheap.
	Revoked(ctx context.Context, fingerprint string) (bool, error)
}
