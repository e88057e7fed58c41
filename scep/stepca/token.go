package stepca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"go.step.sm/crypto/jose"
)

// ottLifetime is how long a one-time token is valid, as in the step CLI.
// step-ca records each token's ID, so a token is spent by its first use.
const ottLifetime = 5 * time.Minute

// ottClaims are the claims step-ca's JWK provisioner reads from a token.
type ottClaims struct {
	jose.Claims
	SANs         []string      `json:"sans,omitempty"`
	Confirmation *confirmation `json:"cnf,omitempty"`
}

// confirmation binds a token to one CSR: step-ca refuses the token for a CSR
// whose DER has another SHA-256.
type confirmation struct {
	Fingerprint string `json:"x5rt#S256"`
}

// ParseKey reads a JWK provisioner's private key: the encryptedKey of the
// provisioner in step-ca's ca.json, or a key file from `step crypto jwk
// create`, both decrypted with password; or, with a nil password, a plain
// JWK or PEM private key.
func ParseKey(data, password []byte) (*jose.JSONWebKey, error) {
	var opts []jose.Option
	if len(password) > 0 {
		opts = append(opts, jose.WithPassword(password))
	}
	key, err := jose.ParseKey(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("stepca: provisioner key: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

func checkKey(key *jose.JSONWebKey) error {
	switch {
	case key == nil:
		return errors.New("stepca: no provisioner key")
	case jose.IsSymmetric(key) || key.IsPublic():
		return fmt.Errorf("stepca: provisioner key %q is not an asymmetric private key", key.KeyID)
	case key.KeyID == "":
		return errors.New("stepca: provisioner key has no key ID (kid)")
	}
	return nil
}

// token mints the one-time token that authorises step-ca to sign csr, and
// returns it with its subject.
func (s *Signer) token(csr *x509.CertificateRequest, now time.Time) (subject, token string, err error) {
	sans := make([]string, 0, len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs))
	sans = append(sans, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		sans = append(sans, u.String())
	}
	// step-ca requires a subject. Without SANs in the token it puts the
	// subject in the certificate as the only SAN.
	subject = csr.Subject.CommonName
	if subject == "" {
		if len(sans) == 0 {
			return "", "", errors.New("stepca: CSR has neither a common name nor a SAN")
		}
		subject = sans[0]
	}
	fp := sha256.Sum256(csr.Raw)
	claims := ottClaims{
		Claims: jose.Claims{
			Issuer:    s.provisioner,
			Subject:   subject,
			Audience:  jose.Audience{endpoint(s.base, "/1.0/sign")},
			NotBefore: jose.NewNumericDate(now),
			IssuedAt:  jose.NewNumericDate(now),
			Expiry:    jose.NewNumericDate(now.Add(ottLifetime)),
			ID:        rand.Text(),
		},
		SANs:         sans,
		Confirmation: &confirmation{Fingerprint: base64.RawURLEncoding.EncodeToString(fp[:])},
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(s.key.Algorithm), Key: s.key.Key},
		new(jose.SignerOptions).WithType("JWT").WithHeader("kid", s.key.KeyID),
	)
	if err != nil {
		return "", "", fmt.Errorf("stepca: token signer: %w", err)
	}
	token, err = jose.Signed(signer).Claims(claims).CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("stepca: sign token for %q: %w", subject, err)
	}
	return subject, token, nil
}
