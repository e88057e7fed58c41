package dep

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// NewKeyPair returns a self-signed certificate and its RSA-2048 key: the
// public key to upload to Apple Business Manager, which encrypts the
// server token (.p7m) to it.
func NewKeyPair(commonName string, validity time.Duration) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// MaxTokenBytes caps a server token file.
const MaxTokenBytes = 1 << 20

// Token errors.
var (
	ErrTokenFormat  = errors.New("dep: not an ADE server token")
	ErrTokenDecrypt = errors.New("dep: the server token is not encrypted to this key")
)

// DecryptToken reads a server token file as Apple Business Manager
// delivers it: an S/MIME message (application/pkcs7-mime, base64 CMS
// EnvelopedData), or the bare DER or base64 EnvelopedData, encrypted to
// cert's key. It returns the OAuth credentials inside.
func DecryptToken(p7m []byte, cert *x509.Certificate, key crypto.PrivateKey) (*OAuth1Tokens, error) {
	if len(p7m) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrTokenFormat, MaxTokenBytes)
	}
	der, err := envelopeDER(p7m)
	if err != nil {
		return nil, err
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenFormat, err)
	}
	content, err := decrypt(p7, cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenDecrypt, err)
	}
	return ParseToken(content)
}

// parsePKCS7 and decrypt contain panics of the CMS library on hostile
// input.
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed CMS: %v", r)
		}
	}()
	return pkcs7.Parse(der)
}

func decrypt(p7 *pkcs7.PKCS7, cert *x509.Certificate, key crypto.PrivateKey) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed CMS: %v", r)
		}
	}()
	return p7.Decrypt(cert, key)
}

// envelopeDER finds the DER EnvelopedData in a token file: the base64 body
// of an S/MIME message, bare base64, or DER.
func envelopeDER(b []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) > 0 && trimmed[0] == 0x30 {
		return trimmed, nil // DER
	}
	body := trimmed
	if msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(trimmed))); err == nil && msg.Header.Get("Content-Type") != "" {
		mt, _, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if mt != "application/pkcs7-mime" && mt != "application/x-pkcs7-mime" {
			return nil, fmt.Errorf("%w: a MIME message of type %q, want application/pkcs7-mime", ErrTokenFormat, mt)
		}
		if body, err = io.ReadAll(io.LimitReader(msg.Body, MaxTokenBytes)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTokenFormat, err)
		}
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil || len(der) == 0 {
		return nil, fmt.Errorf("%w: neither DER nor base64 CMS", ErrTokenFormat)
	}
	return der, nil
}

// ParseToken reads the decrypted content of a server token, or a token
// file someone has already decrypted: the JSON credentials, bare or inside
// a MIME message, between -----BEGIN MESSAGE----- and -----END MESSAGE-----
// lines.
func ParseToken(b []byte) (*OAuth1Tokens, error) {
	text := string(b)
	if i := strings.Index(text, "-----BEGIN MESSAGE-----"); i >= 0 {
		text = text[i+len("-----BEGIN MESSAGE-----"):]
		j := strings.Index(text, "-----END MESSAGE-----")
		if j < 0 {
			return nil, fmt.Errorf("%w: BEGIN MESSAGE without END MESSAGE", ErrTokenFormat)
		}
		text = text[:j]
	} else if i := strings.IndexByte(text, '{'); i > 0 {
		text = text[i:] // JSON after MIME headers
	}
	var t OAuth1Tokens
	if err := json.Unmarshal([]byte(strings.TrimSpace(text)), &t); err != nil {
		return nil, fmt.Errorf("%w: the token JSON: %v", ErrTokenFormat, err)
	}
	if !t.Valid() {
		return nil, fmt.Errorf("%w: consumer_key, consumer_secret, access_token and access_secret are required", ErrTokenFormat)
	}
	return &t, nil
}
