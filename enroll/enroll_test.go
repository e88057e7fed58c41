package enroll_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

func setup(t *testing.T) (*bolt.DB, *httptest.Server, *scep.CA) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ca, err := scep.NewCA("CA", 2048, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := scep.NewCA("unused", 2048, time.Hour) // a key to sign with
	cert, err := ca.IssueIdentity(signer.Key.Public(), pkix.Name{CommonName: "Profile Signing"}, time.Hour, x509.KeyUsageDigitalSignature)
	if err != nil {
		t.Fatal(err)
	}
	ps := &enroll.ProfileServer{
		Tokens: db.Enroll(), Challenges: db.SCEP(),
		Profile: enroll.ProfileConfig{Identifier: "com.example.enroll", DisplayName: "Example", SCEPURL: "https://mdm.example/scep",
			MDMServerURL: "https://mdm.example/mdm", Topic: "com.apple.mgmt.External.x"},
		SignerCert: cert, SignerKey: signer.Key, Chain: []*x509.Certificate{ca.Cert},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /enroll/{token}", ps)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return db, srv, ca
}

// The profile carries a challenge minted for the token, and the MDM payload
// names the SCEP payload as its identity.
func TestProfileContent(t *testing.T) {
	db, srv, ca := setup(t)
	tok, secret, err := enroll.NewToken(context.Background(), db.Enroll(), time.Hour, "", "record-1")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/enroll/" + secret)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p7, err := pkcs7.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if err := p7.VerifyWithChain(roots); err != nil {
		t.Fatalf("profile signature: %v", err)
	}
	var prof struct {
		PayloadType    string
		PayloadContent []map[string]any
	}
	if err := plist.Unmarshal(p7.Content, &prof); err != nil {
		t.Fatal(err)
	}
	if prof.PayloadType != "Configuration" || len(prof.PayloadContent) != 2 {
		t.Fatalf("profile = %+v", prof)
	}
	scepP, mdmP := prof.PayloadContent[0], prof.PayloadContent[1]
	content := scepP["PayloadContent"].(map[string]any)
	if mdmP["IdentityCertificateUUID"] != scepP["PayloadUUID"] || mdmP["SignMessage"] != true || mdmP["ServerURL"] != "https://mdm.example/mdm" {
		t.Errorf("MDM payload = %v", mdmP)
	}
	secretChallenge, _ := content["Challenge"].(string)
	ch, err := db.SCEP().Challenge(context.Background(), hash(secretChallenge))
	if err != nil || ch.For != tok.ID {
		t.Errorf("challenge in the profile: %+v, %v; want one minted for token %s", ch, err, tok.ID)
	}
	used, _ := db.Enroll().Token(context.Background(), tok.ID)
	if used.UsedAt.IsZero() || used.ChallengeID != ch.ID {
		t.Errorf("token after use = %+v", used)
	}
}

// Two devices racing with one link: one profile.
func TestProfileOnce(t *testing.T) {
	db, srv, _ := setup(t)
	_, secret, _ := enroll.NewToken(context.Background(), db.Enroll(), time.Hour, "", "")
	codes := make([]int, 8)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			resp, err := http.Get(srv.URL + "/enroll/" + secret)
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusGone:
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d profiles served for one link, want 1 (%v)", ok, codes)
	}
}

func hash(s string) []byte {
	// scep stores challenges by SHA-256, as enroll does tokens.
	return enroll.HashToken(s)
}
