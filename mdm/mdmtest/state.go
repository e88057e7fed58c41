package mdmtest

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
)

// A DeviceState is what a simulated device keeps across runs: its
// identity, its enrollment (URLs, topic, push details) and what MDM did to
// it, as JSON. A load generator saves its fleet with State and reconnects
// the same devices later with FromState, without enrolling them again.
type DeviceState struct {
	Platform     string `json:"platform"`
	UDID         string `json:"udid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	EnrollmentID string `json:"enrollment_id,omitempty"`
	ProductName  string `json:"product_name,omitempty"`
	Model        string `json:"model,omitempty"`
	ModelName    string `json:"model_name,omitempty"`
	DeviceName   string `json:"device_name,omitempty"`
	OSVersion    string `json:"os_version,omitempty"`
	BuildVersion string `json:"build_version,omitempty"`
	IMEI         string `json:"imei,omitempty"`
	MEID         string `json:"meid,omitempty"`

	CertPEM     string `json:"cert_pem"`
	KeyPEM      string `json:"key_pem"` // PKCS #8
	SignMessage bool   `json:"sign_message"`

	CheckInURL          string `json:"checkin_url,omitempty"`
	ServerURL           string `json:"server_url"`
	Topic               string `json:"topic"`
	EnrollmentProfile   string `json:"enrollment_profile,omitempty"`
	CheckOutWhenRemoved bool   `json:"checkout_when_removed,omitempty"`
	PushMagic           string `json:"push_magic"`
	Token               []byte `json:"token"`
	UnlockToken         []byte `json:"unlock_token,omitempty"`

	AwaitingConfiguration bool              `json:"awaiting_configuration,omitempty"`
	Profiles              map[string][]byte `json:"profiles,omitempty"`
	Locked                bool              `json:"locked,omitempty"`
	Wiped                 bool              `json:"wiped,omitempty"`
	Unenrolled            bool              `json:"unenrolled,omitempty"`
}

// State returns what the device would keep across a restart.
func (d *Device) State() (*DeviceState, error) {
	if d.Cert == nil || d.Key == nil {
		return nil, errors.New("mdmtest: a device without an identity has no state to keep")
	}
	key, err := x509.MarshalPKCS8PrivateKey(d.Key)
	if err != nil {
		return nil, fmt.Errorf("mdmtest: device key: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return &DeviceState{
		Platform: d.Platform, UDID: d.UDID, SerialNumber: d.SerialNumber, EnrollmentID: d.EnrollmentID,
		ProductName: d.ProductName, Model: d.Model, ModelName: d.ModelName, DeviceName: d.DeviceName,
		OSVersion: d.OSVersion, BuildVersion: d.BuildVersion, IMEI: d.IMEI, MEID: d.MEID,
		CertPEM:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Cert.Raw})),
		KeyPEM:      string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})),
		SignMessage: d.SignMessage,
		CheckInURL:  d.CheckInURL, ServerURL: d.ServerURL, Topic: d.Topic,
		EnrollmentProfile: d.EnrollmentProfile, CheckOutWhenRemoved: d.CheckOutWhenRemoved,
		PushMagic: d.PushMagic, Token: d.Token, UnlockToken: d.UnlockToken,
		AwaitingConfiguration: d.AwaitingConfiguration, Profiles: maps.Clone(d.profiles),
		Locked: d.locked, Wiped: d.wiped, Unenrolled: d.unenrolled || d.removing,
	}, nil
}

// FromState returns the device a DeviceState describes.
func FromState(s *DeviceState) (*Device, error) {
	certBlock, _ := pem.Decode([]byte(s.CertPEM))
	keyBlock, _ := pem.Decode([]byte(s.KeyPEM))
	if certBlock == nil || keyBlock == nil {
		return nil, errors.New("mdmtest: device state lacks its certificate or key")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mdmtest: device state certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mdmtest: device state key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("mdmtest: device state key is a %T", k)
	}
	if s.ServerURL == "" || s.UDID == "" && s.EnrollmentID == "" {
		return nil, errors.New("mdmtest: device state lacks its ServerURL, or both UDID and EnrollmentID")
	}
	return &Device{
		Platform: s.Platform, UDID: s.UDID, SerialNumber: s.SerialNumber, EnrollmentID: s.EnrollmentID,
		ProductName: s.ProductName, Model: s.Model, ModelName: s.ModelName, DeviceName: s.DeviceName,
		OSVersion: s.OSVersion, BuildVersion: s.BuildVersion, IMEI: s.IMEI, MEID: s.MEID,
		Cert: cert, Key: key, SignMessage: s.SignMessage,
		CheckInURL: s.CheckInURL, ServerURL: s.ServerURL, Topic: s.Topic,
		EnrollmentProfile: s.EnrollmentProfile, CheckOutWhenRemoved: s.CheckOutWhenRemoved,
		PushMagic: s.PushMagic, Token: s.Token, UnlockToken: s.UnlockToken,
		AwaitingConfiguration: s.AwaitingConfiguration,
		profiles:              maps.Clone(s.Profiles), locked: s.Locked, wiped: s.Wiped, unenrolled: s.Unenrolled,
	}, nil
}
