package stepca

import (
	"context"
	"crypto/x509"
	"time"
)

// SignWithTokenFor asks step-ca to sign csr with a token minted for other,
// as someone holding an intercepted token would.
func SignWithTokenFor(ctx context.Context, s *Signer, csr, other *x509.CertificateRequest) (*x509.Certificate, error) {
	subject, ott, err := s.token(other, time.Now())
	if err != nil {
		return nil, err
	}
	return s.sign(ctx, csr, subject, ott)
}
