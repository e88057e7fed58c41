package mdmtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// machineInfo is the plist a device in Setup Assistant sends the ADE
// profile's URL.
type machineInfo struct {
	UDID     string `plist:"UDID"`
	Serial   string `plist:"SERIAL"`
	Product  string `plist:"PRODUCT"`
	Version  string `plist:"VERSION"`
	Language string `plist:"LANGUAGE"`
}

// SignMachineInfo returns the MachineInfo of a device as Setup Assistant
// sends it: the plist, CMS-signed (content attached) by a device identity.
// Real devices sign with an identity from Apple's device CA; this one is
// self-signed, so servers that check the chain must be given it.
func SignMachineInfo(udid, serial, product, version string) ([]byte, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: udid},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	content, err := plist.MarshalIndent(&machineInfo{udid, serial, product, version, "en"}, "\t")
	if err != nil {
		return nil, nil, err
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, nil, err
	}
	signed, err := sd.Finish()
	return signed, cert, err
}

// EnrollADE does what a device does in Setup Assistant with an ADE
// profile: it POSTs its signed MachineInfo to the profile's URL, installs
// the enrollment profile it gets back (SCEP, then Authenticate and
// TokenUpdate), and returns the enrolled device. opts.SerialNumber and
// opts.UDID name the device (random when empty).
func EnrollADE(ctx context.Context, url string, opts EnrollOptions) (*Device, error) {
	if opts.SerialNumber == "" || opts.UDID == "" {
		d := NewDevice(nil, nil)
		if opts.SerialNumber == "" {
			opts.SerialNumber = d.SerialNumber
		}
		if opts.UDID == "" {
			opts.UDID = d.UDID
		}
	}
	body, _, err := SignMachineInfo(opts.UDID, opts.SerialNumber, "iPhone15,2", "22B83")
	if err != nil {
		return nil, err
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/pkcs7-signature")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	profile, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{resp.StatusCode, string(profile)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-apple-aspen-config" {
		return nil, fmt.Errorf("mdmtest: MachineInfo answered with %q, want application/x-apple-aspen-config", ct)
	}
	return enrollProfile(ctx, profile, opts)
}
