package scep_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	smscep "github.com/smallstep/scep"

	"github.com/custodymdm/custody/scep"
)

func post(t testing.TB, srv http.Handler, body []byte) (int, []byte) {
	req, _ := http.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(body))
	rec := newRecorder()
	srv.ServeHTTP(rec, req)
	return rec.code, rec.body.Bytes()
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// certRepFailInfo parses a reply as a CertRep signed by the test CA and
// returns its failInfo.
func certRepFailInfo(t *testing.T, body []byte) smscep.FailInfo {
	t.Helper()
	msg, err := smscep.ParsePKIMessage(body, smscep.WithCACerts([]*x509.Certificate{testCA().Cert}))
	if err != nil {
		t.Fatalf("reply is not a CertRep signed by the CA: %v", err)
	}
	if msg.MessageType != smscep.CertRep || msg.PKIStatus != smscep.FAILURE {
		t.Fatalf("reply is %s/%s, want a CertRep FAILURE", string(msg.MessageType), string(msg.PKIStatus))
	}
	return msg.FailInfo
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	ca := testCA()
	_, secret := f.challenge(t, "")
	self, err := scep.SelfSigned(key(0), "device")
	if err != nil {
		t.Fatal(err)
	}
	good, err := scep.RequestMessage(smscep.PKCSReq, self, key(0), ca.Cert, csr(t, key(0), "device", secret).Raw, scep.OIDAES256CBC)
	if err != nil {
		t.Fatal(err)
	}
	// Enveloped for a certificate that is not ours.
	other, _ := scep.SelfSigned(key(1), "not the CA")
	wrongRecipient, _ := scep.RequestMessage(smscep.PKCSReq, self, key(0), other, csr(t, key(0), "device", secret).Raw, scep.OIDAES256CBC)
	// Signed by a key that does not match the certificate it carries.
	wrongSigner, _ := scep.RequestMessage(smscep.PKCSReq, self, key(1), ca.Cert, csr(t, key(0), "device", secret).Raw, scep.OIDAES256CBC)
	getCRL, _ := scep.RequestMessage(smscep.GetCRL, self, key(0), ca.Cert, csr(t, key(0), "device", secret).Raw, scep.OIDAES256CBC)
	certPoll, _ := scep.RequestMessage(smscep.CertPoll, self, key(0), ca.Cert, csr(t, key(0), "device", secret).Raw, scep.OIDAES256CBC)
	notCSR, _ := scep.RequestMessage(smscep.PKCSReq, self, key(0), ca.Cert, []byte("not a CSR"), scep.OIDAES256CBC)

	// A bit flipped inside the signed content breaks the message digest.
	tampered := bytes.Clone(good)
	tampered[len(tampered)/2] ^= 0x01

	for _, tc := range []struct {
		name     string
		body     []byte
		failInfo smscep.FailInfo // "" means an HTTP 400
	}{
		{"empty", nil, ""},
		{"garbage", []byte("this is not DER"), ""},
		{"truncated", good[:len(good)/3], ""},
		{"oversized", make([]byte, scep.DefaultMaxMessageBytes+1), ""},
		{"wrongly signed", wrongSigner, scep.BadMessageCheck},
		{"tampered", tampered, scep.BadMessageCheck},
		{"wrongly encrypted", wrongRecipient, scep.BadMessageCheck},
		{"GetCRL", getCRL, scep.BadRequest},
		{"CertPoll", certPoll, scep.BadRequest},
		{"not a CSR", notCSR, scep.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, f.server, tc.body)
			if tc.failInfo == "" {
				if code != http.StatusBadRequest {
					t.Fatalf("status %d (%s), want 400", code, body)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200 with a CertRep", code, body)
			}
			if got := certRepFailInfo(t, body); got != tc.failInfo {
				t.Errorf("failInfo = %s, want %s", got.String(), tc.failInfo.String())
			}
		})
	}

	for _, tc := range []struct{ name, query string }{
		{"no operation", ""},
		{"unknown operation", "operation=Frobnicate"},
		{"GET bad base64", "operation=PKIOperation&message=%%%"},
		{"GET not base64", "operation=PKIOperation&message=" + url.QueryEscape("!!!!")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(f.http.URL + "/scep?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
		})
	}

	// None of that consumed the challenge: the real request still works,
	// over GET with the message in the query as old clients send it.
	q := "operation=PKIOperation&message=" + strings.ReplaceAll(base64.StdEncoding.EncodeToString(good), "+", " ")
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "/scep?"+strings.ReplaceAll(q, " ", "%20"), nil)
	rec := newRecorder()
	f.server.ServeHTTP(rec, req)
	msg, err := smscep.ParsePKIMessage(rec.body.Bytes(), smscep.WithCACerts([]*x509.Certificate{ca.Cert}))
	if err != nil || msg.PKIStatus != smscep.SUCCESS {
		t.Fatalf("good request after bad ones: status %d, %v, %+v", rec.code, err, msg)
	}
}

// FuzzPKIOperation feeds arbitrary bytes to the PKIOperation path: it must
// never panic and never answer 5xx. Run it with a bounded
// -fuzzminimizetime (as .ci/run does): minimizing each new input for the
// default 60 s leaves almost no time for fuzzing.
func FuzzPKIOperation(f *testing.F) {
	fx := newFixture(f)
	self, _ := scep.SelfSigned(key(0), "device")
	good, _ := scep.RequestMessage(smscep.PKCSReq, self, key(0), testCA().Cert, mustCSR(key(0), "TESTCHALLENGE"), scep.OIDAES256CBC)
	renew, _ := scep.RequestMessage(smscep.RenewalReq, self, key(0), testCA().Cert, mustCSR(key(0), ""), scep.OIDAES256CBC)
	f.Add(good)
	f.Add(renew)
	f.Add(good[:200])
	f.Add([]byte{0x30, 0x80, 0x06, 0x09})
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := post(t, fx.server, body)
		if code >= 500 {
			t.Fatalf("status %d: %s", code, out)
		}
	})
}

func mustCSR(k *rsa.PrivateKey, challenge string) []byte {
	c, err := scep.NewCSR(k, pkix.Name{CommonName: "fuzz"}, challenge)
	if err != nil {
		panic(err)
	}
	return c.Raw
}

// A PKCSReq must be signed by the key it asks to certify: a captured CSR and
// challenge are worth nothing to someone without the private key.
func TestPKCSReqSignedByOtherKey(t *testing.T) {
	f := newFixture(t)
	_, secret := f.challenge(t, "")
	thief, _ := scep.SelfSigned(key(1), "thief")
	msg, err := scep.RequestMessage(smscep.PKCSReq, thief, key(1), testCA().Cert, csr(t, key(0), "victim", secret).Raw, scep.OIDAES256CBC)
	if err != nil {
		t.Fatal(err)
	}
	code, body := post(t, f.server, msg)
	if code != http.StatusOK {
		t.Fatalf("status %d, want a CertRep", code)
	}
	if got := certRepFailInfo(t, body); got != scep.BadMessageCheck {
		t.Errorf("failInfo = %s, want badMessageCheck", got.String())
	}
}

// FuzzParsers covers the parsers of untrusted bytes (PKIMessage, SCEP
// attributes, the envelope's algorithm, the CSR and its challengePassword)
// without the handler around them.
func FuzzParsers(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzParsers, so no fuzz worker spends its
	// start-up signing them.
	f.Add([]byte{0x30, 0x80, 0x06, 0x09})
	f.Fuzz(func(t *testing.T, raw []byte) { scep.ParseUntrusted(raw) })
}
