package dep_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/dep/deptest"
	"github.com/custodymdm/custody/internal/peertest"
)

var testTokens = dep.OAuth1Tokens{
	ConsumerKey:       "CK_48dd68d198350f51258e885ce9a5c37ab7f98543c4a697323d75682a6c10a32501cb2e7a8b6b1b1d8c8f0d7c2a",
	ConsumerSecret:    "CS_34c7b2b531a600d99a0e4edcf4a78ded79b86ef318118c2f5bcfee1b011108c32d5302df801adbe29d446eb78f02b13144e323eb9aad51c79f01e50cb45c3a68",
	AccessToken:       "AT_927696831c59ba510cfe4ec1a69e5267c19881257d4bca2906a99d0785b785a6f6fdeb09774954fdd5e2d0ad952e3af52c6d8d2f21c924ba0caf4a031c158b89",
	AccessSecret:      "AS_c31afd7a09691d83548489336e8ff1cb11b82b6bca13f793344496a556b1f4972eaff4dde6deb5ac9cf076fdfa97ec97699c34d515947b9cf9ed31c99dded6ba",
	AccessTokenExpiry: time.Date(2027, 11, 21, 18, 0, 0, 0, time.UTC),
}

func keyPair(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	cert, key, err := dep.NewKeyPair("custody-dep", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestDecryptToken(t *testing.T) {
	cert, key := keyPair(t)
	p7m, err := deptest.EncryptToken(testTokens, cert)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dep.DecryptToken(p7m, cert, key)
	if err != nil || *got != testTokens {
		t.Fatalf("DecryptToken = %+v, %v", got, err)
	}
	// Another key cannot read it.
	other, otherKey := keyPair(t)
	if _, err := dep.DecryptToken(p7m, other, otherKey); !errors.Is(err, dep.ErrTokenDecrypt) {
		t.Errorf("a token for another key: %v, want ErrTokenDecrypt", err)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"not base64":  "this is not a token",
		"wrong MIME":  "Content-Type: text/plain\r\n\r\nhello",
		"not CMS":     "aGVsbG8gd29ybGQ=",
		"truncated":   string(p7m[:len(p7m)/2]),
		"DER garbage": "\x30\x03\x02\x01\x01",
	} {
		if _, err := dep.DecryptToken([]byte(in), cert, key); !errors.Is(err, dep.ErrTokenFormat) && !errors.Is(err, dep.ErrTokenDecrypt) {
			t.Errorf("%s: %v, want a token error", name, err)
		}
	}
}

func TestParseToken(t *testing.T) {
	js, _ := json.Marshal(testTokens)
	for name, in := range map[string]string{
		"bare JSON":    string(js),
		"message":      "-----BEGIN MESSAGE-----\n" + string(js) + "\n-----END MESSAGE-----\n",
		"MIME message": "Content-Type: text/plain;charset=UTF-8\r\n\r\n-----BEGIN MESSAGE-----\r\n" + string(js) + "\r\n-----END MESSAGE-----\r\n",
	} {
		got, err := dep.ParseToken([]byte(in))
		if err != nil || *got != testTokens {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	for name, in := range map[string]string{
		"no END":         "-----BEGIN MESSAGE-----\n" + string(js),
		"missing secret": `{"consumer_key":"CK_1","access_token":"AT_1","access_secret":"AS_1"}`,
		"not JSON":       "consumer_key=CK_1",
	} {
		if _, err := dep.ParseToken([]byte(in)); !errors.Is(err, dep.ErrTokenFormat) {
			t.Errorf("%s: %v, want ErrTokenFormat", name, err)
		}
	}
}

// A token encrypted by OpenSSL's S/MIME, as another implementation of the
// format Apple Business Manager sends, decrypts.
func TestDecryptOpenSSLToken(t *testing.T) {
	openssl := peertest.Need(t, "openssl", "openssl")
	cert, key := keyPair(t)
	dir := t.TempDir()
	certFile := filepath.Join(dir, "dep.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
	js, _ := json.Marshal(testTokens)
	in := "Content-Type: text/plain;charset=UTF-8\r\n\r\n-----BEGIN MESSAGE-----\r\n" + string(js) + "\r\n-----END MESSAGE-----\r\n"
	cmd := exec.Command(openssl, "smime", "-encrypt", "-aes256", "-binary", certFile)
	cmd.Stdin = strings.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl smime -encrypt: %v\n%s", err, stderr.String())
	}
	got, err := dep.DecryptToken(out.Bytes(), cert, key)
	if err != nil || *got != testTokens {
		t.Fatalf("DecryptToken of OpenSSL's S/MIME = %+v, %v\n%s", got, err, out.String())
	}
}

// FuzzDecryptToken feeds arbitrary token files to DecryptToken: a token
// error or the credentials, never a panic.
func FuzzDecryptToken(f *testing.F) {
	cert, key, err := dep.NewKeyPair("fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	p7m, _ := deptest.EncryptToken(testTokens, cert)
	f.Add(p7m)
	f.Add([]byte("Content-Type: application/pkcs7-mime\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx"))
	f.Add([]byte("\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03\xa0\x80"))
	f.Fuzz(func(t *testing.T, in []byte) {
		tok, err := dep.DecryptToken(in, cert, key)
		if err == nil && !tok.Valid() {
			t.Fatalf("accepted a token without credentials: %+v", tok)
		}
		if err != nil && !errors.Is(err, dep.ErrTokenFormat) && !errors.Is(err, dep.ErrTokenDecrypt) {
			t.Fatalf("error that is not a token error: %v", err)
		}
	})
}
