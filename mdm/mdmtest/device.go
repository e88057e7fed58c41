// Package mdmtest is the test double of package mdm: a simulated Apple
// device that speaks the MDM protocol to any server, the way net/http/httptest
// serves net/http.
//
// The device sends what Apple's devices send, and only that: check-in
// messages as XML plists PUT to the CheckInURL with Content-Type
// application/x-apple-aspen-mdm-checkin, command reports PUT to the ServerURL
// with application/x-apple-aspen-mdm, User-Agent MDM/1.0 (MDM-OSX/1.0 on a
// Mac), its identity in an Mdm-Signature header or, with SignMessage false,
// as a TLS client certificate; the keys of each message are those Apple's
// schema lists for the device's platform and channel (an iPhone's
// Authenticate has no DeviceName or Model; a User Enrollment names itself by
// EnrollmentID, never by UDID or serial number). A test in this package holds
// every message to the schema, so the device cannot drift towards the habits
// of one server.
package mdmtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
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

// Platforms, as Apple's schema names them. An iPad is iOS.
const (
	PlatformIOS   = "iOS"
	PlatformMacOS = "macOS"
)

// The content types of a device's requests: one for check-in messages
// (Authenticate, TokenUpdate, CheckOut, …) and one for what it sends to the
// ServerURL (Idle and command reports). A server on one URL tells them apart
// by it.
const (
	ContentTypeCheckin = "application/x-apple-aspen-mdm-checkin"
	ContentTypeMDM     = "application/x-apple-aspen-mdm"
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
	// Platform is PlatformIOS (the default) or PlatformMacOS: it decides
	// which keys the device's messages carry and its User-Agent.
	Platform     string
	UDID         string
	SerialNumber string
	// EnrollmentID, when set, makes this a User Enrollment (a personal
	// device): its messages name it by EnrollmentID and carry no UDID,
	// serial number, IMEI or MEID.
	EnrollmentID string
	ProductName  string // the model identifier, e.g. "iPhone15,2"
	Model        string
	ModelName    string
	DeviceName   string
	OSVersion    string
	BuildVersion string
	IMEI, MEID   string // a cellular iPhone's; empty otherwise

	// Cert and Key are the device identity that authenticates every
	// request.
	Cert *x509.Certificate
	Key  crypto.Signer
	// SignMessage is the MDM payload's key of that name: true sends the
	// identity in an Mdm-Signature header (a detached CMS signature of the
	// body); false presents it as the TLS client certificate, which needs
	// an https server that asks for one.
	SignMessage bool

	CheckInURL string
	ServerURL  string
	Topic      string
	HTTPClient *http.Client // http.DefaultClient when nil
	// UserAgent is sent with every request; "MDM/1.0" (iOS) or
	// "MDM-OSX/1.0 mdmclient/1090" (macOS) when empty.
	UserAgent string

	// EnrollmentProfile is the PayloadIdentifier of the profile the device
	// enrolled with: RemoveProfile of it unenrolls the device, which then
	// sends CheckOut when CheckOutWhenRemoved.
	EnrollmentProfile   string
	CheckOutWhenRemoved bool

	// Push details the device reports in TokenUpdate. UnlockToken is sent
	// by iOS devices on the device channel only.
	PushMagic   string
	Token       []byte
	UnlockToken []byte

	// AwaitingConfiguration is true for a device held in Setup Assistant by
	// an ADE profile's await_device_configured: its TokenUpdate says so,
	// and it waits for the DeviceConfigured command, after which it sends
	// TokenUpdate again, no longer awaiting.
	AwaitingConfiguration bool

	// Busy, when set, makes the device answer NotNow to the commands it
	// returns true for, as a locked device does.
	Busy func(*mdm.CommandPayload) bool

	// Observe, when set, is told of every request the device makes: its
	// kind ("Authenticate", "TokenUpdate", "CheckOut", "Idle", "Result",
	// "UserAuthenticate", "DeclarativeManagement"), how long the server
	// took to answer, and any error.
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

	pollMu     sync.Mutex // one command loop at a time, as on a device
	mu         sync.Mutex
	lastBody   []byte // the last body signed, and its signature
	lastSig    string
	tlsClient  *http.Client      // HTTPClient presenting Cert, for SignMessage false
	profiles   map[string][]byte // PayloadIdentifier → profile
	wiped      bool
	removing   bool // the enrollment profile was removed: unenrolled once it says so
	unenrolled bool
	locked     bool
	configured bool // DeviceConfigured arrived: send TokenUpdate again
}

// NewDevice returns an iPhone with a random UDID and serial number and
// realistic details, that signs its messages.
func NewDevice(cert *x509.Certificate, key crypto.Signer) *Device {
	b := make([]byte, 12)
	rand.Read(b)
	return &Device{
		Platform: PlatformIOS,
		UDID:     fmt.Sprintf("00008110-%X", b[:8]), SerialNumber: fmt.Sprintf("F%X", b[8:]),
		ProductName: "iPhone15,2", Model: "MQ9T3LL/A", ModelName: "iPhone", DeviceName: "Test iPhone",
		OSVersion: "18.1", BuildVersion: "22B83",
		Cert: cert, Key: key, SignMessage: true,
		PushMagic: hex.EncodeToString(b), Token: bytes.Repeat(b[:4], 8),
	}
}

// NewMac returns a Mac with a random UDID and serial number and realistic
// details, that signs its messages.
func NewMac(cert *x509.Certificate, key crypto.Signer) *Device {
	d := NewDevice(cert, key)
	b := make([]byte, 16)
	rand.Read(b)
	d.Platform = PlatformMacOS
	d.UDID = fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	d.ProductName, d.Model, d.ModelName, d.DeviceName = "Mac14,2", "Mac14,2", "MacBook Air", "Test Mac"
	d.OSVersion, d.BuildVersion = "15.1", "24B83"
	return d
}

func (d *Device) mac() bool { return d.Platform == PlatformMacOS }

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

// checkin sends a check-in message to the CheckInURL.
func (d *Device) checkin(ctx context.Context, kind string, v any) ([]byte, error) {
	return d.send(ctx, kind, d.checkinURL(), ContentTypeCheckin, v)
}

// report sends Idle or a command report to the ServerURL.
func (d *Device) report(ctx context.Context, kind string, v any) ([]byte, error) {
	return d.send(ctx, kind, d.ServerURL, ContentTypeMDM, v)
}

func (d *Device) send(ctx context.Context, kind, url, contentType string, v any) (out []byte, err error) {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, nil)
	if err != nil {
		return nil, err
	}
	if d.SignMessage {
		sig, err := d.sign(body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Mdm-Signature", sig)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", d.userAgent())
	if d.Tamper != nil {
		body = d.Tamper(req, body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	hc, err := d.client()
	if err != nil {
		return nil, err
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

func (d *Device) userAgent() string {
	switch {
	case d.UserAgent != "":
		return d.UserAgent
	case d.mac():
		return "MDM-OSX/1.0 mdmclient/1090"
	}
	return "MDM/1.0"
}

// client returns the HTTP client requests go through: HTTPClient, or with
// SignMessage false a copy of it that presents the identity as the TLS
// client certificate.
func (d *Device) client() (*http.Client, error) {
	hc := d.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	if d.SignMessage {
		return hc, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tlsClient != nil {
		return d.tlsClient, nil
	}
	if d.Cert == nil || d.Key == nil {
		return nil, errors.New("mdmtest: a device that does not sign its messages needs Cert and Key for TLS")
	}
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return nil, fmt.Errorf("mdmtest: cannot add a client certificate to a %T", hc.Transport)
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{d.Cert.Raw}, PrivateKey: d.Key, Leaf: d.Cert}}
	c := *hc
	c.Transport = tr
	d.tlsClient = &c
	return d.tlsClient, nil
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

// ids are the keys that name the channel a message is on: the device (UDID,
// or EnrollmentID for a User Enrollment) and, on the user channel, the user.
type ids struct {
	UDID             string `plist:"UDID,omitempty"`
	EnrollmentID     string `plist:"EnrollmentID,omitempty"`
	UserID           string `plist:"UserID,omitempty"`
	UserShortName    string `plist:"UserShortName,omitempty"`
	UserLongName     string `plist:"UserLongName,omitempty"`
	EnrollmentUserID string `plist:"EnrollmentUserID,omitempty"`
}

func (d *Device) ids() ids {
	if d.EnrollmentID != "" {
		return ids{EnrollmentID: d.EnrollmentID}
	}
	return ids{UDID: d.UDID}
}

// The check-in messages as the device writes them. Keys that a platform or
// an enrollment type does not send are left empty and omitted.
type (
	authenticateMessage struct {
		MessageType string
		Topic       string
		ids
		BuildVersion string `plist:",omitempty"`
		DeviceName   string `plist:",omitempty"` // macOS only
		IMEI         string `plist:",omitempty"`
		MEID         string `plist:",omitempty"`
		Model        string `plist:",omitempty"` // macOS only
		ModelName    string `plist:",omitempty"` // macOS only
		OSVersion    string `plist:",omitempty"`
		ProductName  string `plist:",omitempty"`
		SerialNumber string `plist:",omitempty"`
	}
	tokenUpdateMessage struct {
		MessageType string
		Topic       string
		ids
		PushMagic             string
		Token                 []byte
		UnlockToken           []byte `plist:",omitempty"`
		AwaitingConfiguration bool   `plist:",omitempty"`
	}
	// The user channel's TokenUpdate says whether the user is at the
	// console, false included.
	userTokenUpdateMessage struct {
		MessageType string
		Topic       string
		ids
		NotOnConsole bool
		PushMagic    string
		Token        []byte
	}
	checkOutMessage struct {
		MessageType string
		Topic       string
		ids
	}
	userAuthenticateMessage struct {
		MessageType    string
		UDID           string
		UserID         string
		DigestResponse string `plist:",omitempty"`
	}
	declarativeManagementMessage struct {
		MessageType string
		ids
		Endpoint string
		Data     []byte `plist:",omitempty"`
	}
)

// Authenticate sends the Authenticate check-in message.
func (d *Device) Authenticate(ctx context.Context) error {
	m := &authenticateMessage{
		MessageType: "Authenticate", Topic: d.Topic, ids: d.ids(),
		BuildVersion: d.BuildVersion, OSVersion: d.OSVersion, ProductName: d.ProductName,
	}
	if d.EnrollmentID == "" {
		m.SerialNumber, m.IMEI, m.MEID = d.SerialNumber, d.IMEI, d.MEID
	}
	if d.mac() {
		m.DeviceName, m.Model, m.ModelName = d.DeviceName, d.Model, d.ModelName
		m.IMEI, m.MEID = "", ""
	}
	_, err := d.checkin(ctx, "Authenticate", m)
	return err
}

// TokenUpdate sends the TokenUpdate check-in message with the device's push
// details.
func (d *Device) TokenUpdate(ctx context.Context) error {
	d.mu.Lock()
	awaiting := d.AwaitingConfiguration
	d.mu.Unlock()
	m := &tokenUpdateMessage{
		MessageType: "TokenUpdate", Topic: d.Topic, ids: d.ids(),
		PushMagic: d.PushMagic, Token: d.Token, AwaitingConfiguration: awaiting,
	}
	if !d.mac() && d.EnrollmentID == "" {
		m.UnlockToken = d.UnlockToken
	}
	_, err := d.checkin(ctx, "TokenUpdate", m)
	return err
}

// CheckOut sends the CheckOut check-in message.
func (d *Device) CheckOut(ctx context.Context) error {
	_, err := d.checkin(ctx, "CheckOut", &checkOutMessage{MessageType: "CheckOut", Topic: d.Topic, ids: d.ids()})
	return err
}

// Poll does what a device does when pushed: it reports Idle, then executes
// and answers each command the server returns until the server answers
// with an empty body. It returns the commands it executed.
func (d *Device) Poll(ctx context.Context) ([]*mdm.CommandPayload, error) {
	done, err := d.poll(ctx, d.ids(), d.execute)
	d.mu.Lock()
	removed, configured := d.removing, d.configured
	d.unenrolled = d.unenrolled || removed
	d.configured = false
	d.mu.Unlock()
	switch {
	case err != nil:
	case removed && d.CheckOutWhenRemoved:
		// The enrollment profile went, and all that MDM installed with
		// it: the device says goodbye if asked to.
		err = d.CheckOut(ctx)
	case configured:
		// Out of Setup Assistant: the device checks in again.
		err = d.TokenUpdate(ctx)
	}
	return done, err
}

// poll is the command loop of one channel.
func (d *Device) poll(ctx context.Context, ch ids, execute func(ids, *mdm.CommandPayload) any) ([]*mdm.CommandPayload, error) {
	d.pollMu.Lock()
	defer d.pollMu.Unlock()
	var done []*mdm.CommandPayload
	idle := &mdm.CommandResult{Status: mdm.StatusIdle}
	setIDs(idle, ch)
	out, err := d.report(ctx, "Idle", idle)
	for err == nil && len(bytes.TrimSpace(out)) > 0 {
		cmd, decodeErr := mdm.DecodeCommand(out)
		var resp any
		switch {
		case decodeErr != nil:
			// A device answers a command it cannot read with
			// CommandFormatError, when it can find the CommandUUID.
			var head struct{ CommandUUID string }
			if plist.Unmarshal(out, &head) != nil || head.CommandUUID == "" {
				return done, fmt.Errorf("mdmtest: server sent an undecodable command: %w", decodeErr)
			}
			r := &mdm.CommandResult{Status: mdm.StatusCommandFormatError, CommandUUID: head.CommandUUID}
			setIDs(r, ch)
			resp = r
		case d.Busy != nil && d.Busy(cmd):
			done = append(done, cmd)
			r := &mdm.CommandResult{Status: mdm.StatusNotNow, CommandUUID: cmd.CommandUUID}
			setIDs(r, ch)
			resp = r
		default:
			done = append(done, cmd)
			resp = execute(ch, cmd)
		}
		out, err = d.report(ctx, "Result", resp)
		if cmd != nil {
			if _, ok := cmd.Command.(*mdm.EraseDevice); ok && err == nil {
				d.mu.Lock()
				d.wiped = true
				d.mu.Unlock()
				return done, nil
			}
		}
		d.mu.Lock()
		removed := d.removing
		d.mu.Unlock()
		if removed {
			return done, err
		}
	}
	return done, err
}

func setIDs(r *mdm.CommandResult, ch ids) {
	r.UDID, r.EnrollmentID, r.UserID, r.UserShortName, r.UserLongName, r.EnrollmentUserID =
		ch.UDID, ch.EnrollmentID, ch.UserID, ch.UserShortName, ch.UserLongName, ch.EnrollmentUserID
}

// execute carries out a command on the device channel and returns the
// response to send.
func (d *Device) execute(ch ids, p *mdm.CommandPayload) any {
	ok := mdm.CommandResult{Status: mdm.StatusAcknowledged, CommandUUID: p.CommandUUID}
	setIDs(&ok, ch)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch c := p.Command.(type) {
	case *mdm.DeviceInformation:
		return &mdm.DeviceInformationResponse{CommandResult: ok, QueryResponses: d.deviceInformation(c.Queries)}
	case *mdm.SecurityInfo:
		yes, no := true, false
		info := mdm.SecurityInfoResponseSecurityInfo{PasscodePresent: &d.locked, PasscodeCompliant: &yes,
			PasscodeCompliantWithProfiles: &yes}
		if d.mac() {
			info.FDEEnabled = &no
		} else {
			info.HardwareEncryptionCaps = intPtr(3)
		}
		return &mdm.SecurityInfoResponse{CommandResult: ok, SecurityInfo: info}
	case *mdm.ProfileList:
		return &mdm.ProfileListResponse{CommandResult: ok, ProfileList: profileList(d.profiles)}
	case *mdm.InstallProfile:
		return installProfile(&d.profiles, ok, c.Payload)
	case *mdm.RemoveProfile:
		if c.Identifier != "" && c.Identifier == d.EnrollmentProfile {
			d.profiles, d.removing = nil, true
			return &ok
		}
		return removeProfile(d.profiles, ok, c.Identifier)
	case *mdm.DeviceLock:
		d.locked = true
		return &mdm.DeviceLockResponse{CommandResult: ok, MessageResult: "Success"}
	case *mdm.DeviceConfigured:
		if !d.AwaitingConfiguration {
			return errorResult(ok, 12070, "MCMDMErrorDomain", "The device is not awaiting configuration.")
		}
		d.AwaitingConfiguration, d.configured = false, true
		return &ok
	case *mdm.EraseDevice:
		return &ok
	}
	return errorResult(ok, 12021, "MCMDMErrorDomain", "Unknown command "+p.Command.RequestType())
}

func profileList(profiles map[string][]byte) []mdm.ProfileListResponseProfileListItem {
	list := []mdm.ProfileListResponseProfileListItem{}
	for id := range profiles {
		list = append(list, mdm.ProfileListResponseProfileListItem{PayloadIdentifier: id, PayloadUUID: id, IsManaged: boolPtr(true)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].PayloadIdentifier < list[j].PayloadIdentifier })
	return list
}

func installProfile(profiles *map[string][]byte, ok mdm.CommandResult, payload []byte) any {
	var prof struct{ PayloadIdentifier string }
	if err := plist.Unmarshal(unwrapSigned(payload), &prof); err != nil || prof.PayloadIdentifier == "" {
		return errorResult(ok, 4001, "MCProfileErrorDomain", "The profile could not be read.")
	}
	if *profiles == nil {
		*profiles = map[string][]byte{}
	}
	(*profiles)[prof.PayloadIdentifier] = payload
	return &ok
}

func removeProfile(profiles map[string][]byte, ok mdm.CommandResult, id string) any {
	if _, found := profiles[id]; !found {
		return errorResult(ok, 89, "MDMErrorDomain", "The profile is not installed.")
	}
	delete(profiles, id)
	return &ok
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
	if d.EnrollmentID == "" {
		set("UDID", func() { q.UDID = d.UDID })
		set("SerialNumber", func() { q.SerialNumber = d.SerialNumber })
	}
	set("DeviceName", func() { q.DeviceName = d.DeviceName })
	set("Model", func() { q.Model = d.Model })
	set("ModelName", func() { q.ModelName = d.ModelName })
	set("ProductName", func() { q.ProductName = d.ProductName })
	set("OSVersion", func() { q.OSVersion = d.OSVersion })
	set("BuildVersion", func() { q.BuildVersion = d.BuildVersion })
	set("IsSupervised", func() { q.IsSupervised = boolPtr(false) })
	if !d.mac() {
		set("BatteryLevel", func() { q.BatteryLevel = floatPtr(0.87) })
	}
	set("AwaitingConfiguration", func() { q.AwaitingConfiguration = boolPtr(d.AwaitingConfiguration) })
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
		Platform: d.Platform, UDID: d.UDID, SerialNumber: d.SerialNumber, EnrollmentID: d.EnrollmentID,
		ProductName: d.ProductName, Model: d.Model, ModelName: d.ModelName, DeviceName: d.DeviceName,
		OSVersion: d.OSVersion, BuildVersion: d.BuildVersion, IMEI: d.IMEI, MEID: d.MEID,
		Cert: d.Cert, Key: d.Key, SignMessage: d.SignMessage,
		CheckInURL: d.CheckInURL, ServerURL: d.ServerURL, Topic: d.Topic, HTTPClient: d.HTTPClient, UserAgent: d.UserAgent,
		EnrollmentProfile: d.EnrollmentProfile, CheckOutWhenRemoved: d.CheckOutWhenRemoved,
		PushMagic: d.PushMagic, Token: d.Token, UnlockToken: d.UnlockToken, AwaitingConfiguration: d.AwaitingConfiguration,
		Busy: d.Busy, Tamper: d.Tamper, Observe: d.Observe, ReuseSignatures: d.ReuseSignatures,
	}
}

// DeclarativeManagement sends a DeclarativeManagement check-in for an
// endpoint ("tokens", "declaration-items", "status", ...) with an optional
// JSON body, and returns the server's answer.
func (d *Device) DeclarativeManagement(ctx context.Context, endpoint string, data []byte) ([]byte, error) {
	return d.checkin(ctx, "DeclarativeManagement", &declarativeManagementMessage{
		MessageType: "DeclarativeManagement", ids: d.ids(), Endpoint: endpoint, Data: data})
}
