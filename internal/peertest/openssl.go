package peertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// OpenSSLVerify runs `openssl verify -CAfile ca.pem cert.pem` on temporary
// copies of caPEM and certPEM and returns an error that includes openssl's
// output if the certificate does not verify.
func OpenSSLVerify(t testing.TB, caPEM, certPEM []byte) error {
	t.Helper()
	bin := Need(t, "openssl", "openssl")
	dir := t.TempDir()
	ca, cert := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := run(ctx, cleanEnv(), dir, bin, "verify", "-CAfile", ca, cert)
	if err != nil {
		return fmt.Errorf("openssl verify: %w: %s", err, out)
	}
	return nil
}
