package zerotouchtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
)

// DeviceInfo is the hardware of a simulated Android device.
type DeviceInfo struct {
	Serial       string
	IMEI         string
	Model        string // "Pixel 8" when empty
	Manufacturer string // "Google" when empty
}

// A Device is a simulated Android device managed through the fake.
type Device struct {
	srv *Server
	ent *enterprise

	Name      string // enterprises/E/devices/D
	Info      DeviceInfo
	token     *am.EnrollmentToken
	ownership string // COMPANY_OWNED or PERSONALLY_OWNED
	mode      string // DEVICE_OWNER or PROFILE_OWNER
	enrolled  time.Time
	reported  time.Time

	pending             []pendingCommand
	locked, lost        bool
	password            string
	reboots             int
	deleted, wiped      bool
	wipeFlags           []string
	wipeReason          string
	profileRemoved      bool
	executed            []string
	enrollmentTokenData string
	policyName          string // set by a patch; the token's policy until then
}

type pendingCommand struct {
	op  string
	cmd am.Command
}

// ErrWiped is returned by a device that has been wiped (or lost its work
// profile) and is no longer managed.
var ErrWiped = errors.New("zerotouchtest: the device was wiped")

// notification is a Pub/Sub message to push once the lock is released.
type notification struct {
	kind string
	data any
}

// ScanQR is a factory-new device whose user taps the welcome screen six
// times and scans a provisioning QR code: it reads the enrollment token
// from the payload and enrols as a company-owned, fully managed device.
func (s *Server) ScanQR(payload []byte, info DeviceInfo) (*Device, error) {
	var p struct {
		Component string            `json:"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME"`
		Checksum  string            `json:"android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM"`
		Download  string            `json:"android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION"`
		Extras    map[string]string `json:"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("zerotouchtest: the QR code is not provisioning JSON: %w", err)
	}
	if p.Component != "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver" ||
		p.Checksum != "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg" || !strings.HasPrefix(p.Download, "https://play.google.com/managed/downloadManagingApp") {
		return nil, errors.New("zerotouchtest: the QR code does not name Android Device Policy (CloudDPC) with its checksum and download location")
	}
	return s.enrol(p.Extras["com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN"], info, false)
}

// OpenLink is a personal device whose user opens an enrollment link
// (https://enterprise.google.com/android/enroll?et=TOKEN): it gets a work
// profile.
func (s *Server) OpenLink(link string, info DeviceInfo) (*Device, error) {
	token, ok := strings.CutPrefix(link, "https://enterprise.google.com/android/enroll?et=")
	if !ok {
		return nil, fmt.Errorf("zerotouchtest: %q is not an enrollment link", link)
	}
	return s.enrol(token, info, true)
}

// enrol enrols a device with a token value.
func (s *Server) enrol(value string, info DeviceInfo, personal bool) (*Device, error) {
	s.mu.Lock()
	d, err := s.enrolLocked(value, info, personal)
	var push []notification
	if err == nil {
		push = []notification{{"ENROLLMENT", d.state()}}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return d, s.push(push)
}

func (s *Server) enrolLocked(value string, info DeviceInfo, personal bool) (*Device, error) {
	var ent *enterprise
	var t *am.EnrollmentToken
	for _, e := range s.enterprises {
		if tok := e.tokens[value]; tok != nil {
			ent, t = e, tok
		}
	}
	if t == nil {
		return nil, fmt.Errorf("zerotouchtest: enrollment token %q is not valid", value)
	}
	if exp, err := time.Parse(time.RFC3339Nano, t.ExpirationTimestamp); err == nil && time.Now().After(exp) {
		return nil, fmt.Errorf("zerotouchtest: enrollment token %q has expired", value)
	}
	if personal && t.AllowPersonalUsage == "PERSONAL_USAGE_DISALLOWED" {
		return nil, errors.New("zerotouchtest: this token is for company-owned devices only")
	}
	if info.Model == "" {
		info.Model = "Pixel 8"
	}
	if info.Manufacturer == "" {
		info.Manufacturer = "Google"
	}
	d := &Device{srv: s, ent: ent, Name: ent.e.Name + "/devices/" + s.id(""), Info: info, token: t,
		ownership: "COMPANY_OWNED", mode: "DEVICE_OWNER", enrolled: time.Now().UTC(), enrollmentTokenData: t.AdditionalData}
	if personal {
		d.ownership, d.mode = "PERSONALLY_OWNED", "PROFILE_OWNER"
	}
	d.reported = d.enrolled
	ent.devices[d.Name] = d
	if t.OneTimeOnly {
		delete(ent.tokens, value)
	}
	return d, nil
}

// state is the device as the API returns it.
func (d *Device) state() *am.Device {
	st := "ACTIVE"
	if d.lost {
		st = "LOST"
	}
	if d.deleted {
		st = "DELETED"
	}
	policy := d.token.PolicyName
	if d.policyName != "" {
		policy = d.policyName
	}
	return &am.Device{
		Name: d.Name, State: st, AppliedState: st, Ownership: d.ownership, ManagementMode: d.mode,
		PolicyName: policy, AppliedPolicyName: policy,
		EnrollmentTokenName: d.token.Name, EnrollmentTokenData: d.enrollmentTokenData,
		EnrollmentTime: d.enrolled.Format(time.RFC3339Nano), LastStatusReportTime: d.reported.Format(time.RFC3339Nano),
		HardwareInfo: &am.HardwareInfo{SerialNumber: d.Info.Serial, Model: d.Info.Model, Manufacturer: d.Info.Manufacturer, Brand: d.Info.Manufacturer},
		NetworkInfo:  &am.NetworkInfo{Imei: d.Info.IMEI},
		SoftwareInfo: &am.SoftwareInfo{AndroidVersion: "15"},
	}
}

// Poll is the device checking in: it runs its pending commands, reports
// its status, and returns the types of the commands it ran. A deleted
// device wipes itself (or removes its work profile) and returns ErrWiped.
func (d *Device) Poll() ([]string, error) {
	s := d.srv
	s.mu.Lock()
	if d.deleted {
		d.wiped = d.ownership == "COMPANY_OWNED"
		d.profileRemoved = !d.wiped
		s.mu.Unlock()
		return nil, ErrWiped
	}
	var ran []string
	var push []notification
	for _, pc := range d.pending {
		op := d.ent.ops[pc.op]
		errCode := d.execute(pc.cmd)
		op.Done = true
		meta := map[string]any{"@type": "type.googleapis.com/google.android.devicemanagement.v1.Command", "type": pc.cmd.Type, "createTime": pc.cmd.CreateTime}
		if errCode != "" {
			meta["errorCode"] = errCode
			op.Error = &am.Status{Code: 9, Message: "the device refused the command: " + errCode}
		}
		op.Metadata, _ = json.Marshal(meta)
		ran = append(ran, pc.cmd.Type)
		d.executed = append(d.executed, pc.cmd.Type)
		push = append(push, notification{"COMMAND", op})
	}
	d.pending = nil
	d.reported = time.Now().UTC()
	push = append(push, notification{"STATUS_REPORT", d.state()})
	s.mu.Unlock()
	return ran, s.push(push)
}

// execute runs a command and returns its error code, or "".
func (d *Device) execute(c am.Command) string {
	fullyManaged := d.mode == "DEVICE_OWNER"
	switch c.Type {
	case "LOCK":
		d.locked = true
	case "RESET_PASSWORD":
		d.password = c.NewPassword
		if slicesContains(c.ResetPasswordFlags, "LOCK_NOW") {
			d.locked = true
		}
	case "REBOOT":
		if !fullyManaged {
			return "MANAGEMENT_MODE"
		}
		d.reboots++
	case "START_LOST_MODE":
		if !fullyManaged {
			return "MANAGEMENT_MODE"
		}
		d.lost = true
	case "STOP_LOST_MODE":
		d.lost = false
	case "RELINQUISH_OWNERSHIP":
		d.deleted = true
	default:
		return "UNSUPPORTED"
	}
	return ""
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Locked reports whether the device was locked by a command.
func (d *Device) Locked() bool { d.srv.mu.Lock(); defer d.srv.mu.Unlock(); return d.locked }

// Lost reports whether the device is in lost mode.
func (d *Device) Lost() bool { d.srv.mu.Lock(); defer d.srv.mu.Unlock(); return d.lost }

// Wiped reports whether the device factory-reset itself after being
// deleted; WorkProfileRemoved whether a personal one removed its work
// profile.
func (d *Device) Wiped() bool { d.srv.mu.Lock(); defer d.srv.mu.Unlock(); return d.wiped }

// WorkProfileRemoved: see Wiped.
func (d *Device) WorkProfileRemoved() bool {
	d.srv.mu.Lock()
	defer d.srv.mu.Unlock()
	return d.profileRemoved
}

// WipeFlags returns the wipe flags and reason the device was deleted with.
func (d *Device) WipeFlags() ([]string, string) {
	d.srv.mu.Lock()
	defer d.srv.mu.Unlock()
	return append([]string(nil), d.wipeFlags...), d.wipeReason
}

// PolicyName returns the policy the device applies.
func (d *Device) PolicyName() string {
	d.srv.mu.Lock()
	defer d.srv.mu.Unlock()
	return d.state().PolicyName
}

// Password returns the password a RESET_PASSWORD set.
func (d *Device) Password() string { d.srv.mu.Lock(); defer d.srv.mu.Unlock(); return d.password }

// push posts notifications to PushURL as a Pub/Sub push subscription does.
func (s *Server) push(ns []notification) error {
	s.mu.Lock()
	url := s.PushURL
	s.mu.Unlock()
	if url == "" {
		return nil
	}
	for _, n := range ns {
		data, _ := json.Marshal(n.data)
		env := map[string]any{
			"message": map[string]any{
				"data":        base64.StdEncoding.EncodeToString(data),
				"attributes":  map[string]string{"notificationType": n.kind},
				"messageId":   fmt.Sprint(time.Now().UnixNano()),
				"publishTime": time.Now().UTC().Format(time.RFC3339Nano),
			},
			"subscription": "projects/custody-test/subscriptions/amapi",
		}
		body, _ := json.Marshal(env)
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("zerotouchtest: push %s: %w", n.kind, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("zerotouchtest: push %s: HTTP %d", n.kind, resp.StatusCode)
		}
	}
	return nil
}
