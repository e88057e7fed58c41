package peertest

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ScepClient enrols once with Debian's scepclient (micromdm scep 2.1.0)
// against serverURL, sending challenge (none if empty) and a new 2048-bit RSA
// key for commonName, in a fresh temporary directory. It returns the issued
// certificate in PEM and the program's output; a refused enrolment is an error
// that includes that output.
//
// scepclient fetches GetCACert then GetCACaps, sends a PKCSReq (by POST when
// POSTPKIOperation is advertised) signed with SHA-1 by a self-signed
// "SCEP SIGNER" certificate and enveloped with DES-CBC whatever the CA
// advertises,
// and exits 1 printing "PKCSReq request failed, failInfo: ..." on a FAILURE
// reply. On PENDING it retries every 30 seconds forever, so bound ctx.
func ScepClient(ctx context.Context, t testing.TB, serverURL, challenge, commonName string) (certPEM []byte, output string, err error) {
	t.Helper()
	return RunScepClient(ctx, t, Need(t, "scepclient", "scep"), serverURL, challenge, commonName)
}

// RunScepClient is ScepClient with the scepclient binary at bin: Debian's,
// or a pinned release built by [GoProgram.Need] such as ScepClient230.
func RunScepClient(ctx context.Context, t testing.TB, bin, serverURL, challenge, commonName string) (certPEM []byte, output string, err error) {
	t.Helper()
	// scepclient keeps its state beside the key: csr.pem, self.pem and the
	// certificate. An existing certificate would turn the request into a
	// RenewalReq, so every enrolment gets a new directory.
	dir := t.TempDir()
	certPath := filepath.Join(dir, "cert.pem")
	args := []string{
		"-server-url", serverURL,
		"-private-key", filepath.Join(dir, "key.pem"),
		"-certificate", certPath,
		"-cn", commonName,
	}
	if challenge != "" {
		args = append(args, "-challenge", challenge)
	}
	output, err = run(ctx, cleanEnv(), dir, bin, args...)
	if err != nil {
		return nil, output, fmt.Errorf("scepclient: %w: %s", err, output)
	}
	certPEM, err = os.ReadFile(certPath)
	if err != nil {
		return nil, output, fmt.Errorf("scepclient exited 0 but wrote no certificate: %w: %s", err, output)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, output, errors.New("scepclient wrote no PEM certificate: " + output)
	}
	return certPEM, output, nil
}
