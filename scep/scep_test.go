package scep_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	smscep "github.com/smallstep/scep"

	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

// Generating RSA keys is slow, and very slow under the fuzzer's
// instrumentation, so the tests use fixed keys from testdata.
var (
	keyPool = sync.OnceValue(func() []*rsa.PrivateKey {
		data, err := os.ReadFile("testdata/keys.pem")
		if err != nil {
			panic(err)
		}
		var keys []*rsa.PrivateKey
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k.(*rsa.PrivateKey))
		}
		return keys
	})
	testCA = sync.OnceValue(func() *scep.CA {
		k := keyPool()[8]
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Custody Test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			panic(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return &scep.CA{Cert: cert, Key: k}
	})
)

func key(i int) *rsa.PrivateKey { return keyPool()[i] }

type fixture struct {
	store  scep.Store
	server *scep.Server
	http   *httptest.Server
	client *scep.Client
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ca := testCA()
	f := &fixture{store: db.SCEP()}
	f.server = &scep.Server{
		Store: f.store, Signer: ca, RACert: ca.Cert, RAKey: ca.Key,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	f.http = httptest.NewServer(f.server)
	t.Cleanup(f.http.Close)
	f.client = &scep.Client{URL: f.http.URL + "/scep"}
	return f
}

func (f *fixture) challenge(t *testing.T, mintedFor string) (*scep.Challenge, string) {
	t.Helper()
	c, secret, err := scep.NewChallenge(context.Background(), f.store, time.Hour, "test", mintedFor)
	if err != nil {
		t.Fatal(err)
	}
	return c, secret
}

func csr(t *testing.T, k *rsa.PrivateKey, cn, challenge string) *x509.CertificateRequest {
	t.Helper()
	c, err := scep.NewCSR(k, pkix.Name{CommonName: cn, Organization: []string{"Custody"}}, challenge)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantFailure(t *testing.T, err error, info smscep.FailInfo) {
	t.Helper()
	var fe *scep.FailureError
	if !errors.As(err, &fe) || fe.FailInfo != info {
		t.Fatalf("error = %v, want a CertRep FAILURE with failInfo %s", err, info.String())
	}
}

// One device's story: it enrols with its challenge, retries after a lost
// reply, renews, and after revocation can renew no more.
func TestEnrolRetryRenewRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ch, secret := f.challenge(t, "record-42")

	cert, err := f.client.Enroll(ctx, key(0), csr(t, key(0), "device-1", secret))
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(testCA().Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued cert does not verify for client auth: %v", err)
	}
	if cert.Subject.CommonName != "device-1" || !slices.Equal(cert.Subject.Organization, []string{"Custody"}) {
		t.Errorf("subject = %v, want the CSR's", cert.Subject)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity = %v, want about a year", d)
	}
	rec, err := f.store.Cert(ctx, scep.Fingerprint(cert))
	if err != nil {
		t.Fatalf("issued cert not stored: %v", err)
	}
	if rec.ChallengeID != ch.ID || rec.For != "record-42" || rec.Serial == "" {
		t.Errorf("stored record = %+v, want challenge %s for record-42", rec, ch.ID)
	}
	stored, _ := f.store.Challenge(ctx, ch.Hash)
	if stored.CertFingerprint != rec.Fingerprint {
		t.Errorf("challenge bound to %q, want %q", stored.CertFingerprint, rec.Fingerprint)
	}

	// The reply was lost; the device sends the same request again.
	again, err := f.client.Enroll(ctx, key(0), csr(t, key(0), "device-1", secret))
	if err != nil {
		t.Fatalf("retried Enroll: %v", err)
	}
	if !again.Equal(cert) {
		t.Error("retry with the same key issued a second certificate")
	}
	// Another key cannot reuse the challenge.
	_, err = f.client.Enroll(ctx, key(1), csr(t, key(1), "intruder", secret))
	wantFailure(t, err, scep.BadRequest)

	renewed, err := f.client.Renew(ctx, cert, key(0), csr(t, key(2), "device-1", ""))
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	nrec, err := f.store.Cert(ctx, scep.Fingerprint(renewed))
	if err != nil || nrec.RenewedFrom != rec.Fingerprint || nrec.For != "record-42" || nrec.ChallengeID != "" {
		t.Errorf("renewed record = %+v (%v), want renewed from %s for record-42", nrec, err, rec.Fingerprint)
	}
	if renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("renewal reused the serial number")
	}

	if err := f.store.RevokeCert(ctx, nrec.Fingerprint, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.Renew(ctx, renewed, key(2), csr(t, key(3), "device-1", ""))
	wantFailure(t, err, scep.BadRequest)
}

func TestEnrolRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	_, err := f.client.Enroll(ctx, key(0), csr(t, key(0), "d", "WRONGCHALLENGE"))
	wantFailure(t, err, scep.BadRequest)

	_, err = f.client.Enroll(ctx, key(0), csr(t, key(0), "d", ""))
	wantFailure(t, err, scep.BadRequest)

	_, secret := f.challenge(t, "")
	f.server.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	_, err = f.client.Enroll(ctx, key(0), csr(t, key(0), "d", secret))
	wantFailure(t, err, scep.BadRequest)
	f.server.Now = nil

	// A renewal signed by a certificate we never issued.
	stranger, err := scep.SelfSigned(key(5), "stranger")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.client.Renew(ctx, stranger, key(5), csr(t, key(1), "d", ""))
	wantFailure(t, err, scep.BadCertID)

	// A key too small to trust.
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, secret = f.challenge(t, "")
	_, err = f.client.Enroll(ctx, small, csr(t, small, "d", secret))
	wantFailure(t, err, scep.BadRequest)

	n := 0
	f.store.Certs(ctx, func(*scep.IssuedCert) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d certificates stored after refusals only", n)
	}
}

// Two devices racing with one challenge: exactly one gets a certificate.
func TestConcurrentSameChallenge(t *testing.T) {
	f := newFixture(t)
	_, secret := f.challenge(t, "")
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := &scep.Client{URL: f.client.URL}
			_, errs[i] = c.Enroll(context.Background(), key(i), csr(t, key(i), "racer", secret))
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			wantFailure(t, err, scep.BadRequest)
		}
	}
	stored := 0
	f.store.Certs(context.Background(), func(*scep.IssuedCert) bool { stored++; return true })
	if ok != 1 || stored != 1 {
		t.Fatalf("%d enrolments succeeded and %d certs stored, want exactly 1 and 1", ok, stored)
	}
}

func TestGetCACapsAndCert(t *testing.T) {
	f := newFixture(t)
	caps, err := f.client.GetCACaps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POSTPKIOperation", "SHA-256", "AES", "Renewal", "SCEPStandard"} {
		if !slices.Contains(caps, want) {
			t.Errorf("GetCACaps lacks %s: %v", want, caps)
		}
	}
	certs, err := f.client.GetCACert(context.Background())
	if err != nil || len(certs) != 1 || !certs[0].Equal(testCA().Cert) {
		t.Fatalf("GetCACert = %v, %v; want the CA", certs, err)
	}
	resp, err := http.Get(f.http.URL + "/scep?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-ca-cert" {
		t.Errorf("GetCACert Content-Type = %q", ct)
	}
}

// A separate RA (as with an external authority) is published first and
// receives the envelopes; the chain is published after it.
func TestSeparateRA(t *testing.T) {
	f := newFixture(t)
	ca := testCA()
	raKey := key(7)
	raCert, err := ca.IssueIdentity(&raKey.PublicKey, pkix.Name{CommonName: "Custody RA"}, time.Hour,
		x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)
	if err != nil {
		t.Fatal(err)
	}
	f.server.RACert, f.server.RAKey, f.server.CACerts = raCert, raKey, []*x509.Certificate{ca.Cert}
	certs, err := f.client.GetCACert(context.Background())
	if err != nil || len(certs) != 2 || !certs[0].Equal(raCert) || !certs[1].Equal(ca.Cert) {
		t.Fatalf("GetCACert = %d certs, %v; want RA then CA", len(certs), err)
	}
	_, secret := f.challenge(t, "")
	cert, err := f.client.Enroll(context.Background(), key(0), csr(t, key(0), "via-ra", secret))
	if err != nil {
		t.Fatalf("Enroll through RA: %v", err)
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("cert not issued by the CA: %v", err)
	}
}
