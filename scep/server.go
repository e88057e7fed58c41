package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/custodymdm/custody/internal/cms"
)

// DefaultMaxMessageBytes caps a PKIOperation message. A PKCSReq with a
// 4096-bit key is under 5 KiB.
const DefaultMaxMessageBytes = 64 << 10

// capabilities are what GetCACaps advertises (RFC 8894 section 3.5.2).
const capabilities = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard\nRenewal"

// A Server answers SCEP requests. It is an http.Handler; mount it at the
// path clients are given (conventionally /scep).
type Server struct {
	Store  Store
	Signer Signer

	// RACert and RAKey decrypt requests and sign replies. With a local CA
	// they are the CA's own certificate and key.
	RACert *x509.Certificate
	RAKey  crypto.Signer
	// CACerts are published by GetCACert after RACert when the RA is not
	// the issuing CA (an external authority's intermediate and root). The
	// chain is also sent with each issued certificate.
	CACerts []*x509.Certificate

	Logger  *slog.Logger // slog.Default() when nil
	Metrics *Metrics     // optional

	// MaxMessageBytes caps PKIOperation messages; DefaultMaxMessageBytes
	// when zero.
	MaxMessageBytes int64
	// MinRSABits is the smallest RSA key accepted in a CSR; 2048 when zero.
	MinRSABits int

	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// ServeHTTP dispatches on the operation query parameter.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.URL.Query().Get("operation")
	switch op {
	case "GetCACaps":
		s.Metrics.request(op, "ok")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, capabilities)
	case "GetCACert":
		s.getCACert(w)
	case "PKIOperation":
		s.pkiOperation(w, r)
	case "":
		s.Metrics.request("none", "bad_request")
		http.Error(w, "scep: missing operation parameter", http.StatusBadRequest)
	default:
		s.Metrics.request("unknown", "bad_request")
		http.Error(w, fmt.Sprintf("scep: unknown operation %q", op), http.StatusBadRequest)
	}
}

func (s *Server) getCACert(w http.ResponseWriter) {
	if len(s.CACerts) == 0 {
		s.Metrics.request("GetCACert", "ok")
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(s.RACert.Raw)
		return
	}
	deg, err := smscep.DegenerateCertificates(append([]*x509.Certificate{s.RACert}, s.CACerts...))
	if err != nil {
		s.Metrics.request("GetCACert", "error")
		s.log().Error("scep: GetCACert", "err", err)
		http.Error(w, "scep: internal error", http.StatusInternalServerError)
		return
	}
	s.Metrics.request("GetCACert", "ok")
	w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
	w.Write(deg)
}

// readMessage returns the DER PKIMessage of a GET (base64 in the message
// parameter) or POST (raw body) request.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.MaxMessageBytes
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	switch r.Method {
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("message larger than %d bytes", limit)
		}
		return body, err
	case http.MethodGet:
		m := r.URL.Query().Get("message")
		if int64(base64.StdEncoding.DecodedLen(len(m))) > limit {
			return nil, fmt.Errorf("message larger than %d bytes", limit)
		}
		// Some clients do not escape '+' in the query, which then reads
		// as a space.
		m = strings.ReplaceAll(m, " ", "+")
		return base64.StdEncoding.DecodeString(m)
	default:
		return nil, fmt.Errorf("method %s not allowed", r.Method)
	}
}

// A refusal is a request the protocol lets us answer with a CertRep FAILURE.
type refusal struct {
	info   smscep.FailInfo
	reason string
}

func (e *refusal) Error() string { return "scep: refused (" + failInfoName(e.info) + "): " + e.reason }

func refuse(info smscep.FailInfo, format string, args ...any) *refusal {
	return &refusal{info: info, reason: fmt.Sprintf(format, args...)}
}

func (s *Server) pkiOperation(w http.ResponseWriter, r *http.Request) {
	const op = "PKIOperation"
	raw, err := s.readMessage(w, r)
	if err == nil && len(raw) == 0 {
		err = errors.New("empty message")
	}
	if err != nil {
		s.Metrics.request(op, "bad_request")
		s.log().Info("scep: unreadable PKIOperation", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "scep: "+err.Error(), http.StatusBadRequest)
		return
	}
	req, err := parseRequest(raw)
	if err != nil {
		// Without a transaction ID and nonce there is nothing a CertRep
		// could answer.
		s.Metrics.request(op, "bad_request")
		s.log().Info("scep: malformed PKIMessage", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "scep: malformed PKIMessage: "+err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	cert, chain, err := s.handle(r.Context(), req)
	ra := identity{cert: s.RACert, key: s.RAKey}
	var out []byte
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		s.Metrics.request(op, "refused_"+failInfoName(ref.info))
		s.log().Info("scep: refused", "transaction_id", req.transactionID, "message_type", string(req.messageType),
			"fail_info", failInfoName(ref.info), "reason", ref.reason, "remote", r.RemoteAddr)
		out, err = req.failure(ra, ref.info, ref.reason)
	case err != nil:
		s.Metrics.request(op, "error")
		s.log().Error("scep: PKIOperation", "transaction_id", req.transactionID, "err", err)
		http.Error(w, "scep: internal error", http.StatusInternalServerError)
		return
	default:
		s.Metrics.issued(time.Since(start))
		s.Metrics.request(op, "issued")
		out, err = req.success(ra, req.signer, req.replyAlg, cert, chain)
	}
	if err != nil {
		s.log().Error("scep: build CertRep", "transaction_id", req.transactionID, "err", err)
		http.Error(w, "scep: internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-pki-message")
	w.Write(out)
}

// A request is a parsed PKIOperation message whose signature may not yet
// have been verified.
type request struct {
	reply
	messageType smscep.MessageType
	p7          *pkcs7.PKCS7
	signer      *x509.Certificate // the certificate that signed the message
	replyAlg    asn1.ObjectIdentifier
}

// parseRequest reads the SCEP attributes of a PKIMessage, enough to address
// a CertRep to its sender. It does not verify the signature.
func parseRequest(raw []byte) (*request, error) {
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		return nil, err
	}
	req := &request{p7: p7}
	if err := p7.UnmarshalSignedAttribute(oidTransactionID, &req.transactionID); err != nil {
		return nil, fmt.Errorf("transactionID: %w", err)
	}
	var mt string
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &mt); err != nil {
		return nil, fmt.Errorf("messageType: %w", err)
	}
	req.messageType = smscep.MessageType(mt)
	if err := p7.UnmarshalSignedAttribute(oidSenderNonce, &req.senderNonce); err != nil {
		return nil, fmt.Errorf("senderNonce: %w", err)
	}
	if len(req.senderNonce) == 0 || len(req.senderNonce) > 64 {
		return nil, errors.New("senderNonce: missing or oversized")
	}
	if len(req.transactionID) == 0 || len(req.transactionID) > 256 {
		return nil, errors.New("transactionID: missing or oversized")
	}
	req.signer = p7.GetOnlySigner()
	if req.signer == nil {
		return nil, errors.New("message must have exactly one signer, whose certificate it carries")
	}
	if _, ok := req.signer.PublicKey.(*rsa.PublicKey); !ok {
		// The CertRep is enveloped for this certificate: it must be RSA.
		return nil, fmt.Errorf("signer certificate has a %T key; SCEP needs RSA", req.signer.PublicKey)
	}
	return req, nil
}

// handle authorises and issues. It returns a *refusal for anything the
// client got wrong.
func (s *Server) handle(ctx context.Context, req *request) (*x509.Certificate, []*x509.Certificate, error) {
	switch req.messageType {
	case smscep.PKCSReq, smscep.RenewalReq, smscep.UpdateReq:
	case smscep.CertPoll:
		return nil, nil, refuse(BadRequest, "no request is pending: this server never answers PENDING")
	default:
		return nil, nil, refuse(BadRequest, "unsupported messageType %q", string(req.messageType))
	}
	if err := req.p7.Verify(); err != nil {
		return nil, nil, refuse(BadMessageCheck, "signature: %v", err)
	}
	env, err := pkcs7.Parse(req.p7.Content)
	if err != nil {
		return nil, nil, refuse(BadMessageCheck, "pkcsPKIEnvelope: %v", err)
	}
	der, err := env.Decrypt(s.RACert, s.RAKey)
	if errors.Is(err, pkcs7.ErrUnsupportedAlgorithm) {
		return nil, nil, refuse(BadAlg, "pkcsPKIEnvelope: %v", err)
	}
	if err != nil {
		return nil, nil, refuse(BadMessageCheck, "pkcsPKIEnvelope not decryptable by this server: %v", err)
	}
	req.replyAlg = cms.OIDAES128CBC
	if alg, err := cms.ContentEncryption(req.p7.Content); err == nil && alg.Equal(cms.OIDAES256CBC) {
		req.replyAlg = cms.OIDAES256CBC
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, refuse(BadRequest, "PKCS#10 request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, refuse(BadMessageCheck, "PKCS#10 signature: %v", err)
	}
	if err := s.checkKey(csr.PublicKey); err != nil {
		return nil, nil, err
	}
	password, err := x509util.ParseChallengePassword(der)
	if err != nil {
		return nil, nil, refuse(BadRequest, "challengePassword: %v", err)
	}
	if req.messageType == smscep.PKCSReq {
		// RFC 8894 section 2.3: the certificate signing a PKCSReq holds the
		// key being certified, which proves possession of it.
		if !samePublicKey(req.signer.PublicKey, csr.PublicKey) {
			return nil, nil, refuse(BadMessageCheck, "PKCSReq signed by a key other than the one in its CSR")
		}
		cert, err := s.enrol(ctx, csr, password)
		return cert, s.CACerts, err
	}
	cert, err := s.renew(ctx, req.signer, csr)
	return cert, s.CACerts, err
}

func (s *Server) checkKey(pub crypto.PublicKey) error {
	min := s.MinRSABits
	if min == 0 {
		min = 2048
	}
	// ECDSA and Ed25519 keys are fine for the certificate itself; only the
	// SCEP envelope needs RSA, and that is the signer's key.
	if k, ok := pub.(*rsa.PublicKey); ok && k.N.BitLen() < min {
		return refuse(BadRequest, "RSA key of %d bits; at least %d required", k.N.BitLen(), min)
	}
	return nil
}

// enrol issues a certificate against a one-time challenge. A client that
// retries a request we answered (same key, challenge already bound to its
// certificate) gets the same certificate again, so a reply lost to a crash
// or a dropped connection costs the device nothing.
func (s *Server) enrol(ctx context.Context, csr *x509.CertificateRequest, password string) (*x509.Certificate, error) {
	if password == "" {
		return nil, refuse(BadRequest, "PKCSReq without a challengePassword")
	}
	ch, hash, err := lookupChallenge(ctx, s.Store, password)
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(BadRequest, "unknown challenge")
	}
	if err != nil {
		return nil, err
	}
	if ch.Used() {
		return s.reissue(ctx, ch, csr)
	}
	if !s.now().Before(ch.ExpiresAt) {
		return nil, refuse(BadRequest, "challenge %s expired at %s", ch.ID, ch.ExpiresAt.Format(time.RFC3339))
	}
	for attempt := 0; ; attempt++ {
		cert, err := s.Signer.SignCSR(ctx, csr)
		if err != nil {
			return nil, fmt.Errorf("scep: signer: %w", err)
		}
		rec := newIssuedCert(cert, s.now())
		rec.ChallengeID, rec.For = ch.ID, ch.For
		err = s.Store.ConsumeChallenge(ctx, hash, s.now(), rec)
		switch {
		case err == nil:
			s.log().Info("scep: issued", "fingerprint", rec.Fingerprint, "subject", rec.Subject,
				"challenge_id", ch.ID, "for", ch.For)
			return cert, nil
		case errors.Is(err, ErrDuplicateSerial) && attempt < 2:
			continue
		case errors.Is(err, ErrChallengeUsed):
			// Another request consumed it while we were signing.
			ch, _, err := lookupChallenge(ctx, s.Store, password)
			if err != nil {
				return nil, err
			}
			return s.reissue(ctx, ch, csr)
		case errors.Is(err, ErrChallengeExpired):
			return nil, refuse(BadRequest, "challenge %s expired", ch.ID)
		case errors.Is(err, ErrNotFound):
			return nil, refuse(BadRequest, "unknown challenge")
		default:
			return nil, err
		}
	}
}

// reissue answers a PKCSReq whose challenge is already used: with the bound
// certificate if the request carries the same public key, else a refusal.
func (s *Server) reissue(ctx context.Context, ch *Challenge, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	rec, err := s.Store.Cert(ctx, ch.CertFingerprint)
	if err != nil {
		return nil, refuse(BadRequest, "challenge %s already used", ch.ID)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("scep: stored certificate %s: %w", rec.Fingerprint, err)
	}
	if !samePublicKey(cert.PublicKey, csr.PublicKey) || rec.Revoked() {
		return nil, refuse(BadRequest, "challenge %s already used", ch.ID)
	}
	s.log().Info("scep: re-sent certificate for a retried request", "fingerprint", rec.Fingerprint, "challenge_id", ch.ID)
	return cert, nil
}

// renew issues a new certificate for a RenewalReq signed by a certificate
// this server issued, that is neither expired nor revoked.
func (s *Server) renew(ctx context.Context, signer *x509.Certificate, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	old, err := s.Store.Cert(ctx, Fingerprint(signer))
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(BadCertID, "RenewalReq signed by a certificate this server did not issue")
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if old.Revoked() {
		return nil, refuse(BadRequest, "RenewalReq signed by certificate %s, revoked at %s", old.Fingerprint, old.RevokedAt.Format(time.RFC3339))
	}
	if now.Before(old.NotBefore) || !now.Before(old.NotAfter) {
		return nil, refuse(BadTime, "RenewalReq signed by certificate %s outside its validity", old.Fingerprint)
	}
	for attempt := 0; ; attempt++ {
		cert, err := s.Signer.SignCSR(ctx, csr)
		if err != nil {
			return nil, fmt.Errorf("scep: signer: %w", err)
		}
		rec := newIssuedCert(cert, now)
		rec.RenewedFrom, rec.For = old.Fingerprint, old.For
		err = s.Store.PutCert(ctx, rec)
		if errors.Is(err, ErrDuplicateSerial) && attempt < 2 {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log().Info("scep: renewed", "fingerprint", rec.Fingerprint, "renewed_from", old.Fingerprint, "for", rec.For)
		return cert, nil
	}
}

func newIssuedCert(cert *x509.Certificate, now time.Time) *IssuedCert {
	return &IssuedCert{
		Fingerprint: Fingerprint(cert),
		Serial:      fmt.Sprintf("%x", cert.SerialNumber),
		Subject:     cert.Subject.String(),
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
		DER:         bytes.Clone(cert.Raw),
		IssuedAt:    now.UTC(),
	}
}
