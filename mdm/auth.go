package mdm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/pkcs7"
)

// Authentication errors. A handler answers ErrNoIdentity and
// ErrBadSignature with 400 and the others with 403 — never 401, which can
// make a device unenroll.
var (
	ErrNoIdentity     = errors.New("mdm: request carries no identity (no Mdm-Signature, no client certificate)")
	ErrBadSignature   = errors.New("mdm: Mdm-Signature does not verify")
	ErrUntrustedCert  = errors.New("mdm: identity certificate is not issued by a trusted CA")
	ErrRevokedCert    = errors.New("mdm: identity certificate is revoked")
	ErrCertNotAllowed = errors.New("mdm: identity certificate is bound to another enrollment")
)

// MaxSignatureBytes caps the Mdm-Signature header (a CMS signature with one
// certificate is a few KiB).
const MaxSignatureBytes = 32 << 10

// Sign returns the Mdm-Signature header value for body: a detached CMS
// SignedData, SHA-256, by cert and key. Devices send it; the simulated
// devices of package mdmtest use this.
func Sign(body []byte, cert *x509.Certificate, key crypto.Signer) (string, error) {
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return "", err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return "", err
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// VerifySignature checks an Mdm-Signature header value against body and
// returns the certificate that signed it. It does not judge whether that
// certificate is trusted; Authenticator does.
func VerifySignature(header string, body []byte) (*x509.Certificate, error) {
	return verifySignature(header, body, nil)
}

func verifySignature(header string, body []byte, certs *certCache) (*x509.Certificate, error) {
	if len(header) > MaxSignatureBytes {
		return nil, fmt.Errorf("%w: header larger than %d bytes", ErrBadSignature, MaxSignatureBytes)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(header))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrBadSignature, err)
	}
	cert, err := verifyDetachedDER(der, body, certs)
	if err == nil {
		return cert, nil
	}
	if !errors.Is(err, errNotDER) {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	// Not plain DER (BER from some client): the general parser.
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if len(p7.Content) != 0 {
		return nil, fmt.Errorf("%w: signature is not detached", ErrBadSignature)
	}
	p7.Content = body
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fmt.Errorf("%w: want exactly one signer, with its certificate", ErrBadSignature)
	}
	if err := p7.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return signer, nil
}

// ParseClientCertHeader reads a client certificate forwarded by a TLS proxy:
// the RFC 9440 form (":base64-DER:"), or URL-escaped PEM as nginx's
// $ssl_client_escaped_cert gives.
func ParseClientCertHeader(value string) (*x509.Certificate, error) {
	value = strings.TrimSpace(value)
	var der []byte
	switch {
	case strings.HasPrefix(value, ":") && strings.HasSuffix(value, ":") && len(value) > 2:
		var err error
		if der, err = base64.StdEncoding.DecodeString(value[1 : len(value)-1]); err != nil {
			return nil, fmt.Errorf("mdm: client certificate header: %v", err)
		}
	case strings.Contains(value, "BEGIN"):
		pemText, err := url.QueryUnescape(value)
		if err != nil {
			return nil, fmt.Errorf("mdm: client certificate header: %v", err)
		}
		der = pemBody(pemText)
	default:
		return nil, errors.New("mdm: client certificate header is neither :base64: (RFC 9440) nor PEM")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mdm: client certificate header: %v", err)
	}
	return cert, nil
}

func pemBody(s string) []byte {
	start := strings.Index(s, "-----BEGIN CERTIFICATE-----")
	end := strings.Index(s, "-----END CERTIFICATE-----")
	if start < 0 || end < start {
		return nil
	}
	body := strings.Join(strings.Fields(s[start+len("-----BEGIN CERTIFICATE-----"):end]), "")
	der, _ := base64.StdEncoding.DecodeString(body)
	return der
}

// An Authenticator finds and checks the identity a request carries.
type Authenticator struct {
	// Roots are the CAs whose device certificates are accepted: the
	// server's own SCEP CA and any configured extra CAs.
	Roots *x509.CertPool
	// CertHeader, when set, names the header in which a TLS proxy forwards
	// the client certificate (for example "Client-Cert"). Leave it empty
	// unless a proxy sets it and strips it from client requests.
	CertHeader string
	// IsRevoked reports whether the certificate with the given SHA-256
	// fingerprint is revoked. Nil means no revocation checking.
	IsRevoked func(ctx context.Context, fingerprint string) (bool, error)
	// Now returns the current time; time.Now when nil.
	Now func() time.Time

	// verified caches certificates whose chain verified, by fingerprint,
	// with their expiry: a chain that verified stays verified until the
	// certificate expires (Roots do not change), so each device's chain
	// is built once, not at every check-in. Revocation is checked every
	// time.
	verified sync.Map // fingerprint → time.Time (NotAfter)
	cached   atomic.Int64
	// certs caches the parsed certificates that sign requests.
	certs certCache
}

// maxVerifiedCache bounds the chain cache; past it, the cache is emptied.
const maxVerifiedCache = 200_000

// Identify returns the verified identity certificate of a request whose
// body has been read into body.
func (a *Authenticator) Identify(r *http.Request, body []byte) (*x509.Certificate, error) {
	var cert *x509.Certificate
	var err error
	switch {
	case r.Header.Get("Mdm-Signature") != "":
		cert, err = verifySignature(r.Header.Get("Mdm-Signature"), body, &a.certs)
	case a.CertHeader != "" && r.Header.Get(a.CertHeader) != "":
		cert, err = ParseClientCertHeader(r.Header.Get(a.CertHeader))
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		cert = r.TLS.PeerCertificates[0]
	default:
		return nil, ErrNoIdentity
	}
	if err != nil {
		return nil, err
	}
	return cert, a.check(r.Context(), cert)
}

func (a *Authenticator) check(ctx context.Context, cert *x509.Certificate) error {
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	if a.Roots == nil {
		return fmt.Errorf("%w: no trusted CAs configured", ErrUntrustedCert)
	}
	fp := CertFingerprint(cert)
	if notAfter, ok := a.verified.Load(fp); !ok || !now.Before(notAfter.(time.Time)) || now.Before(cert.NotBefore) {
		_, err := cert.Verify(x509.VerifyOptions{
			Roots:       a.Roots,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUntrustedCert, err)
		}
		if a.cached.Add(1) > maxVerifiedCache {
			a.verified.Clear()
			a.cached.Store(1)
		}
		a.verified.Store(fp, cert.NotAfter)
	}
	if a.IsRevoked != nil {
		revoked, err := a.IsRevoked(ctx, fp)
		if err != nil {
			return fmt.Errorf("mdm: revocation check: %w", err)
		}
		if revoked {
			return ErrRevokedCert
		}
	}
	return nil
}

// CertFingerprint is the lower-case hex SHA-256 of a certificate, the same
// name package scep gives it.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}
