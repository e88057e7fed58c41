package scep

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/custodymdm/custody/internal/cms"
)

// Hooks for the external tests, which craft messages a well-behaved client
// would never send.

var OIDAES256CBC = cms.OIDAES256CBC

// RequestMessage builds a PKIOperation request of any type, signed by
// signerCert/signerKey and enveloped for recipient.
func RequestMessage(mt smscep.MessageType, signerCert *x509.Certificate, signerKey crypto.PrivateKey, recipient *x509.Certificate, csrDER []byte, alg asn1.ObjectIdentifier) ([]byte, error) {
	env, err := cms.Envelope(csrDER, []*x509.Certificate{recipient}, alg)
	if err != nil {
		return nil, err
	}
	return signPKIMessage(identity{cert: signerCert, key: signerKey}, env, []*x509.Certificate{signerCert}, []pkcs7.Attribute{
		{Type: oidTransactionID, Value: smscep.TransactionID("test-transaction")},
		{Type: oidMessageType, Value: mt},
		{Type: oidSenderNonce, Value: []byte("0123456789abcdef")},
	})
}

func SelfSigned(key crypto.Signer, cn string) (*x509.Certificate, error) {
	return selfSigned(key, pkixName(cn))
}

func pkixName(cn string) (n pkix.Name) { n.CommonName = cn; return }

// ParseUntrusted runs every parser that reads a peer's bytes before any
// private-key operation, for FuzzParsers.
func ParseUntrusted(raw []byte) {
	if req, err := parseRequest(raw); err == nil {
		req.p7.Verify()
		cms.ContentEncryption(req.p7.Content)
	}
	cms.ContentEncryption(raw)
	x509.ParseCertificateRequest(raw)
	x509util.ParseChallengePassword(raw)
}
