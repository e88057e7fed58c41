// Package mdmtest is the test double of package mdm: a simulated Apple
// device that speaks the MDM protocol to any server, the way net/http/httptest
// serves net/http.
package mdmtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/custodymdm/custody/mdm"
)

// ErrWiped is returned by a device that has executed EraseDevice: it no
// longer talks to its server.
var ErrWiped = errors.New("mdmtest: device has been erased")

// ErrUnenrolled is returned by a device whose MDM enrollment profile has
// been removed: it no longer talks to its server.
var ErrUnenrolled = errors.New("mdmtest: device is no longer enrolled")

// A Device is a simulated Apple device enrolled in an MDM server. Set its
// identity (Cert, Key) and URLs, then Authenticate, TokenUpdate and Poll.
type Device struct {
	UDID         string
	SerialNumber string
	Model        string
	ModelName    string
	DeviceName   string
	OSVersion    string
	BuildVersion string

	// Cert and Key are the device identity that signs every request.
	Cert *x509.Certificate
	Key  crypto.Signer

	CheckInURL string
	ServerURL  string
	Topic      string
	HTTPClient *http.Client // http.DefaultClient when nil

	// EnrollmentProfile is the PayloadIdentifier of the profile the device
	// enrolled with: RemoveProfile of it unenrolls the device, which then
	// sends CheckOut when CheckOutWhenRemoved.
	EnrollmentProfile   string
	CheckOutWhenRemoved bool

	// Push details the device reports in TokenUpdate.
	PushMagic string
	Token     []byte

	// Busy, when set, makes the device answer NotNow to the commands it
	// returns true for, as a locked device does.
	Busy func(*mdm.CommandPayload) bool

	// Observe, when set, is told of every request the device makes: its
	// kind ("Authenticate", "TokenUpdate", "CheckOut", "Idle", "Result"),
	// how long the server took to answer, and any error.
	Observe func(kind string, took time.Duration, err error)

	// Tamper, when set, may change each request before it is sent, for
	// tests of a server's defences (a replayed body, another device's
	// signature, garbage).
	Tamper func(r *http.Request, body []byte) []byte

	// ReuseSignatures, when set, makes the device sign each distinct body
	// once and send a repeated body (its idle check-ins) with the signature
	// it already made. The server sees a valid Mdm-Signature either way
	// (Apple's protocol gives it no nonce to check), and a load generator
	// saves an RSA signature per idle check-in, so that it measures the
	// server rather than itself.
	ReuseSignatures bool

	mu         sync.Mutex
	lastBody   []byte // the last body signed, and its signature
	lastSig    string
	profiles   map[string][]byte // PayloadIdentifier → profile
	wiped      bool
	removing   bool // the enrollment profile was removed: unenrolled once it says so
	unenrolled bool
	locked     bool
}

// NewDevice returns a device with a random UDID and serial number and
// realistic iPhone details.
func NewDevice(cert *x509.Certificate, key crypto.Signer) *Device {
	b := make([]byte, 12)
	rand.Read(b)
	return &Device{
		UDID: fmt.Sprintf("00008110-%X", b[:8]), SerialNumber: fmt.Sprintf("F%X", b[8:]),
		Model: "iPhone15,2", ModelName: "iPhone", DeviceName: "Test iPhone", OSVersion: "18.1", BuildVersion: "22B83",
		Cert: cert, Key: key,
		PushMagic: hex.EncodeToString(b), Token: bytes.Repeat(b[:4], 8),
	}
}

// Wiped reports whether the device has executed EraseDevice.
func (d *Device) Wiped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wiped
}

// Unenrolled reports whether the device's enrollment profile has been
// removed.
func (d *Device) Unenrolled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unenrolled
}

// Profiles returns the identifiers of the profiles installed by MDM.
func (d *Device) Profiles() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for id := range d.profiles {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// An HTTPError is a server's non-200 answer.
type HTTPError struct {
	StatusCode int
	Body       string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("mdmtest: server answered %d: %s", e.StatusCode, e.Body)
}

func (d *Device) send(ctx context.Context, kind, url string, v any) (out []byte, err error) {
	if d.Wiped() {
		return nil, ErrWiped
	}
	if d.Unenrolled() && kind != "CheckOut" {
		return nil, ErrUnenrolled
	}
	body, err := plist.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig, err := d.sign(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Mdm-Signature", sig)
	req.Header.Set("Content-Type", "application/x-apple-aspen-mdm")
	if d.Tamper != nil {
		body = d.Tamper(req, body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	hc := d.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	if d.Observe != nil {
		start := time.Now()
		defer func() { d.Observe(kind, time.Since(start), err) }()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, &HTTPError{resp.StatusCode, string(bytes.TrimSpace(out))}
	}
	return out, nil
}

func (d *Device) sign(body []byte) (string, error) {
	if d.ReuseSignatures {
		d.mu.Lock()
		sig := d.lastSig
		if !bytes.Equal(body, d.lastBody) {
			sig = ""
		}
		d.mu.Unlock()
		if sig != "" {
			return sig, nil
		}
	}
	sig, err := mdm.Sign(body, d.Cert, d.Key)
	if err == nil && d.ReuseSignatures {
		d.mu.Lock()
		d.lastBody, d.lastSig = body, sig
		d.mu.Unlock()
	}
	return sig, err
}

func (d *Device) checkinURL() string {
	if d.CheckInURL != "" {
		return d.CheckInURL
	}
	return d.ServerURL
}

// Authenticate sends the Authenticate check-in message.
func (d *Device) Authenticate(ctx context.Context) error {
	_, err := d.send(ctx, "Authenticate", d.checkinURL(), struct {
		MessageType string
		*mdm.Authenticate
	}{"Authenticate", &mdm.Authenticate{
		UDID: d.UDID, SerialNumber: d.SerialNumber, Model: d.Model, ModelName: d.ModelName,
		DeviceName: d.DeviceName, OSVersion: d.OSVersion, BuildVersion: d.BuildVersion,
		ProductName: d.Model, Topic: d.Topic,
	}})
	return err
}

// TokenUpdate sends the TokenUpdate check-in message with the device's push
// details.
func (d *Device) TokenUpdate(ctx context.Context) error {
	_, err := d.send(ctx, "TokenUpdate", d.checkinURL(), struct {
		MessageType string
		*mdm.TokenUpdate
	}{"TokenUpdate", &mdm.TokenUpdate{UDID: d.UDID, Topic: d.Topic, PushMagic: d.PushMagic, Token: d.Token}})
	return err
}

// CheckOut sends the CheckOut check-in message.
func (d *Device) CheckOut(ctx context.Context) error {
	_, err := d.send(ctx, "CheckOut", d.checkinURL(), struct {
		MessageType string
		*mdm.CheckOut
	}{"CheckOut", &mdm.CheckOut{UDID: d.UDID, Topic: d.Topic}})
	return err
}

// Poll does what a device does when pushed: it reports Idle, then executes
// and answers each command the server returns until the server has none.
// It returns the commands it executed.
func (d *Device) Poll(ctx context.Context) ([]*mdm.CommandPayload, error) {
	var done []*mdm.CommandPayload
	out, err := d.send(ctx, "Idle", d.ServerURL, &mdm.CommandResult{Status: mdm.StatusIdle, UDID: d.UDID})
	for err == nil && len(bytes.TrimSpace(out)) > 0 {
		var cmd *mdm.CommandPayload
		cmd, err = mdm.DecodeCommand(out)
		if err != nil {
			return done, fmt.Errorf("mdmtest: server sent an undecodable command: %w", err)
		}
		done = append(done, cmd)
		var resp any
		if d.Busy != nil && d.Busy(cmd) {
			resp = &mdm.CommandResult{Status: mdm.StatusNotNow, UDID: d.UDID, CommandUUID: cmd.CommandUUID}
		} else {
			resp = d.execute(cmd)
		}
		out, err = d.send(ctx, "Result", d.ServerURL, resp)
		if _, ok := cmd.Command.(*mdm.EraseDevice); ok && err == nil {
			d.mu.Lock()
			d.wiped = true
			d.mu.Unlock()
			return done, nil
		}
		d.mu.Lock()
		removed := d.removing
		d.unenrolled = d.unenrolled || removed
		d.mu.Unlock()
		if removed {
			// The enrollment profile went, and all that MDM installed
			// with it: the device says goodbye if asked to.
			if err == nil && d.CheckOutWhenRemoved {
				err = d.CheckOut(ctx)
			}
			return done, err
		}
	}
	return done, err
}

// execute carries out a command and returns the response to send.
func (d *Device) execute(p *mdm.CommandPayload) any {
	ok := mdm.CommandResult{Status: mdm.StatusAcknowledged, UDID: d.UDID, CommandUUID: p.CommandUUID}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch c := p.Command.(type) {
	case *mdm.DeviceInformation:
		return &mdm.DeviceInformationResponse{CommandResult: ok, QueryResponses: d.deviceInformation(c.Queries)}
	case *mdm.SecurityInfo:
		yes, no := true, false
		return &mdm.SecurityInfoResponse{CommandResult: ok, SecurityInfo: mdm.SecurityInfoResponseSecurityInfo{
			HardwareEncryptionCaps: intPtr(3), PasscodePresent: &d.locked, PasscodeCompliant: &yes,
			PasscodeCompliantWithProfiles: &yes, FDEEnabled: &no,
		}}
	case *mdm.ProfileList:
		var list []mdm.ProfileListResponseProfileListItem
		for id := range d.profiles {
			list = append(list, mdm.ProfileListResponseProfileListItem{PayloadIdentifier: id, PayloadUUID: id, IsManaged: boolPtr(true)})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].PayloadIdentifier < list[j].PayloadIdentifier })
		return &mdm.ProfileListResponse{CommandResult: ok, ProfileList: list}
	case *mdm.InstallProfile:
		var prof struct{ PayloadIdentifier string }
		if err := plist.Unmarshal(unwrapSigned(c.Payload), &prof); err != nil || prof.PayloadIdentifier == "" {
			return errorResult(ok, 4001, "MCProfileErrorDomain", "The profile could not be read.")
		}
		if d.profiles == nil {
			d.profiles = map[string][]byte{}
		}
		d.profiles[prof.PayloadIdentifier] = c.Payload
		return &ok
	case *mdm.RemoveProfile:
		if c.Identifier != "" && c.Identifier == d.EnrollmentProfile {
			d.profiles, d.removing = nil, true
			return &ok
		}
		if _, found := d.profiles[c.Identifier]; !found {
			return errorResult(ok, 89, "MDMErrorDomain", "The profile is not installed.")
		}
		delete(d.profiles, c.Identifier)
		return &ok
	case *mdm.DeviceLock:
		d.locked = true
		return &mdm.DeviceLockResponse{CommandResult: ok, MessageResult: "Success"}
	case *mdm.EraseDevice:
		return &ok
	}
	return errorResult(ok, 12021, "MCMDMErrorDomain", "Unknown command "+p.Command.RequestType())
}

func (d *Device) deviceInformation(queries []string) mdm.DeviceInformationResponseQueryResponses {
	var q mdm.DeviceInformationResponseQueryResponses
	want := map[string]bool{}
	for _, k := range queries {
		want[k] = true
	}
	all := len(queries) == 0
	set := func(key string, f func()) {
		if all || want[key] {
			f()
		}
	}
	set("UDID", func() { q.UDID = d.UDID })
	set("SerialNumber", func() { q.SerialNumber = d.SerialNumber })
	set("DeviceName", func() { q.DeviceName = d.DeviceName })
	set("Model", func() { q.Model = d.Model })
	set("ModelName", func() { q.ModelName = d.ModelName })
	set("OSVersion", func() { q.OSVersion = d.OSVersion })
	set("BuildVersion", func() { q.BuildVersion = d.BuildVersion })
	set("IsSupervised", func() { q.IsSupervised = boolPtr(false) })
	set("BatteryLevel", func() { q.BatteryLevel = floatPtr(0.87) })
	return q
}

func errorResult(r mdm.CommandResult, code int, domain, text string) *mdm.CommandResult {
	r.Status = mdm.StatusError
	r.ErrorChain = []mdm.ErrorChainItem{{ErrorCode: code, ErrorDomain: domain, LocalizedDescription: text, USEnglishDescription: text}}
	return &r
}

func boolPtr(b bool) *bool        { return &b }
func intPtr(i int) *int           { return &i }
func floatPtr(f float64) *float64 { return &f }

// unwrapSigned returns the content of a CMS-signed profile, or the profile
// itself if it is not signed.
func unwrapSigned(profile []byte) []byte {
	if p7, err := pkcs7.Parse(profile); err == nil && len(p7.Content) > 0 {
		return p7.Content
	}
	return profile
}

// Clone returns a device with d's identity, URLs and settings but none of
// its state (profiles, wiped), for tests that make one device misbehave.
func (d *Device) Clone() *Device {
	return &Device{
		UDID: d.UDID, SerialNumber: d.SerialNumber, Model: d.Model, ModelName: d.ModelName,
		DeviceName: d.DeviceName, OSVersion: d.OSVersion, BuildVersion: d.BuildVersion,
		Cert: d.Cert, Key: d.Key, CheckInURL: d.CheckInURL, ServerURL: d.ServerURL, Topic: d.Topic,
		HTTPClient: d.HTTPClient, PushMagic: d.PushMagic, Token: d.Token, Busy: d.Busy, Tamper: d.Tamper, Observe: d.Observe,
		ReuseSignatures: d.ReuseSignatures,
	}
}

// DeclarativeManagement sends a DeclarativeManagement check-in for an
// endpoint ("tokens", "declaration-items", "status", ...) with an optional
// JSON body, and returns the server's answer.
func (d *Device) DeclarativeManagement(ctx context.Context, endpoint string, data []byte) ([]byte, error) {
	return d.send(ctx, "DeclarativeManagement", d.checkinURL(), struct {
		MessageType string
		*mdm.DeclarativeManagement
	}{"DeclarativeManagement", &mdm.DeclarativeManagement{UDID: d.UDID, Endpoint: endpoint, Data: data}})
}
