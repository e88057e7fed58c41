package enroll

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// ProfileConfig is what an enrollment profile says.
type ProfileConfig struct {
	// Identifier is the reverse-DNS base of the payload identifiers.
	Identifier   string
	DisplayName  string
	Organization string

	SCEPURL       string
	Challenge     string
	Subject       string // common name of the device certificate
	MDMServerURL  string
	MDMCheckInURL string // ServerURL when empty
	Topic         string
	// ServerCapabilities advertised to the device.
	ServerCapabilities []string
}

// The payload keys are Apple's (mdm/profiles/com.apple.security.scep.yaml
// and com.apple.mdm.yaml in the device-management schema).

type scepPayloadContent struct {
	URL       string       `plist:"URL"`
	Name      string       `plist:"Name,omitempty"`
	Subject   [][][]string `plist:"Subject,omitempty"`
	Challenge string       `plist:"Challenge,omitempty"`
	Keysize   int          `plist:"Keysize"`
	KeyType   string       `plist:"Key Type"`
	KeyUsage  int          `plist:"Key Usage"`
}

type payloadHeader struct {
	PayloadType         string `plist:"PayloadType"`
	PayloadVersion      int    `plist:"PayloadVersion"`
	PayloadIdentifier   string `plist:"PayloadIdentifier"`
	PayloadUUID         string `plist:"PayloadUUID"`
	PayloadDisplayName  string `plist:"PayloadDisplayName,omitempty"`
	PayloadOrganization string `plist:"PayloadOrganization,omitempty"`
}

type scepPayload struct {
	payloadHeader
	PayloadContent scepPayloadContent `plist:"PayloadContent"`
}

type mdmPayload struct {
	payloadHeader
	IdentityCertificateUUID string   `plist:"IdentityCertificateUUID"`
	Topic                   string   `plist:"Topic"`
	ServerURL               string   `plist:"ServerURL"`
	CheckInURL              string   `plist:"CheckInURL"`
	SignMessage             bool     `plist:"SignMessage"`
	AccessRights            int      `plist:"AccessRights"`
	CheckOutWhenRemoved     bool     `plist:"CheckOutWhenRemoved"`
	ServerCapabilities      []string `plist:"ServerCapabilities,omitempty"`
}

type configuration struct {
	payloadHeader
	PayloadContent           []any `plist:"PayloadContent"`
	PayloadRemovalDisallowed bool  `plist:"PayloadRemovalDisallowed"`
}

// accessRightsAll grants every MDM access right (bits 1 through 4096).
const accessRightsAll = 8191

// keyUsageSignEncrypt is the SCEP payload's Key Usage: digital signature
// (1) and key encipherment (4).
const keyUsageSignEncrypt = 5

// BuildProfile returns the unsigned .mobileconfig for cfg.
func BuildProfile(cfg ProfileConfig) ([]byte, error) {
	if cfg.SCEPURL == "" || cfg.MDMServerURL == "" || cfg.Topic == "" || cfg.Identifier == "" {
		return nil, fmt.Errorf("enroll: profile needs Identifier, SCEPURL, MDMServerURL and Topic")
	}
	checkIn := cfg.MDMCheckInURL
	if checkIn == "" {
		checkIn = cfg.MDMServerURL
	}
	scepUUID, mdmUUID, profUUID := newUUID(), newUUID(), newUUID()
	scep := &scepPayload{
		payloadHeader: payloadHeader{
			PayloadType: "com.apple.security.scep", PayloadVersion: 1, PayloadIdentifier: cfg.Identifier + ".scep",
			PayloadUUID: scepUUID, PayloadDisplayName: "Device identity",
		},
		PayloadContent: scepPayloadContent{
			URL: cfg.SCEPURL, Name: cfg.DisplayName, Challenge: cfg.Challenge,
			Keysize: 2048, KeyType: "RSA", KeyUsage: keyUsageSignEncrypt,
		},
	}
	if cfg.Subject != "" {
		scep.PayloadContent.Subject = [][][]string{{{"CN", cfg.Subject}}}
	}
	mdm := &mdmPayload{
		payloadHeader: payloadHeader{
			PayloadType: "com.apple.mdm", PayloadVersion: 1, PayloadIdentifier: cfg.Identifier + ".mdm",
			PayloadUUID: mdmUUID, PayloadDisplayName: "Device management",
		},
		IdentityCertificateUUID: scepUUID, Topic: cfg.Topic, ServerURL: cfg.MDMServerURL, CheckInURL: checkIn,
		SignMessage: true, AccessRights: accessRightsAll, CheckOutWhenRemoved: true, ServerCapabilities: cfg.ServerCapabilities,
	}
	return plist.MarshalIndent(&configuration{
		payloadHeader: payloadHeader{
			PayloadType: "Configuration", PayloadVersion: 1, PayloadIdentifier: cfg.Identifier,
			PayloadUUID: profUUID, PayloadDisplayName: cfg.DisplayName, PayloadOrganization: cfg.Organization,
		},
		// Values, not pointers: the plist encoder does not follow a pointer
		// inside an interface.
		PayloadContent: []any{*scep, *mdm},
	}, "\t")
}

// SignProfile wraps a profile in a CMS SignedData (SHA-256) by cert and key,
// with chain (the issuing CA) included, as macOS and iOS verify it.
func SignProfile(profile []byte, cert *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(profile)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("enroll: sign profile: %w", err)
	}
	return sd.Finish()
}

func newUUID() string { return strings.ToUpper(uuid.NewString()) }
