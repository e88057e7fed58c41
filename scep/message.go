package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"

	"github.com/custodymdm/custody/internal/cms"
)

// SCEP signed attributes (RFC 8894 section 3.2.1). github.com/smallstep/scep
// keeps its copies unexported.
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}
)

// FailInfo values, re-exported so callers need not import the message layer.
const (
	BadAlg          = smscep.BadAlg
	BadMessageCheck = smscep.BadMessageCheck
	BadRequest      = smscep.BadRequest
	BadTime         = smscep.BadTime
	BadCertID       = smscep.BadCertID
)

// failInfoName gives RFC 8894's name for a failInfo, without panicking on
// values from a peer (smallstep/scep's String does).
func failInfoName(fi smscep.FailInfo) string {
	switch fi {
	case BadAlg:
		return "badAlg"
	case BadMessageCheck:
		return "badMessageCheck"
	case BadRequest:
		return "badRequest"
	case BadTime:
		return "badTime"
	case BadCertID:
		return "badCertId"
	}
	return "failInfo " + string(fi)
}

// An identity is a certificate and its private key: the RA that signs
// replies, or a client that signs requests.
type identity struct {
	cert *x509.Certificate
	key  crypto.PrivateKey
}

func newNonce() ([]byte, error) {
	n := make([]byte, 16)
	_, err := rand.Read(n)
	return n, err
}

// signPKIMessage wraps content (an EnvelopedData, or nothing) in SignedData
// signed with SHA-256 by id, with the given SCEP attributes.
func signPKIMessage(id identity, content []byte, certs []*x509.Certificate, attrs []pkcs7.Attribute) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	for _, c := range certs {
		sd.AddCertificate(c)
	}
	if err := sd.AddSigner(id.cert, id.key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("scep: sign message: %w", err)
	}
	return sd.Finish()
}

// reply is what a CertRep answers: the request's transaction and nonce.
type reply struct {
	transactionID smscep.TransactionID
	senderNonce   []byte // the request's, echoed as recipientNonce
}

// success builds a CertRep carrying cert (and chain), enveloped for the
// requester's signing certificate with the given AES variant.
func (r reply) success(ra identity, requester *x509.Certificate, alg asn1.ObjectIdentifier, cert *x509.Certificate, chain []*x509.Certificate) ([]byte, error) {
	deg, err := smscep.DegenerateCertificates(append([]*x509.Certificate{cert}, chain...))
	if err != nil {
		return nil, err
	}
	env, err := cms.Envelope(deg, []*x509.Certificate{requester}, alg)
	if err != nil {
		return nil, err
	}
	return r.certRep(ra, env, smscep.SUCCESS, "", "")
}

// failure builds a CertRep with pkiStatus FAILURE. text goes into the
// failInfoText attribute of RFC 8894, for clients that show it.
func (r reply) failure(ra identity, info smscep.FailInfo, text string) ([]byte, error) {
	return r.certRep(ra, nil, smscep.FAILURE, info, text)
}

func (r reply) certRep(ra identity, content []byte, status smscep.PKIStatus, info smscep.FailInfo, text string) ([]byte, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: r.transactionID},
		{Type: oidMessageType, Value: smscep.CertRep},
		{Type: oidPKIStatus, Value: status},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: r.senderNonce},
	}
	if status == smscep.FAILURE {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: info})
		if text != "" {
			attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfoText, Value: text})
		}
	}
	return signPKIMessage(ra, content, []*x509.Certificate{ra.cert}, attrs)
}
