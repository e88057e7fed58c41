package mdm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/custodymdm/custody/scep"
)

// FuzzCMSAgreesWithPKCS7: whatever the lean DER verifier accepts, the
// general PKCS#7 library accepts too, with the same signer. (The lean one
// may refuse more: it requires the contentType attribute.)
func FuzzCMSAgreesWithPKCS7(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		der, err := base64.StdEncoding.DecodeString(header)
		if err != nil {
			return
		}
		cert, err := verifyDetachedDER(der, body, nil)
		if err != nil {
			return
		}
		p7, err := pkcs7.Parse(der)
		if err != nil {
			t.Fatalf("lean verifier accepted what pkcs7 cannot parse: %v", err)
		}
		p7.Content = body
		if err := p7.Verify(); err != nil {
			t.Fatalf("lean verifier accepted a signature pkcs7 rejects: %v", err)
		}
		if s := p7.GetOnlySigner(); s == nil || !s.Equal(cert) {
			t.Fatal("lean verifier and pkcs7 disagree on the signer")
		}
	})
}

// Real Mdm-Signatures (DER, as devices and Sign make them) take the lean
// path, with its certificate cache, and agree with pkcs7.
func TestLeanCMSPath(t *testing.T) {
	ca, err := scep.NewCA("CA", 2048, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(key, pkix.Name{CommonName: "d"}, "")
	cert, _ := ca.SignCSR(context.Background(), csr)
	body := []byte("<plist><dict><key>Status</key><string>Idle</string></dict></plist>")
	sig, err := Sign(body, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(sig)
	var cache certCache
	for range 2 {
		got, err := verifyDetachedDER(der, body, &cache)
		if err != nil || !got.Equal(cert) {
			t.Fatalf("lean verifier: %v, %v", got, err)
		}
	}
	if cache.n.Load() != 1 {
		t.Errorf("certificate parsed %d times, want once", cache.n.Load())
	}
	if _, err := verifyDetachedDER(der, append(body, ' '), &cache); err == nil || errors.Is(err, errNotDER) {
		t.Errorf("changed body: %v, want a verification failure", err)
	}
}
