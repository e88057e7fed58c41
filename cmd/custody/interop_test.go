package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/internal/peertest"
	"github.com/custodymdm/custody/scep"
)

// Interop with SCEP clients we did not write, installed from Debian's
// packages by .ci/run.

func mintChallenge(t *testing.T, dir string) string {
	t.Helper()
	out, err := cli(t, "challenge", "--data", dir)
	if err != nil {
		t.Fatalf("custody challenge: %v", err)
	}
	return strings.TrimSpace(out)
}

// issuedBy checks that certPEM verifies with openssl against the data dir's
// CA and that the server recorded it against the challenge.
func issuedBy(t *testing.T, dir string, certPEM []byte) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, fileCACert))
	if err != nil {
		t.Fatal(err)
	}
	if err := peertest.OpenSSLVerify(t, caPEM, certPEM); err != nil {
		t.Fatalf("openssl verify: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "certs", "list", "--data", dir, "--json")
	if err != nil || !strings.Contains(out, scep.Fingerprint(cert)) {
		t.Fatalf("certs list does not show the issued cert %s: %v\n%s", scep.Fingerprint(cert), err, out)
	}
}

func TestInteropScepclient(t *testing.T) {
	peertest.Need(t, "scepclient", "scep")
	peertest.Need(t, "openssl", "openssl")
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir)
	scepURL := url + "/scep"

	tctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	challenge := mintChallenge(t, dir)
	certPEM, out, err := peertest.ScepClient(tctx, t, scepURL, challenge, "scepclient-device")
	if err != nil {
		t.Fatalf("scepclient with a fresh challenge: %v\n%s", err, out)
	}
	issuedBy(t, dir, certPEM)

	// The same challenge again, from a new key: refused.
	if _, out, err := peertest.ScepClient(tctx, t, scepURL, challenge, "second-device"); err == nil || !strings.Contains(out, "badRequest") {
		t.Errorf("scepclient reusing a challenge: err %v, output:\n%s\nwant a badRequest failure", err, out)
	}
	if _, out, err := peertest.ScepClient(tctx, t, scepURL, "NOTACHALLENGE", "third-device"); err == nil || !strings.Contains(out, "badRequest") {
		t.Errorf("scepclient with a wrong challenge: err %v, output:\n%s\nwant a badRequest failure", err, out)
	}
}

func TestInteropCertmonger(t *testing.T) {
	peertest.Need(t, "certmonger", "certmonger")
	peertest.Need(t, "dbus-daemon", "dbus")
	peertest.Need(t, "openssl", "openssl")
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir)
	scepURL := url + "/scep"

	tctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	certPEM, err := peertest.Certmonger(tctx, t, scepURL, mintChallenge(t, dir), "certmonger-device")
	if err != nil {
		t.Fatalf("certmonger with a fresh challenge: %v", err)
	}
	issuedBy(t, dir, certPEM)

	_, err = peertest.Certmonger(tctx, t, scepURL, "NOTACHALLENGE", "refused-device")
	var cmErr *peertest.CertmongerError
	if !errors.As(err, &cmErr) || cmErr.Status != "CA_REJECTED" {
		t.Errorf("certmonger with a wrong challenge: %v, want CA_REJECTED", err)
	}
}
