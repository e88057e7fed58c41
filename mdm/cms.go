package mdm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	_ "crypto/sha1"
	_ "crypto/sha512"
)

// This file verifies the detached CMS SignedData of an Mdm-Signature
// (RFC 5652) without a general-purpose PKCS#7 library: it is on the path
// of every MDM request, and the general parser re-encodes BER and re-parses
// the device's certificate each time. It accepts DER only; VerifySignature
// falls back to github.com/smallstep/pkcs7 for anything else.

var (
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// signatureAlgorithmFits reports whether a SignerInfo's signatureAlgorithm
// names the signer's key type and (when it names one) the digest used.
func signatureAlgorithmFits(alg asn1.ObjectIdentifier, key any, h crypto.Hash) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		switch {
		case alg.Equal(oidRSAEncryption):
			return true
		case alg.Equal(oidSHA1WithRSA):
			return h == crypto.SHA1
		case alg.Equal(oidSHA256WithRSA):
			return h == crypto.SHA256
		case alg.Equal(oidSHA384WithRSA):
			return h == crypto.SHA384
		case alg.Equal(oidSHA512WithRSA):
			return h == crypto.SHA512
		}
	case *ecdsa.PublicKey:
		switch {
		case alg.Equal(oidECDSAWithSHA1):
			return h == crypto.SHA1
		case alg.Equal(oidECDSASHA256):
			return h == crypto.SHA256
		case alg.Equal(oidECDSASHA384):
			return h == crypto.SHA384
		case alg.Equal(oidECDSASHA512):
			return h == crypto.SHA512
		}
	}
	return false
}

type cmsContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type cmsSignedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"optional,explicit,tag:0"`
	}
	Certificates asn1.RawValue   `asn1:"optional,tag:0"`
	CRLs         asn1.RawValue   `asn1:"optional,tag:1"`
	SignerInfos  []cmsSignerInfo `asn1:"set"`
}

type cmsSignerInfo struct {
	Version            int
	SID                asn1.RawValue
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
}

type cmsIssuerAndSerial struct {
	Issuer asn1.RawValue
	Serial asn1.RawValue
}

type cmsAttribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

// errNotDER sends VerifySignature to the general parser.
var errNotDER = errors.New("not DER")

// certCache keeps parsed certificates by the SHA-256 of their DER, so a
// device's certificate is parsed once, not at every request.
type certCache struct {
	m sync.Map // [32]byte → *x509.Certificate
	n atomic.Int64
}

const maxCertCache = 200_000

func (c *certCache) parse(der []byte) (*x509.Certificate, error) {
	if c == nil {
		return x509.ParseCertificate(der)
	}
	sum := sha256.Sum256(der)
	if v, ok := c.m.Load(sum); ok {
		return v.(*x509.Certificate), nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if c.n.Add(1) > maxCertCache {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(sum, cert)
	return cert, nil
}

// verifyDetachedDER verifies a DER detached SignedData over body and
// returns the signer's certificate.
func verifyDetachedDER(der, body []byte, cache *certCache) (*x509.Certificate, error) {
	// Every constructed element, all the way down (certificates included),
	// must be well-formed DER, as the general parser's BER pass requires:
	// nothing this path skips over may be malformed.
	if !wellFormed(der, 0) {
		return nil, errNotDER
	}
	var ci cmsContentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) != 0 {
		return nil, errNotDER
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, errors.New("not a CMS SignedData")
	}
	var sd cmsSignedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil || len(rest) != 0 {
		return nil, errNotDER
	}
	// Only the exact shape devices send takes this path: version 1 (signers
	// named by issuer and serial), DigestAlgorithms a SET. Anything else
	// goes to the general parser, which is then the one that decides.
	da, certs := sd.DigestAlgorithms, sd.Certificates
	var digestAlgs []pkix.AlgorithmIdentifier
	if rest, err := asn1.UnmarshalWithParams(da.FullBytes, &digestAlgs, "set"); err != nil || len(rest) != 0 {
		return nil, errNotDER
	}
	if sd.Version != 1 || !isTag(da, asn1.ClassUniversal, asn1.TagSet, true) ||
		!isTag(certs, asn1.ClassContextSpecific, 0, true) || len(sd.CRLs.FullBytes) > 0 ||
		!sd.EncapContentInfo.ContentType.Equal(oidData) {
		return nil, errNotDER
	}
	if len(sd.EncapContentInfo.Content.Bytes) != 0 {
		return nil, errors.New("signature is not detached")
	}
	if len(sd.SignerInfos) != 1 {
		return nil, errors.New("want exactly one signer")
	}
	si := sd.SignerInfos[0]
	if si.Version != 1 || len(si.UnsignedAttrs.FullBytes) > 0 {
		return nil, errNotDER
	}
	var sid cmsIssuerAndSerial
	if rest, err := asn1.Unmarshal(si.SID.FullBytes, &sid); err != nil || len(rest) != 0 {
		return nil, errNotDER // subjectKeyIdentifier form: leave it to the general parser
	}
	if !isTag(sid.Issuer, asn1.ClassUniversal, asn1.TagSequence, true) || !isTag(sid.Serial, asn1.ClassUniversal, asn1.TagInteger, false) {
		return nil, errNotDER
	}
	signer, err := findSigner(certs.Bytes, sid, cache)
	if err != nil {
		return nil, err
	}
	h, err := digestHash(si.DigestAlgorithm.Algorithm)
	if err != nil {
		return nil, errNotDER
	}
	if !signatureAlgorithmFits(si.SignatureAlgorithm.Algorithm, signer.PublicKey, h) {
		return nil, errNotDER
	}
	d := h.New()
	d.Write(body)
	contentDigest := d.Sum(nil)

	signed := contentDigest
	if len(si.SignedAttrs.FullBytes) > 0 {
		if !isTag(si.SignedAttrs, asn1.ClassContextSpecific, 0, true) {
			return nil, errNotDER
		}
		var attrs []cmsAttribute
		if rest, err := asn1.UnmarshalWithParams(si.SignedAttrs.FullBytes, &attrs, "set,tag:0"); err != nil || len(rest) != 0 {
			return nil, errNotDER
		}
		var digest []byte
		var haveType bool
		for _, a := range attrs {
			switch {
			case a.Type.Equal(oidMessageDigest):
				if _, err := asn1.Unmarshal(a.Values.Bytes, &digest); err != nil {
					return nil, errors.New("malformed messageDigest attribute")
				}
			case a.Type.Equal(oidContentType):
				var ct asn1.ObjectIdentifier
				if _, err := asn1.Unmarshal(a.Values.Bytes, &ct); err != nil || !ct.Equal(oidData) {
					return nil, errors.New("content type is not data")
				}
				haveType = true
			}
		}
		if digest == nil || !haveType {
			return nil, errors.New("signed attributes lack messageDigest or contentType")
		}
		if subtle.ConstantTimeCompare(digest, contentDigest) != 1 {
			return nil, errors.New("message digest does not match the body")
		}
		// The signature covers the attributes encoded as a SET, not with
		// their [0] IMPLICIT tag.
		enc := bytes.Clone(si.SignedAttrs.FullBytes)
		enc[0] = 0x31
		d := h.New()
		d.Write(enc)
		signed = d.Sum(nil)
	}
	switch pub := signer.PublicKey.(type) {
	case *rsa.PublicKey:
		err = rsa.VerifyPKCS1v15(pub, h, signed, si.Signature)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, signed, si.Signature) {
			err = errors.New("ECDSA verification failed")
		}
	default:
		err = fmt.Errorf("unsupported signer key %T", signer.PublicKey)
	}
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return signer, nil
}

// wellFormed walks a DER encoding, descending into constructed elements.
func wellFormed(b []byte, depth int) bool {
	if depth > 32 {
		return false
	}
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			return false
		}
		if v.IsCompound && !wellFormed(v.Bytes, depth+1) {
			return false
		}
		b = rest
	}
	return true
}

// isTag reports whether v has exactly the given class, tag and form.
func isTag(v asn1.RawValue, class, tag int, compound bool) bool {
	return v.Class == class && v.Tag == tag && v.IsCompound == compound
}

func findSigner(raw []byte, sid cmsIssuerAndSerial, certs *certCache) (*x509.Certificate, error) {
	for len(raw) > 0 {
		var c asn1.RawValue
		rest, err := asn1.Unmarshal(raw, &c)
		if err != nil {
			return nil, errNotDER
		}
		raw = rest
		cert, err := certs.parse(c.FullBytes)
		if err != nil {
			return nil, errNotDER // whatever it is, the general parser decides
		}
		serial, err := asn1.Marshal(cert.SerialNumber)
		if err == nil && bytes.Equal(cert.RawIssuer, sid.Issuer.FullBytes) && bytes.Equal(serial, sid.Serial.FullBytes) {
			return cert, nil
		}
	}
	return nil, errors.New("no certificate for the signer")
}

func digestHash(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	case oid.Equal(oidSHA1):
		return crypto.SHA1, nil
	}
	return 0, fmt.Errorf("unsupported digest algorithm %v", oid)
}
