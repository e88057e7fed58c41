package mdm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	_ "crypto/sha1"
	_ "crypto/sha512"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// This file verifies the detached CMS SignedData of an Mdm-Signature
// (RFC 5652) without a general-purpose PKCS#7 library: it is on the path
// of every MDM request, and the general parser re-encodes BER and re-parses
// the device's certificate each time. It reads DER with cryptobyte, comparing
// object identifiers as encoded bytes, and takes only the exact shape
// devices send; VerifySignature falls back to github.com/smallstep/pkcs7 for
// anything else (errNotDER), and that parser then decides.

// oid returns the DER encoding (tag, length, value) of an object identifier.
func oid(arcs ...int) []byte {
	b, err := asn1.Marshal(asn1.ObjectIdentifier(arcs))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	oidSignedData    = oid(1, 2, 840, 113549, 1, 7, 2)
	oidData          = oid(1, 2, 840, 113549, 1, 7, 1)
	oidContentType   = oid(1, 2, 840, 113549, 1, 9, 3)
	oidMessageDigest = oid(1, 2, 840, 113549, 1, 9, 4)
	oidSigningTime   = oid(1, 2, 840, 113549, 1, 9, 5)

	digestAlgorithms = []struct {
		oid  []byte
		hash crypto.Hash
	}{
		{oid(2, 16, 840, 1, 101, 3, 4, 2, 1), crypto.SHA256},
		{oid(2, 16, 840, 1, 101, 3, 4, 2, 2), crypto.SHA384},
		{oid(2, 16, 840, 1, 101, 3, 4, 2, 3), crypto.SHA512},
		{oid(1, 3, 14, 3, 2, 26), crypto.SHA1},
	}

	// signatureAlgorithms are the SignerInfo signatureAlgorithm values
	// accepted for each key type, with the digest each one names (0: any).
	rsaSignatureAlgorithms = []struct {
		oid  []byte
		hash crypto.Hash
	}{
		{oid(1, 2, 840, 113549, 1, 1, 1), 0}, // rsaEncryption
		{oid(1, 2, 840, 113549, 1, 1, 5), crypto.SHA1},
		{oid(1, 2, 840, 113549, 1, 1, 11), crypto.SHA256},
		{oid(1, 2, 840, 113549, 1, 1, 12), crypto.SHA384},
		{oid(1, 2, 840, 113549, 1, 1, 13), crypto.SHA512},
	}
	ecdsaSignatureAlgorithms = []struct {
		oid  []byte
		hash crypto.Hash
	}{
		{oid(1, 2, 840, 10045, 4, 1), crypto.SHA1},
		{oid(1, 2, 840, 10045, 4, 3, 2), crypto.SHA256},
		{oid(1, 2, 840, 10045, 4, 3, 3), crypto.SHA384},
		{oid(1, 2, 840, 10045, 4, 3, 4), crypto.SHA512},
	}
)

// signatureAlgorithmFits reports whether a SignerInfo's signatureAlgorithm
// names the signer's key type and (when it names one) the digest used.
func signatureAlgorithmFits(alg []byte, key any, h crypto.Hash) bool {
	algs := rsaSignatureAlgorithms
	switch key.(type) {
	case *rsa.PublicKey:
	case *ecdsa.PublicKey:
		algs = ecdsaSignatureAlgorithms
	default:
		return false
	}
	for _, a := range algs {
		if bytes.Equal(alg, a.oid) {
			return a.hash == 0 || a.hash == h
		}
	}
	return false
}

// readAlgorithm reads an AlgorithmIdentifier whose parameters are absent
// or NULL and returns its encoded object identifier.
func readAlgorithm(s *cryptobyte.String, alg *[]byte) bool {
	var seq, id cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&id, cbasn1.OBJECT_IDENTIFIER) {
		return false
	}
	*alg = id
	var null cryptobyte.String
	return seq.Empty() || (seq.ReadASN1(&null, cbasn1.NULL) && null.Empty() && seq.Empty())
}

// readOptionalElement reads the next element, tag and length included,
// into out if it has the given tag, and leaves out nil if not.
func readOptionalElement(s *cryptobyte.String, out *cryptobyte.String, tag cbasn1.Tag) bool {
	if !s.PeekASN1Tag(tag) {
		return true
	}
	return s.ReadASN1Element(out, tag)
}

func digestHash(alg []byte) (crypto.Hash, bool) {
	for _, d := range digestAlgorithms {
		if bytes.Equal(alg, d.oid) {
			return d.hash, true
		}
	}
	return 0, false
}

// errNotDER sends VerifySignature to the general parser.
var errNotDER = errors.New("not DER")

// certCache keeps parsed certificates by the SHA-256 of their DER, so a
// device's certificate is parsed once, not at every request.
type certCache struct {
	m sync.Map // [32]byte → *cachedCert
	n atomic.Int64
}

type cachedCert struct {
	cert   *x509.Certificate
	serial []byte // the DER INTEGER of its serial number
}

const maxCertCache = 200_000

func (c *certCache) parse(der []byte) (*cachedCert, error) {
	var sum [32]byte
	if c != nil {
		sum = sha256.Sum256(der)
		if v, ok := c.m.Load(sum); ok {
			return v.(*cachedCert), nil
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return nil, err
	}
	cc := &cachedCert{cert, serial}
	if c != nil {
		if c.n.Add(1) > maxCertCache {
			c.m.Clear()
			c.n.Store(1)
		}
		c.m.Store(sum, cc)
	}
	return cc, nil
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
	// ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
	in := cryptobyte.String(der)
	var ci, contentType, content cryptobyte.String
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() ||
		!ci.ReadASN1Element(&contentType, cbasn1.OBJECT_IDENTIFIER) {
		return nil, errNotDER
	}
	if !bytes.Equal(contentType, oidSignedData) {
		return nil, errors.New("not a CMS SignedData")
	}
	// Only the exact shape devices send takes this path: version 1 (signers
	// named by issuer and serial), DigestAlgorithms a SET of known digests,
	// certificates present, no CRLs, one SignerInfo without unsigned
	// attributes. Anything else goes to the general parser.
	var sd, digestAlgs, encap, eContentType, certs, signerInfos cryptobyte.String
	var version int
	if !ci.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) || !ci.Empty() ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) || !content.Empty() ||
		!sd.ReadASN1Integer(&version) || version != 1 ||
		!sd.ReadASN1(&digestAlgs, cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) ||
		!encap.ReadASN1Element(&eContentType, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(eContentType, oidData) ||
		!sd.ReadASN1(&certs, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!sd.ReadASN1(&signerInfos, cbasn1.SET) || !sd.Empty() {
		return nil, errNotDER
	}
	for !digestAlgs.Empty() {
		var alg []byte
		if !readAlgorithm(&digestAlgs, &alg) {
			return nil, errNotDER
		}
		if _, ok := digestHash(alg); !ok {
			return nil, errNotDER
		}
	}
	if !encap.Empty() {
		return nil, errors.New("signature is not detached")
	}
	var si cryptobyte.String
	if !signerInfos.ReadASN1(&si, cbasn1.SEQUENCE) {
		return nil, errNotDER
	}
	if !signerInfos.Empty() {
		return nil, errors.New("want exactly one signer")
	}

	// SignerInfo ::= SEQUENCE { version 1, sid IssuerAndSerialNumber,
	// digestAlgorithm, [0] IMPLICIT signedAttrs OPTIONAL,
	// signatureAlgorithm, signature OCTET STRING }
	var sid, issuer, serial, signedAttrs, signature cryptobyte.String
	var digestAlg, sigAlg []byte
	if !si.ReadASN1Integer(&version) || version != 1 ||
		!si.ReadASN1(&sid, cbasn1.SEQUENCE) || // a subjectKeyIdentifier sid is [0]: left to the general parser
		!sid.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !sid.ReadASN1Element(&serial, cbasn1.INTEGER) || !sid.Empty() ||
		!readAlgorithm(&si, &digestAlg) ||
		!readOptionalElement(&si, &signedAttrs, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!readAlgorithm(&si, &sigAlg) ||
		!si.ReadASN1(&signature, cbasn1.OCTET_STRING) || !si.Empty() {
		return nil, errNotDER
	}
	signer, err := findSigner(certs, issuer, serial, cache)
	if err != nil {
		return nil, err
	}
	h, ok := digestHash(digestAlg)
	if !ok || !signatureAlgorithmFits(sigAlg, signer.PublicKey, h) {
		return nil, errNotDER
	}
	d := h.New()
	d.Write(body)
	contentDigest := d.Sum(nil)

	signed := contentDigest
	if signedAttrs != nil {
		if err := checkSignedAttrs(signedAttrs, contentDigest, signer); err != nil {
			return nil, err
		}
		// The signature covers the attributes encoded as a SET, not with
		// their [0] IMPLICIT tag.
		d := h.New()
		d.Write([]byte{0x31})
		d.Write(signedAttrs[1:])
		signed = d.Sum(nil)
	}
	switch pub := signer.PublicKey.(type) {
	case *rsa.PublicKey:
		err = rsa.VerifyPKCS1v15(pub, h, signed, signature)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, signed, signature) {
			err = errors.New("ECDSA verification failed")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return signer, nil
}

// checkSignedAttrs checks the signed attributes ([0] IMPLICIT SET OF
// Attribute): a contentType of data and a messageDigest equal to the
// body's, each exactly once with one value, and a signingTime, if there is
// one, within the signer's validity.
func checkSignedAttrs(elem cryptobyte.String, contentDigest []byte, signer *x509.Certificate) error {
	var attrs cryptobyte.String
	if !elem.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return errNotDER
	}
	var digest cryptobyte.String
	var haveDigest, haveType, haveTime bool
	for !attrs.Empty() {
		var attr, typ, values cryptobyte.String
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1Element(&typ, cbasn1.OBJECT_IDENTIFIER) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
			return errNotDER
		}
		switch {
		case bytes.Equal(typ, oidMessageDigest):
			if haveDigest || !values.ReadASN1(&digest, cbasn1.OCTET_STRING) || !values.Empty() {
				return errNotDER
			}
			haveDigest = true
		case bytes.Equal(typ, oidContentType):
			var ct cryptobyte.String
			if haveType || !values.ReadASN1Element(&ct, cbasn1.OBJECT_IDENTIFIER) || !values.Empty() {
				return errNotDER
			}
			if !bytes.Equal(ct, oidData) {
				return errors.New("content type is not data")
			}
			haveType = true
		case bytes.Equal(typ, oidSigningTime):
			// As pkcs7 does: a time that parses must fall within the
			// certificate's validity; one that does not parse is ignored.
			var t time.Time
			if haveTime {
				return errNotDER
			}
			haveTime = true
			if _, err := asn1.Unmarshal(values, &t); err == nil && (t.Before(signer.NotBefore) || t.After(signer.NotAfter)) {
				return fmt.Errorf("signing time %s is outside the certificate's validity", t.Format(time.RFC3339))
			}
		}
	}
	if !haveDigest || !haveType {
		return errors.New("signed attributes lack messageDigest or contentType")
	}
	if subtle.ConstantTimeCompare(digest, contentDigest) != 1 {
		return errors.New("message digest does not match the body")
	}
	return nil
}

// wellFormed walks a DER encoding, descending into constructed elements.
func wellFormed(b cryptobyte.String, depth int) bool {
	if depth > 32 {
		return false
	}
	for !b.Empty() {
		var inner cryptobyte.String
		var tag cbasn1.Tag
		if !b.ReadAnyASN1(&inner, &tag) {
			return false
		}
		if tag&0x20 != 0 && !wellFormed(inner, depth+1) { // constructed
			return false
		}
	}
	return true
}

// findSigner returns the certificate in certs (the SignedData's
// certificate set) with the given encoded issuer and serial number.
func findSigner(certs cryptobyte.String, issuer, serial []byte, cache *certCache) (*x509.Certificate, error) {
	for !certs.Empty() {
		var der cryptobyte.String
		if !certs.ReadASN1Element(&der, cbasn1.SEQUENCE) {
			return nil, errNotDER
		}
		c, err := cache.parse(der)
		if err != nil {
			return nil, errNotDER // whatever it is, the general parser decides
		}
		if bytes.Equal(c.cert.RawIssuer, issuer) && bytes.Equal(c.serial, serial) {
			return c.cert, nil
		}
	}
	return nil, errors.New("no certificate for the signer")
}
