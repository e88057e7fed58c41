package mdmtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/custodymdm/custody/scep"
)

// EnrollOptions tune Enroll.
type EnrollOptions struct {
	// Roots verify the profile's signature chain; with none, only the
	// signature itself is checked (as a device that shows "Not Verified").
	Roots      *x509.CertPool
	HTTPClient *http.Client
	// RequireSigned refuses an unsigned profile.
	RequireSigned bool
	// Observe is given to the enrolled device (see Device.Observe).
	Observe func(kind string, took time.Duration, err error)
	// SerialNumber and UDID, when set, are the device's; random ones
	// otherwise.
	SerialNumber, UDID string
	// Platform is PlatformIOS (the default) or PlatformMacOS.
	Platform string
	// AwaitConfiguration holds the device in Setup Assistant until the
	// server sends DeviceConfigured, as an ADE profile with
	// await_device_configured does (see Device.AwaitingConfiguration).
	AwaitConfiguration bool
	// Key, when set, is the device's key pair instead of a fresh one of
	// the profile's Keysize: a load generator simulating thousands of
	// devices lends them a few keys, since generating an RSA key costs
	// the simulator about 60 ms and the server nothing.
	Key *rsa.PrivateKey
}

// profile is the part of an enrollment .mobileconfig a device acts on.
type profile struct {
	PayloadIdentifier string
	PayloadContent    []struct {
		PayloadType    string
		PayloadUUID    string
		PayloadContent struct {
			URL       string
			Challenge string
			Keysize   int
			Subject   [][][]string
		}
		IdentityCertificateUUID string
		Topic                   string
		ServerURL               string
		CheckInURL              string
		SignMessage             bool
		CheckOutWhenRemoved     bool
	}
}

// Enroll does what a device does with an enrollment link: it downloads the
// profile, verifies its signature, obtains its identity certificate by
// SCEP with the profile's challenge, and checks in (Authenticate, then
// TokenUpdate). It returns the enrolled device.
func Enroll(ctx context.Context, profileURL string, opts EnrollOptions) (*Device, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, profileURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{resp.StatusCode, string(body)}
	}
	return enrollProfile(ctx, body, opts)
}

// enrollProfile installs an enrollment profile: SCEP, then Authenticate and
// TokenUpdate.
func enrollProfile(ctx context.Context, body []byte, opts EnrollOptions) (*Device, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	content, err := verifyProfile(body, opts)
	if err != nil {
		return nil, err
	}
	var p profile
	if err := plist.Unmarshal(content, &p); err != nil {
		return nil, fmt.Errorf("mdmtest: profile is not a plist: %w", err)
	}
	var scepURL, challenge, subject string
	keysize := 2048
	var mdmPayload *struct {
		IdentityCertificateUUID, Topic, ServerURL, CheckInURL string
		CheckOutWhenRemoved, SignMessage                      bool
	}
	scepUUID := ""
	for _, pl := range p.PayloadContent {
		switch pl.PayloadType {
		case "com.apple.security.scep":
			scepUUID, scepURL, challenge = pl.PayloadUUID, pl.PayloadContent.URL, pl.PayloadContent.Challenge
			if pl.PayloadContent.Keysize > 0 {
				keysize = pl.PayloadContent.Keysize
			}
			if s := pl.PayloadContent.Subject; len(s) > 0 && len(s[0]) > 0 && len(s[0][0]) == 2 {
				subject = s[0][0][1]
			}
		case "com.apple.mdm":
			mdmPayload = &struct {
				IdentityCertificateUUID, Topic, ServerURL, CheckInURL string
				CheckOutWhenRemoved, SignMessage                      bool
			}{pl.IdentityCertificateUUID, pl.Topic, pl.ServerURL, pl.CheckInURL, pl.CheckOutWhenRemoved, pl.SignMessage}
		}
	}
	if scepURL == "" || mdmPayload == nil {
		return nil, errors.New("mdmtest: profile lacks a SCEP or an MDM payload")
	}
	if mdmPayload.IdentityCertificateUUID != scepUUID {
		return nil, errors.New("mdmtest: MDM payload's IdentityCertificateUUID does not name the SCEP payload")
	}
	key := opts.Key
	if key == nil {
		if key, err = rsa.GenerateKey(rand.Reader, keysize); err != nil {
			return nil, err
		}
	}
	csr, err := scep.NewCSR(key, pkix.Name{CommonName: subject}, challenge)
	if err != nil {
		return nil, err
	}
	cert, err := (&scep.Client{URL: scepURL, HTTPClient: hc}).Enroll(ctx, key, csr)
	if err != nil {
		return nil, fmt.Errorf("mdmtest: SCEP: %w", err)
	}
	d := NewDevice(cert, key)
	if opts.Platform == PlatformMacOS {
		d = NewMac(cert, key)
	}
	d.ServerURL, d.CheckInURL, d.Topic, d.HTTPClient = mdmPayload.ServerURL, mdmPayload.CheckInURL, mdmPayload.Topic, hc
	d.SignMessage, d.AwaitingConfiguration = mdmPayload.SignMessage, opts.AwaitConfiguration
	d.Observe = opts.Observe
	d.EnrollmentProfile, d.CheckOutWhenRemoved = p.PayloadIdentifier, mdmPayload.CheckOutWhenRemoved
	if opts.SerialNumber != "" {
		d.SerialNumber = opts.SerialNumber
	}
	if opts.UDID != "" {
		d.UDID = opts.UDID
	}
	if err := d.Authenticate(ctx); err != nil {
		return nil, fmt.Errorf("mdmtest: Authenticate: %w", err)
	}
	if err := d.TokenUpdate(ctx); err != nil {
		return nil, fmt.Errorf("mdmtest: TokenUpdate: %w", err)
	}
	return d, nil
}

func verifyProfile(body []byte, opts EnrollOptions) ([]byte, error) {
	p7, err := pkcs7.Parse(body)
	if err != nil {
		if opts.RequireSigned {
			return nil, fmt.Errorf("mdmtest: profile is not signed: %w", err)
		}
		return body, nil
	}
	if opts.Roots != nil {
		err = p7.VerifyWithChain(opts.Roots)
	} else {
		err = p7.Verify()
	}
	if err != nil {
		return nil, fmt.Errorf("mdmtest: profile signature: %w", err)
	}
	return p7.Content, nil
}
