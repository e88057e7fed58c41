package mdm_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

type deviceIdentity struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

func newDevice(t testing.TB, ca *scep.CA) deviceIdentity {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := scep.NewCSR(key, pkix.Name{CommonName: "device"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignCSR(context.Background(), csr)
	if err != nil {
		t.Fatal(err)
	}
	return deviceIdentity{cert, key}
}

func checkinRequest(t testing.TB, body string, header, value string) *http.Request {
	r, _ := http.NewRequest(http.MethodPut, "https://mdm.example/checkin", strings.NewReader(body))
	if header != "" {
		r.Header.Set(header, value)
	}
	return r
}

func TestAuthenticator(t *testing.T) {
	ca, err := scep.NewCA("Custody Device CA", 2048, time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := scep.NewCA("Some Other CA", 2048, time.Hour*24)
	dev := newDevice(t, ca)
	stranger := newDevice(t, other)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	revoked := map[string]bool{}
	auth := &mdm.Authenticator{
		Roots:      roots,
		CertHeader: "Client-Cert",
		IsRevoked: func(_ context.Context, fp string) (bool, error) {
			return revoked[fp], nil
		},
	}
	body := tokenUpdateBody
	sig, err := mdm.Sign([]byte(body), dev.cert, dev.key)
	if err != nil {
		t.Fatal(err)
	}

	got, err := auth.Identify(checkinRequest(t, body, "Mdm-Signature", sig), []byte(body))
	if err != nil || !got.Equal(dev.cert) {
		t.Fatalf("signed request: %v, %v; want the device's cert", got, err)
	}

	strangerSig, _ := mdm.Sign([]byte(body), stranger.cert, stranger.key)
	rfc9440 := ":" + base64.StdEncoding.EncodeToString(dev.cert.Raw) + ":"
	nginx := url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dev.cert.Raw})))
	for _, tc := range []struct {
		name, header, value, body string
		want                      error
	}{
		{"unsigned", "", "", body, mdm.ErrNoIdentity},
		{"tampered body", "Mdm-Signature", sig, strings.Replace(body, "TokenUpdate", "TokenUpdatX", 1), mdm.ErrBadSignature},
		{"not base64", "Mdm-Signature", "%%%", body, mdm.ErrBadSignature},
		{"garbage CMS", "Mdm-Signature", base64.StdEncoding.EncodeToString([]byte("garbage")), body, mdm.ErrBadSignature},
		{"huge header", "Mdm-Signature", strings.Repeat("A", mdm.MaxSignatureBytes+4), body, mdm.ErrBadSignature},
		{"other CA", "Mdm-Signature", strangerSig, body, mdm.ErrUntrustedCert},
		{"RFC 9440 header", "Client-Cert", rfc9440, body, nil},
		{"nginx escaped PEM", "Client-Cert", nginx, body, nil},
		{"bad cert header", "Client-Cert", ":AAAA:", body, mdm.ErrBadSignature},
		{"header from unconfigured proxy", "X-Client-Cert", rfc9440, body, mdm.ErrNoIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.Identify(checkinRequest(t, tc.body, tc.header, tc.value), []byte(tc.body))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Identify error = %v, want %v", err, tc.want)
			}
		})
	}

	// Expired: the same signature, judged two years later.
	late := &mdm.Authenticator{Roots: roots, Now: func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }}
	if _, err := late.Identify(checkinRequest(t, body, "Mdm-Signature", sig), []byte(body)); !errors.Is(err, mdm.ErrUntrustedCert) {
		t.Errorf("expired cert: %v, want ErrUntrustedCert", err)
	}
	revoked[mdm.CertFingerprint(dev.cert)] = true
	if _, err := auth.Identify(checkinRequest(t, body, "Mdm-Signature", sig), []byte(body)); !errors.Is(err, mdm.ErrRevokedCert) {
		t.Errorf("revoked cert: %v, want ErrRevokedCert", err)
	}
	if mdm.CertFingerprint(dev.cert) != scep.Fingerprint(dev.cert) {
		t.Error("mdm and scep name certificates differently")
	}
}

const tokenUpdateBody = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>u1</string></dict></plist>`

func FuzzVerifySignature(f *testing.F) {
	f.Add("MIIB", []byte(tokenUpdateBody))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, header string, body []byte) { mdm.VerifySignature(header, body) })
}

// The chain cache does not outlive the certificate.
func TestAuthenticatorCacheExpiry(t *testing.T) {
	ca, _ := scep.NewCA("CA", 2048, 24*time.Hour)
	dev := newDevice(t, ca)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	now := time.Now()
	auth := &mdm.Authenticator{Roots: roots, Now: func() time.Time { return now }}
	body := tokenUpdateBody
	sig, _ := mdm.Sign([]byte(body), dev.cert, dev.key)
	for range 2 { // the second is served from the cache
		if _, err := auth.Identify(checkinRequest(t, body, "Mdm-Signature", sig), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	now = dev.cert.NotAfter.Add(time.Minute)
	if _, err := auth.Identify(checkinRequest(t, body, "Mdm-Signature", sig), []byte(body)); !errors.Is(err, mdm.ErrUntrustedCert) {
		t.Errorf("expired certificate after caching: %v, want ErrUntrustedCert", err)
	}
}
