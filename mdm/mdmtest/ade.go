package mdmtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
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

// appleDeviceCA is a stand-in for Apple's iPhone Device CA: RSA, expired
// since 2014 like the real one, made once per process.
var appleDeviceCA = sync.OnceValues(func() (*deviceCA, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Apple iPhone Device CA (mdmtest)", Organization: []string{"Apple Inc."}},
		NotBefore: time.Date(2007, 4, 16, 22, 54, 46, 0, time.UTC), NotAfter: time.Date(2014, 4, 16, 22, 54, 46, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return &deviceCA{cert, key}, err
})

type deviceCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

// AppleDeviceCA returns the CA that signs simulated devices' MachineInfo
// identities, for servers that check the chain (Apple Inc. Root in
// production).
func AppleDeviceCA() (*x509.Certificate, error) {
	ca, err := appleDeviceCA()
	if err != nil {
		return nil, err
	}
	return ca.cert, nil
}

// SignMachineInfo returns the MachineInfo of a device as Setup Assistant
// sends it: the plist, inside a CMS SignedData signed with SHA-1 and RSA by
// a device identity that, like real ones, was issued by an iPhone Device
// CA that has long expired (AppleDeviceCA).
func SignMachineInfo(udid, serial, product, version string) ([]byte, error) {
	dca, err := appleDeviceCA()
	if err != nil {
		return nil, err
	}
	ca, caKey := dca.cert, dca.key
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: udid},
		NotBefore: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2013, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	content, err := plist.MarshalIndent(&machineInfo{udid, serial, product, version, "en"}, "\t")
	if err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSignerChain(cert, key, []*x509.Certificate{ca}, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	return sd.Finish()
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
	product, version := "iPhone15,2", "22B83"
	if opts.Platform == PlatformMacOS {
		product, version = "Mac14,2", "24B83"
	}
	body, err := SignMachineInfo(opts.UDID, opts.SerialNumber, product, version)
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
