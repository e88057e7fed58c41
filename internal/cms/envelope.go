// Package cms builds CMS EnvelopedData (RFC 5652 section 6) with AES-CBC
// content encryption and RSA PKCS#1 v1.5 key transport: what SCEP peers
// (Apple devices, OpenSSL, Windows) and S/MIME readers decrypt. It exists
// because pkcs7.Encrypt takes its algorithm from a package-level variable.
package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/smallstep/pkcs7"
)

// Content encryption algorithms.
var (
	OIDAES128CBC = pkcs7.OIDEncryptionAlgorithmAES128CBC
	OIDAES256CBC = pkcs7.OIDEncryptionAlgorithmAES256CBC
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue // [0] EXPLICIT, built by hand: see envelope
}

type envelopedData struct {
	Version              int
	RecipientInfos       []keyTransRecipientInfo `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
}

type keyTransRecipientInfo struct {
	Version                int
	IssuerAndSerialNumber  issuerAndSerial
	KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedKey           []byte
}

type issuerAndSerial struct {
	Issuer       asn1.RawValue
	SerialNumber *big.Int
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           []byte `asn1:"optional,tag:0"`
}

// Envelope encrypts content for each recipient with a fresh AES key of the
// size alg names (OIDAES128CBC or OIDAES256CBC) and returns the DER
// ContentInfo.
func Envelope(content []byte, recipients []*x509.Certificate, alg asn1.ObjectIdentifier) ([]byte, error) {
	var keyLen int
	switch {
	case alg.Equal(OIDAES128CBC):
		keyLen = 16
	case alg.Equal(OIDAES256CBC):
		keyLen = 32
	default:
		return nil, fmt.Errorf("cms: unsupported content encryption %v", alg)
	}
	if len(recipients) == 0 {
		return nil, errors.New("cms: envelope has no recipients")
	}
	key := make([]byte, keyLen)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	// PKCS#7 padding: always at least one byte, up to a whole block.
	pad := aes.BlockSize - len(content)%aes.BlockSize
	ciphertext := make([]byte, len(content)+pad)
	copy(ciphertext, content)
	for i := len(content); i < len(ciphertext); i++ {
		ciphertext[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, ciphertext)

	ivParam, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	env := envelopedData{
		EncryptedContentInfo: encryptedContentInfo{
			ContentType: pkcs7.OIDData,
			ContentEncryptionAlgorithm: pkix.AlgorithmIdentifier{
				Algorithm:  alg,
				Parameters: asn1.RawValue{FullBytes: ivParam},
			},
			EncryptedContent: ciphertext,
		},
	}
	for _, r := range recipients {
		pub, ok := r.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("cms: recipient %q has a %T key; key transport needs RSA", r.Subject, r.PublicKey)
		}
		ek, err := rsa.EncryptPKCS1v15(rand.Reader, pub, key)
		if err != nil {
			return nil, err
		}
		env.RecipientInfos = append(env.RecipientInfos, keyTransRecipientInfo{
			IssuerAndSerialNumber: issuerAndSerial{
				Issuer:       asn1.RawValue{FullBytes: r.RawIssuer},
				SerialNumber: r.SerialNumber,
			},
			KeyEncryptionAlgorithm: pkix.AlgorithmIdentifier{
				Algorithm:  pkcs7.OIDEncryptionAlgorithmRSA,
				Parameters: asn1.NullRawValue,
			},
			EncryptedKey: ek,
		})
	}
	inner, err := asn1.Marshal(env)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{
		ContentType: pkcs7.OIDEnvelopedData,
		// encoding/asn1 writes FullBytes verbatim, ignoring struct tags, so
		// the explicit [0] is spelled out.
		Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner},
	})
}

// ContentEncryption returns the content-encryption algorithm of a DER
// EnvelopedData ContentInfo, so a reply can use what the request used.
func ContentEncryption(der []byte) (asn1.ObjectIdentifier, error) {
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, err
	}
	// Only the algorithm is needed; decode loosely so BER-ish recipient
	// infos from other implementations do not matter here.
	var env struct {
		Version              int
		RecipientInfos       asn1.RawValue
		EncryptedContentInfo struct {
			ContentType                asn1.ObjectIdentifier
			ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
		} `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &env); err != nil {
		return nil, err
	}
	return env.EncryptedContentInfo.ContentEncryptionAlgorithm.Algorithm, nil
}
