package stepca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"

	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/scep/stepca"
)

// testCA is a step-ca authority running in the test process: a root, an
// intermediate that signs, and one JWK provisioner, served over TLS on
// 127.0.0.1 with step-ca's own API handlers.
type testCA struct {
	URL          string
	Root         *x509.Certificate
	Intermediate *x509.Certificate

	Provisioner  string
	EncryptedKey string // the provisioner's private key, as ca.json holds it
	Password     []byte
	KeyID        string
}

// maxValidity is the provisioner's maxTLSCertDuration.
const maxValidity = 90 * 24 * time.Hour

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	rootKey, root := newCert(t, nil, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Example Root CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	})
	interKey, inter := newCert(t, root, rootKey, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Example Intermediate CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	})
	// step-ca serves TLS with a certificate from its own intermediate.
	tlsKey, tlsCert := newCert(t, inter, interKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Step Online CA"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})

	// What `step ca provisioner add custody --create` makes: a public JWK
	// in ca.json and the private JWK encrypted with a password beside it.
	password := []byte("provisioner password")
	pub, jwe, err := jose.GenerateDefaultKeyPair(password)
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	prov := &provisioner.JWK{
		Type:         "JWK",
		Name:         "custody",
		Key:          pub,
		EncryptedKey: encrypted,
		Claims: &provisioner.Claims{
			MaxTLSDur:     &provisioner.Duration{Duration: maxValidity},
			DefaultTLSDur: &provisioner.Duration{Duration: 24 * time.Hour},
		},
	}
	auth, err := authority.NewEmbedded(
		authority.WithConfig(&config.Config{
			DNSNames:        []string{"127.0.0.1"},
			AuthorityConfig: &config.AuthConfig{Provisioners: provisioner.List{prov}},
		}),
		authority.WithX509RootCerts(root),
		authority.WithX509Signer(inter, interKey),
		authority.WithQuietInit(),
	)
	if err != nil {
		t.Fatal(err)
	}

	// The routes and base context of step-ca's ca.New, without the rest of
	// the server (ACME, admin API, SCEP, metrics).
	mux := chi.NewRouter()
	api.Route(mux)
	mux.Route("/1.0", func(r chi.Router) { api.Route(r) })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.BaseContext = func(net.Listener) context.Context {
		return authority.NewContext(context.Background(), auth)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{tlsCert.Raw, inter.Raw},
		PrivateKey:  tlsKey,
	}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	return &testCA{
		URL:          srv.URL,
		Root:         root,
		Intermediate: inter,
		Provisioner:  prov.Name,
		EncryptedKey: encrypted,
		Password:     password,
		KeyID:        pub.KeyID,
	}
}

// newCert makes an ECDSA key and a certificate for it from tmpl, signed by
// parent, or self-signed when parent is nil.
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// newCSR is what a device sends in its SCEP PKCSReq: an RSA-2048 key and a
// subject with the common name the enrollment profile gave it.
func newCSR(t *testing.T, cn string) (*rsa.PrivateKey, *x509.CertificateRequest) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"Example Corp"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// newSigner configures a Signer the way an administrator would: the root by
// its fingerprint, the provisioner key from ca.json's encryptedKey and its
// password.
func newSigner(t *testing.T, ca *testCA, validity time.Duration) *stepca.Signer {
	t.Helper()
	ctx := t.Context()
	root, err := stepca.FetchRoot(ctx, ca.URL, scep.Fingerprint(ca.Root))
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equal(ca.Root) {
		t.Fatal("FetchRoot returned another certificate than the root")
	}
	key := parseKey(t, ca)
	if key.KeyID != ca.KeyID {
		t.Fatalf("parsed key ID %q, want %q", key.KeyID, ca.KeyID)
	}
	s, err := stepca.New(stepca.Config{
		URL:         ca.URL,
		Root:        root,
		Provisioner: ca.Provisioner,
		Key:         key,
		Validity:    validity,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignerIssuesDeviceCertificate(t *testing.T) {
	ca := newTestCA(t)
	const validity = 30 * 24 * time.Hour
	signer := newSigner(t, ca, validity)
	ctx := t.Context()

	// The SCEP server publishes step-ca's chain in GetCACert.
	chain, err := signer.CACerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !chain[0].Equal(ca.Intermediate) || !chain[1].Equal(ca.Root) {
		t.Fatalf("CACerts returned %d certificates, want the intermediate then the root", len(chain))
	}

	deviceKey, csr := newCSR(t, "device-5f2c")
	before := time.Now().Truncate(time.Second)
	leaf, err := signer.SignCSR(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)
	intermediates := x509.NewCertPool()
	intermediates.AddCert(chain[0])
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("issued certificate does not verify to the root: %v", err)
	}
	if got := verified[0]; len(got) != 3 || !got[1].Equal(ca.Intermediate) {
		t.Errorf("verified chain has %d certificates, want leaf, intermediate, root", len(got))
	}
	if !deviceKey.PublicKey.Equal(leaf.PublicKey) {
		t.Error("issued certificate is not for the CSR's key")
	}
	if leaf.Subject.CommonName != "device-5f2c" {
		t.Errorf("subject CN = %q, want device-5f2c", leaf.Subject.CommonName)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ExtKeyUsage = %v, want clientAuth among them", leaf.ExtKeyUsage)
	}
	if leaf.NotAfter.Before(before.Add(validity)) || leaf.NotAfter.After(after.Add(validity)) {
		t.Errorf("NotAfter = %v, want %v from the request (between %v and %v)",
			leaf.NotAfter, validity, before.Add(validity), after.Add(validity))
	}
	if leaf.NotBefore.After(before) {
		t.Errorf("NotBefore = %v, after the request at %v", leaf.NotBefore, before)
	}

	// Every CSR gets its own token and its own serial number.
	_, csr2 := newCSR(t, "device-5f2c")
	leaf2, err := signer.SignCSR(ctx, csr2)
	if err != nil {
		t.Fatal(err)
	}
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("second certificate has the same serial %x", leaf.SerialNumber)
	}
}

func TestSignerRefusals(t *testing.T) {
	ca := newTestCA(t)
	good := newSigner(t, ca, 24*time.Hour)
	_, csr := newCSR(t, "device-7a01")

	t.Run("wrong provisioner key", func(t *testing.T) {
		// A key that claims the provisioner's key ID but is not its key.
		impostor, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", ca.KeyID, 0)
		if err != nil {
			t.Fatal(err)
		}
		s, err := stepca.New(stepca.Config{URL: ca.URL, Root: ca.Root, Provisioner: ca.Provisioner, Key: impostor})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := s.SignCSR(t.Context(), csr)
		var refusal *stepca.Error
		if !errors.As(err, &refusal) || refusal.Status != http.StatusUnauthorized {
			t.Fatalf("SignCSR = %v, %v; want a 401 *stepca.Error", cert, err)
		}
		if !strings.Contains(err.Error(), `"device-7a01"`) || !strings.Contains(refusal.Message, "authorization") {
			t.Errorf("error %q does not name the CSR and carry step-ca's message", err)
		}
		t.Log(err)
	})

	t.Run("validity beyond the provisioner's maximum", func(t *testing.T) {
		s := newSigner(t, ca, maxValidity+24*time.Hour)
		_, err := s.SignCSR(t.Context(), csr)
		var refusal *stepca.Error
		if !errors.As(err, &refusal) || refusal.Status != http.StatusForbidden || !strings.Contains(refusal.Message, "duration") {
			t.Fatalf("SignCSR = %v; want a 403 *stepca.Error about the duration", err)
		}
		t.Log(err)
	})

	t.Run("token minted for another CSR", func(t *testing.T) {
		_, other := newCSR(t, "device-7a01")
		_, err := stepca.SignWithTokenFor(t.Context(), good, csr, other)
		var refusal *stepca.Error
		if !errors.As(err, &refusal) || refusal.Status != http.StatusForbidden || !strings.Contains(refusal.Message, "fingerprint") {
			t.Fatalf("SignCSR with another CSR's token = %v; want a 403 *stepca.Error about the fingerprint", err)
		}
		t.Log(err)
	})

	t.Run("wrong root fingerprint", func(t *testing.T) {
		other := scep.Fingerprint(ca.Intermediate)
		if _, err := stepca.FetchRoot(t.Context(), ca.URL, other); err == nil {
			t.Fatal("FetchRoot accepted a fingerprint that is not the root's")
		}
	})

	t.Run("TLS from another CA", func(t *testing.T) {
		_, otherRoot := newCert(t, nil, nil, &x509.Certificate{
			Subject: pkix.Name{CommonName: "Other Root"}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign,
		})
		s, err := stepca.New(stepca.Config{URL: ca.URL, Root: otherRoot, Provisioner: ca.Provisioner, Key: parseKey(t, ca)})
		if err != nil {
			t.Fatal(err)
		}
		var unknown x509.UnknownAuthorityError
		if _, err := s.SignCSR(t.Context(), csr); !errors.As(err, &unknown) {
			t.Fatalf("SignCSR over TLS not chaining to the configured root = %v, want x509.UnknownAuthorityError", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		if _, err := stepca.ParseKey([]byte(ca.EncryptedKey), []byte("guess")); err == nil {
			t.Fatal("ParseKey decrypted the provisioner key with a wrong password")
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		start := time.Now()
		if _, err := good.SignCSR(ctx, csr); !errors.Is(err, context.Canceled) {
			t.Fatalf("SignCSR with a cancelled context = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("SignCSR took %v to notice the cancelled context", d)
		}
	})

	t.Run("cancelled while step-ca stalls", func(t *testing.T) {
		stalled := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// net/http notices a closed connection only once the body is read.
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		}))
		defer stalled.Close()
		s, err := stepca.New(stepca.Config{URL: stalled.URL, Root: stalled.Certificate(), Provisioner: ca.Provisioner, Key: parseKey(t, ca)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		if _, err := s.SignCSR(ctx, csr); !errors.Is(err, context.Canceled) {
			t.Fatalf("SignCSR = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("SignCSR returned %v after the request started, want promptly after the cancel at 100ms", d)
		}
	})

	// None of the refusals spent anything that stops a good request.
	if _, err := good.SignCSR(t.Context(), csr); err != nil {
		t.Fatalf("good signer after the refusals: %v", err)
	}
}

// parseKey decrypts the provisioner key from ca.json's encryptedKey.
func parseKey(t *testing.T, ca *testCA) *jose.JSONWebKey {
	t.Helper()
	key, err := stepca.ParseKey([]byte(ca.EncryptedKey), ca.Password)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
