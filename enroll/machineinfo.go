package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// MachineInfo is what a device in Setup Assistant sends the ADE profile's
// URL: its identity, as a plist CMS-signed by the device's Apple-issued
// identity.
type MachineInfo struct {
	UDID     string `plist:"UDID"`
	Serial   string `plist:"SERIAL"`
	Product  string `plist:"PRODUCT"`
	Version  string `plist:"VERSION"`
	IMEI     string `plist:"IMEI,omitempty"`
	MEID     string `plist:"MEID,omitempty"`
	Language string `plist:"LANGUAGE,omitempty"`
	// OSVersion is sent by newer OS versions.
	OSVersion string `plist:"OS_VERSION,omitempty"`
}

// MaxMachineInfoBytes caps a MachineInfo request body.
const MaxMachineInfoBytes = 64 << 10

// ErrMachineInfo is returned for a MachineInfo that cannot be read or
// whose signature does not verify.
var ErrMachineInfo = errors.New("enroll: bad MachineInfo")

// ParseMachineInfo reads a MachineInfo: a CMS SignedData (BER or DER)
// whose content is the plist. The signer's signature must verify. With
// roots, the signer's certificate must chain through the certificates in
// the message to one of them (Apple Inc. Root in production).
//
// Devices sign with SHA-1 and RSA, under Apple's iPhone Device CA, which
// expired in 2014: following Apple's guidance, validity dates are not
// checked and SHA-1 is accepted here (Go's x509 refuses both), since
// MachineInfo identifies a device and is no attestation.
func ParseMachineInfo(body []byte, roots []*x509.Certificate) (mi *MachineInfo, err error) {
	defer func() {
		if r := recover(); r != nil { // the CMS library panics on some malformed input
			mi, err = nil, fmt.Errorf("%w: malformed CMS", ErrMachineInfo)
		}
	}()
	p7, err := pkcs7.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not CMS SignedData: %v", ErrMachineInfo, err)
	}
	if len(p7.Signers) != 1 || len(p7.Content) == 0 {
		return nil, fmt.Errorf("%w: want one signer and the content inside", ErrMachineInfo)
	}
	signer, err := verifySigner(p7)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMachineInfo, err)
	}
	if roots != nil {
		if err := chainsTo(signer, p7.Certificates, roots); err != nil {
			return nil, fmt.Errorf("%w: certificate: %v", ErrMachineInfo, err)
		}
	}
	var m MachineInfo
	if err := plist.Unmarshal(p7.Content, &m); err != nil {
		return nil, fmt.Errorf("%w: content is not a plist dictionary: %v", ErrMachineInfo, err)
	}
	if m.Serial == "" || m.UDID == "" {
		return nil, fmt.Errorf("%w: no SERIAL or UDID", ErrMachineInfo)
	}
	return &m, nil
}

var (
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
)

// digestOf maps a digest algorithm to its hash.
func digestOf(alg asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case alg.Equal(pkcs7.OIDDigestAlgorithmSHA1):
		return crypto.SHA1, nil
	case alg.Equal(pkcs7.OIDDigestAlgorithmSHA256):
		return crypto.SHA256, nil
	case alg.Equal(pkcs7.OIDDigestAlgorithmSHA384):
		return crypto.SHA384, nil
	case alg.Equal(pkcs7.OIDDigestAlgorithmSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("unsupported digest algorithm %v", alg)
}

// verifySigner checks the one signer's signature over the content (or
// over its signed attributes, whose message digest must be the
// content's) and returns its certificate.
func verifySigner(p7 *pkcs7.PKCS7) (*x509.Certificate, error) {
	si := p7.Signers[0]
	var cert *x509.Certificate
	for _, c := range p7.Certificates {
		if c.SerialNumber.Cmp(si.IssuerAndSerialNumber.SerialNumber) == 0 && bytes.Equal(c.RawIssuer, si.IssuerAndSerialNumber.IssuerName.FullBytes) {
			cert = c
		}
	}
	if cert == nil {
		return nil, errors.New("no certificate for the signer")
	}
	h, err := digestOf(si.DigestAlgorithm.Algorithm)
	if err != nil {
		return nil, err
	}
	sum := func(b []byte) []byte { d := h.New(); d.Write(b); return d.Sum(nil) }
	signed := p7.Content
	if len(si.AuthenticatedAttributes) > 0 {
		type attr struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue `asn1:"set"`
		}
		attrs := make([]attr, len(si.AuthenticatedAttributes))
		var digest []byte
		var contentType asn1.ObjectIdentifier
		for i, a := range si.AuthenticatedAttributes {
			attrs[i] = attr{a.Type, a.Value}
			switch {
			case a.Type.Equal(oidMessageDigest):
				if _, err := asn1.Unmarshal(a.Value.Bytes, &digest); err != nil {
					return nil, fmt.Errorf("messageDigest: %v", err)
				}
			case a.Type.Equal(oidContentType):
				if _, err := asn1.Unmarshal(a.Value.Bytes, &contentType); err != nil {
					return nil, fmt.Errorf("contentType: %v", err)
				}
			}
		}
		if !bytes.Equal(digest, sum(p7.Content)) {
			return nil, errors.New("the content does not match its messageDigest")
		}
		if contentType != nil && !contentType.Equal(oidData) {
			return nil, errors.New("signed content type is not data")
		}
		der, err := asn1.Marshal(struct {
			A []attr `asn1:"set"`
		}{attrs})
		if err != nil {
			return nil, err
		}
		var set asn1.RawValue
		if _, err := asn1.Unmarshal(der, &set); err != nil {
			return nil, err
		}
		signed = set.Bytes
	}
	return cert, checkSignature(cert.PublicKey, h, sum(signed), si.EncryptedDigest)
}

// checkSignature verifies an RSA PKCS#1 v1.5 or ECDSA signature of a
// digest, SHA-1 included.
func checkSignature(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported signer key %T", pub)
}

// chainsTo walks from cert through the given intermediates to one of the
// roots, checking each signature (SHA-1 included) but no validity dates.
func chainsTo(cert *x509.Certificate, intermediates, roots []*x509.Certificate) error {
	for depth := 0; depth < 8; depth++ {
		for _, r := range roots {
			if cert.Equal(r) {
				return nil
			}
		}
		var issuer *x509.Certificate
		for _, c := range append(append([]*x509.Certificate{}, roots...), intermediates...) {
			if bytes.Equal(c.RawSubject, cert.RawIssuer) && !c.Equal(cert) && checkCertSignature(cert, c) == nil {
				issuer = c
				break
			}
		}
		if issuer == nil {
			return fmt.Errorf("no trusted issuer for %q", cert.Subject.CommonName)
		}
		cert = issuer
	}
	return errors.New("certificate chain too long")
}

// checkCertSignature checks that issuer signed cert.
func checkCertSignature(cert, issuer *x509.Certificate) error {
	var h crypto.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1:
		h = crypto.SHA1
	case x509.SHA256WithRSA, x509.ECDSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	default:
		return fmt.Errorf("unsupported certificate signature %v", cert.SignatureAlgorithm)
	}
	d := h.New()
	d.Write(cert.RawTBSCertificate)
	return checkSignature(issuer.PublicKey, h, d.Sum(nil), cert.Signature)
}

// An ADEServer answers the URL of an ADE profile. A device in Setup
// Assistant POSTs its MachineInfo there; the server finds its record by
// serial number and returns a signed enrollment profile whose one-time
// challenge is minted for a link bound to that record, so the device
// enrols into the record's identity chain. It refuses (403) an unknown
// serial while only pre-enrolled devices are admitted, a disowned device
// or one no longer assigned to the organisation, and a device whose
// record is enrolled: a replayed MachineInfo gets no second profile until
// the record is reset.
type ADEServer struct {
	Profiles  *ProfileServer
	Lifecycle *Lifecycle
	// Roots, when set, are what the MachineInfo signer's chain must end
	// in (Apple Inc. Root for real devices).
	Roots  []*x509.Certificate
	Logger *slog.Logger
}

func (s *ADEServer) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *ADEServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "enroll: POST the device's MachineInfo", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxMachineInfoBytes+1))
	if err != nil {
		http.Error(w, "enroll: reading the body", http.StatusBadRequest)
		return
	}
	if len(body) > MaxMachineInfoBytes {
		http.Error(w, fmt.Sprintf("enroll: MachineInfo larger than %d bytes", MaxMachineInfoBytes), http.StatusRequestEntityTooLarge)
		return
	}
	mi, err := ParseMachineInfo(body, s.Roots)
	if err != nil {
		s.log().Warn("ade: MachineInfo refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	profile, tok, err := s.profileFor(r.Context(), mi)
	var refusal *refusalError
	switch {
	case errors.As(err, &refusal):
		s.log().Warn("ade: device refused", "serial", mi.Serial, "udid", mi.UDID, "reason", refusal.reason)
		http.Error(w, refusal.reason, http.StatusForbidden)
		return
	case err != nil:
		s.log().Error("ade: profile", "serial", mi.Serial, "err", err)
		http.Error(w, "enroll: internal error", http.StatusInternalServerError)
		return
	}
	s.log().Info("ade: profile served", "serial", mi.Serial, "udid", mi.UDID, "product", mi.Product, "token_id", tok.ID)
	writeProfile(w, profile)
}

type refusalError struct{ reason string }

func (e *refusalError) Error() string { return e.reason }

// profileFor checks a device's record and returns its enrollment profile.
func (s *ADEServer) profileFor(ctx context.Context, mi *MachineInfo) ([]byte, *Token, error) {
	l := s.Lifecycle
	serial, err := NormalizeSerial(mi.Serial)
	if err != nil {
		return nil, nil, &refusalError{err.Error()}
	}
	st, err := l.Settings.Settings(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := l.now()
	var refusal string
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		refusal = ""
		switch {
		case r == nil && st.PreEnrolledOnly:
			refusal = fmt.Sprintf("serial number %s is not pre-enrolled", serial)
		case r == nil:
			// Admitted without a record: one is made for the device.
			return &Record{Serial: serial, Platform: platformOfProduct(mi.Product), Ownership: OwnershipCorporate,
				Status: StatusPreApproved, Source: SourceEnrollment, CreatedAt: now, UpdatedAt: now,
				History: []Event{{At: now, Step: StepCreated, Note: "ade enrollment"}}}, nil
		case r.ADE != nil && !r.ADE.DisownedAt.IsZero():
			refusal = fmt.Sprintf("serial number %s was disowned", serial)
		case r.ADE != nil && !r.ADE.DeletedAt.IsZero():
			refusal = fmt.Sprintf("serial number %s is no longer assigned to this server in Apple Business Manager", serial)
		case r.Status == StatusEnrolled || r.Status == StatusWipePending:
			refusal = fmt.Sprintf("serial number %s is already enrolled; reset its record to enrol it again", serial)
		}
		if refusal != "" && r != nil {
			r = r.Clone()
			r.Log(Event{At: now, Step: StepRefused, Enrollment: mi.UDID, Note: "ADE MachineInfo: " + refusal})
			return r, nil
		}
		return nil, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if refusal != "" {
		return nil, nil, &refusalError{refusal}
	}
	t, secret, err := NewToken(ctx, l.Tokens, time.Hour, "ADE MachineInfo "+mi.UDID, RecordRef(serial))
	if err != nil {
		return nil, nil, err
	}
	profile, _, err := s.Profiles.issue(ctx, t, HashToken(secret), now)
	if err != nil {
		return nil, nil, err
	}
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		if r == nil {
			return nil, nil
		}
		r = r.Clone()
		r.Log(Event{At: now, Step: StepADEProfile, Enrollment: mi.UDID, Token: t.ID, Note: mi.Product + " " + mi.Version})
		return r, nil
	})
	return profile, t, err
}
