package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/custodymdm/custody/internal/cms"
)

// A Client speaks SCEP to one server. It fetches GetCACaps and GetCACert
// once and reuses them. Its zero value is not usable: set URL.
type Client struct {
	URL        string       // the SCEP endpoint, e.g. https://mdm.example.com/scep
	HTTPClient *http.Client // http.DefaultClient when nil

	mu      sync.Mutex
	caps    []string
	caCerts []*x509.Certificate
}

// A FailureError is a CertRep with pkiStatus FAILURE.
type FailureError struct {
	FailInfo smscep.FailInfo
	Text     string // the server's failInfoText, if it sent one
}

func (e *FailureError) Error() string {
	s := "scep: server refused the request: " + failInfoName(e.FailInfo)
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// NewCSR creates a PKCS#10 request for key with the given subject and, if
// challenge is not empty, a challengePassword attribute.
func NewCSR(key crypto.Signer, subject pkix.Name, challenge string) (*x509.CertificateRequest, error) {
	der, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: subject},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}

func (c *Client) do(ctx context.Context, req *http.Request) ([]byte, error) {
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scep: %s: HTTP %d: %s", req.URL.Query().Get("operation"), resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

func (c *Client) get(ctx context.Context, op string, extra url.Values) ([]byte, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("operation", op)
	for k, v := range extra {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, req)
}

// GetCACaps returns the capabilities the server advertises.
func (c *Client) GetCACaps(ctx context.Context) ([]string, error) {
	body, err := c.get(ctx, "GetCACaps", nil)
	if err != nil {
		return nil, err
	}
	var caps []string
	for _, line := range strings.Split(string(body), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			caps = append(caps, line)
		}
	}
	return caps, nil
}

// GetCACert returns the server's RA/CA certificates, the recipient first
// when there is a separate RA.
func (c *Client) GetCACert(ctx context.Context) ([]*x509.Certificate, error) {
	body, err := c.get(ctx, "GetCACert", nil)
	if err != nil {
		return nil, err
	}
	if cert, err := x509.ParseCertificate(body); err == nil {
		return []*x509.Certificate{cert}, nil
	}
	certs, err := smscep.CACerts(body)
	if err != nil {
		return nil, fmt.Errorf("scep: GetCACert: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("scep: GetCACert returned no certificates")
	}
	return certs, nil
}

func (c *Client) discover(ctx context.Context) ([]string, []*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.caCerts != nil {
		return c.caps, c.caCerts, nil
	}
	caps, err := c.GetCACaps(ctx)
	if err != nil {
		return nil, nil, err
	}
	certs, err := c.GetCACert(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.caps, c.caCerts = caps, certs
	return caps, certs, nil
}

// Enroll sends a PKCSReq for csr (which carries the challenge) and returns
// the issued certificate. key is the CSR's private key; it must be RSA,
// because the reply is enveloped for it.
func (c *Client) Enroll(ctx context.Context, key crypto.Signer, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	req, err := c.NewPKCSReq(ctx, key, csr)
	if err != nil {
		return nil, err
	}
	return c.Send(ctx, req)
}

// Renew sends a RenewalReq for csr, signed by the current identity (cert and
// certKey), and returns the new certificate.
func (c *Client) Renew(ctx context.Context, cert *x509.Certificate, certKey crypto.Signer, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	req, err := c.NewRenewalReq(ctx, cert, certKey, csr)
	if err != nil {
		return nil, err
	}
	return c.Send(ctx, req)
}

// A Request is a PKIOperation message built for one server. Sending the same
// Request again is how SCEP recovers from a lost reply; building requests
// ahead of time lets a load test measure the server alone.
type Request struct {
	Message []byte // the DER PKIMessage

	transactionID smscep.TransactionID
	nonce         []byte
	signer        identity
	csr           *x509.CertificateRequest
	caCerts       []*x509.Certificate
	post          bool
}

// NewPKCSReq builds a PKCSReq for csr, signed by a throwaway certificate for
// key (which must be RSA: the reply is enveloped for it).
func (c *Client) NewPKCSReq(ctx context.Context, key crypto.Signer, csr *x509.CertificateRequest) (*Request, error) {
	self, err := selfSigned(key, csr.Subject)
	if err != nil {
		return nil, err
	}
	return c.newRequest(ctx, smscep.PKCSReq, identity{cert: self, key: key}, csr)
}

// NewRenewalReq builds a RenewalReq for csr, signed by the current identity.
func (c *Client) NewRenewalReq(ctx context.Context, cert *x509.Certificate, certKey crypto.Signer, csr *x509.CertificateRequest) (*Request, error) {
	return c.newRequest(ctx, smscep.RenewalReq, identity{cert: cert, key: certKey}, csr)
}

func (c *Client) newRequest(ctx context.Context, mt smscep.MessageType, signer identity, csr *x509.CertificateRequest) (*Request, error) {
	caps, caCerts, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(caps, "AES") {
		return nil, errors.New("scep: server does not advertise AES; refusing to use DES")
	}
	env, err := cms.Envelope(csr.Raw, []*x509.Certificate{recipient(caCerts)}, cms.OIDAES256CBC)
	if err != nil {
		return nil, err
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	txID := smscep.TransactionID(fmt.Sprintf("%x", sum))
	msg, err := signPKIMessage(signer, env, []*x509.Certificate{signer.cert}, []pkcs7.Attribute{
		{Type: oidTransactionID, Value: txID},
		{Type: oidMessageType, Value: mt},
		{Type: oidSenderNonce, Value: nonce},
	})
	if err != nil {
		return nil, err
	}
	return &Request{
		Message: msg, transactionID: txID, nonce: nonce, signer: signer, csr: csr, caCerts: caCerts,
		post: slices.Contains(caps, "POSTPKIOperation") || slices.Contains(caps, "SCEPStandard"),
	}, nil
}

// Send sends req and returns the issued certificate, after checking that
// the CertRep is signed by the server's RA or CA, answers this request, and
// certifies the requested key. A refusal is a *FailureError.
func (c *Client) Send(ctx context.Context, req *Request) (*x509.Certificate, error) {
	var hreq *http.Request
	var err error
	if req.post {
		hreq, err = http.NewRequest(http.MethodPost, c.URL+sep(c.URL)+"operation=PKIOperation", bytes.NewReader(req.Message))
		if err == nil {
			hreq.Header.Set("Content-Type", "application/x-pki-message")
		}
	} else {
		hreq, err = http.NewRequest(http.MethodGet, c.URL+sep(c.URL)+url.Values{
			"operation": {"PKIOperation"},
			"message":   {base64.StdEncoding.EncodeToString(req.Message)},
		}.Encode(), nil)
	}
	if err != nil {
		return nil, err
	}
	body, err := c.do(ctx, hreq)
	if err != nil {
		return nil, err
	}
	rep, err := smscep.ParsePKIMessage(body, smscep.WithCACerts(req.caCerts))
	if err != nil {
		return nil, fmt.Errorf("scep: CertRep not signed by the server's RA/CA: %w", err)
	}
	if rep.MessageType != smscep.CertRep || rep.CertRepMessage == nil {
		return nil, errors.New("scep: reply is not a CertRep")
	}
	if rep.TransactionID != req.transactionID || !bytes.Equal(rep.RecipientNonce, req.nonce) {
		return nil, errors.New("scep: CertRep does not answer this request (transactionID or recipientNonce differ)")
	}
	switch rep.PKIStatus {
	case smscep.SUCCESS:
	case smscep.FAILURE:
		return nil, &FailureError{FailInfo: rep.FailInfo, Text: failInfoText(body)}
	case smscep.PENDING:
		return nil, errors.New("scep: server answered PENDING; manual approval is not supported by this client")
	}
	if err := rep.DecryptPKIEnvelope(req.signer.cert, req.signer.key); err != nil {
		return nil, fmt.Errorf("scep: CertRep envelope: %w", err)
	}
	cert := rep.Certificate
	if !samePublicKey(cert.PublicKey, req.csr.PublicKey) {
		return nil, errors.New("scep: issued certificate is not for the requested key")
	}
	return cert, nil
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// recipient picks the certificate to envelope requests for: a separate RA
// (a certificate that is not a CA) when the server has one, else the CA.
func recipient(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if !c.IsCA && c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
			return c
		}
	}
	return certs[0]
}

func failInfoText(raw []byte) string {
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		return ""
	}
	var text string
	if p7.UnmarshalSignedAttribute(oidFailInfoText, &text) != nil {
		return ""
	}
	return text
}

// selfSigned makes the throwaway certificate that signs a PKCSReq (RFC 8894
// section 2.3).
func selfSigned(key crypto.Signer, subject pkix.Name) (*x509.Certificate, error) {
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("scep: key is %T; the reply is enveloped for it, so it must be RSA", key.Public())
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
