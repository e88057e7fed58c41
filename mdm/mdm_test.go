package mdm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/micromdm/plist"
)

// Every command of the schema marshals from its zero value (no nil field
// without omitempty makes the encoder panic), carries its RequestType, and
// decodes back into its own type.
func TestEveryCommandRoundTrips(t *testing.T) {
	types := RequestTypes()
	if len(types) < 60 {
		t.Fatalf("%d command types generated, want every command of the schema", len(types))
	}
	for _, rt := range types {
		c := newCommand(rt)
		raw, err := MarshalCommand("uuid-"+rt, c)
		if err != nil {
			t.Errorf("%s: MarshalCommand: %v", rt, err)
			continue
		}
		if !bytes.Contains(raw, []byte("<key>RequestType</key><string>"+rt+"</string>")) {
			t.Errorf("%s: payload lacks its RequestType:\n%s", rt, raw)
		}
		p, err := DecodeCommand(raw)
		if err != nil {
			t.Errorf("%s: DecodeCommand: %v", rt, err)
			continue
		}
		if p.CommandUUID != "uuid-"+rt || p.Command.RequestType() != rt {
			t.Errorf("%s: decoded %q %T", rt, p.CommandUUID, p.Command)
		}
		if _, raw := p.Command.(*RawCommand); raw {
			t.Errorf("%s decoded as a RawCommand", rt)
		}
		if newCommandResponse(rt) == nil {
			t.Errorf("%s has no response type", rt)
		}
	}
}

// The bytes on the wire for a DeviceLock, as a device reads them. Keys are
// sorted, as Apple's own tools write them.
func TestDeviceLockWire(t *testing.T) {
	raw, err := MarshalCommand("0C3A5B4E-1F2A-4C6B-9D8E-7F6A5B4C3D2E", &DeviceLock{Message: "Call IT", PIN: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	want := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>Command</key><dict><key>Message</key><string>Call IT</string><key>PIN</key><string>123456</string><key>RequestType</key><string>DeviceLock</string></dict><key>CommandUUID</key><string>0C3A5B4E-1F2A-4C6B-9D8E-7F6A5B4C3D2E</string></dict></plist>`
	if strings.TrimSpace(string(raw)) != want {
		t.Errorf("DeviceLock payload:\n%s\nwant:\n%s", raw, want)
	}
}

// An optional false is sent, not dropped: a server that says
// PreserveDataPlan false means it.
func TestOptionalFalseIsSent(t *testing.T) {
	no := false
	raw, err := MarshalCommand("u", &EraseDevice{PreserveDataPlan: &no})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("<key>PreserveDataPlan</key><false/>")) {
		t.Errorf("PreserveDataPlan false not sent:\n%s", raw)
	}
	if bytes.Contains(raw, []byte("DisallowProximitySetup")) {
		t.Errorf("unset optional key sent:\n%s", raw)
	}
}

func TestSettingsItems(t *testing.T) {
	raw, err := MarshalCommand("u", &Settings{Settings: []SettingsItem{
		&SettingsBluetooth{Enabled: true},
		&SettingsDeviceName{DeviceName: "Ana's iPad"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<dict><key>Enabled</key><true/><key>Item</key><string>Bluetooth</string></dict>",
		"<dict><key>DeviceName</key><string>Ana&#39;s iPad</string><key>Item</key><string>DeviceName</string></dict>",
	} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("Settings payload lacks %s:\n%s", want, raw)
		}
	}
}

// Values survive the round trip, nested dictionaries and data included.
func TestCommandValuesRoundTrip(t *testing.T) {
	yes := true
	in := &EraseDevice{PIN: "123456", PreserveDataPlan: &yes, ReturnToService: &EraseDeviceReturnToService{Enabled: true, WiFiProfileData: []byte("wifi")}}
	raw, err := MarshalCommand("u", in)
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := p.Command.(*EraseDevice)
	if !ok || out.PIN != "123456" || out.PreserveDataPlan == nil || !*out.PreserveDataPlan ||
		out.ReturnToService == nil || !out.ReturnToService.Enabled || string(out.ReturnToService.WiFiProfileData) != "wifi" {
		t.Errorf("decoded %+v (ReturnToService %+v), want the values sent", out, out.ReturnToService)
	}
	profile := []byte("<plist><dict/></plist>")
	raw, _ = MarshalCommand("u", &InstallProfile{Payload: profile})
	p, _ = DecodeCommand(raw)
	if ip, _ := p.Command.(*InstallProfile); ip == nil || string(ip.Payload) != string(profile) {
		t.Errorf("InstallProfile payload lost: %+v", p.Command)
	}
}

func TestRawCommand(t *testing.T) {
	raw, err := MarshalCommand("u1", &RawCommand{Type: "FutureThing", Keys: map[string]any{"Level": 3}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	rc, ok := p.Command.(*RawCommand)
	if !ok || rc.Type != "FutureThing" || rc.Keys["Level"] != uint64(3) || len(rc.Keys) != 1 {
		t.Errorf("decoded %T %+v, want the raw FutureThing command with Level 3", p.Command, p.Command)
	}
}

const tokenUpdateXML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>AwaitingConfiguration</key>
	<false/>
	<key>MessageType</key>
	<string>TokenUpdate</string>
	<key>PushMagic</key>
	<string>5F1C2D9A-7B3E-4E1F-8C6D-2A9B0E4F7C31</string>
	<key>Token</key>
	<data>
	q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=
	</data>
	<key>Topic</key>
	<string>com.apple.mgmt.External.2f6c1b9e-3d4a-4f5b-8c7d-9e0f1a2b3c4d</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>
</plist>`

func TestDecodeCheckin(t *testing.T) {
	m, err := DecodeCheckin([]byte(tokenUpdateXML))
	if err != nil {
		t.Fatal(err)
	}
	tu, ok := m.(*TokenUpdate)
	if !ok {
		t.Fatalf("decoded %T, want *TokenUpdate", m)
	}
	if tu.UDID != "00008030-001A2B3C4D5E6F70" || tu.PushMagic != "5F1C2D9A-7B3E-4E1F-8C6D-2A9B0E4F7C31" ||
		len(tu.Token) != 32 || tu.Token[0] != 0xab || !strings.HasPrefix(tu.Topic, "com.apple.mgmt.External.") ||
		tu.AwaitingConfiguration == nil || *tu.AwaitingConfiguration || tu.MessageType() != "TokenUpdate" {
		t.Errorf("TokenUpdate = %+v", tu)
	}
	if string(tu.Raw) != tokenUpdateXML {
		t.Error("Raw does not hold the bytes decoded")
	}

	// A device encodes the same message back with no empty keys.
	out, err := plist.Marshal(tu)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("<string></string>")) || bytes.Contains(out, []byte("EnrollmentID")) {
		t.Errorf("re-encoded TokenUpdate has empty keys:\n%s", out)
	}

	for name, body := range map[string]string{
		"not a plist":     "hello",
		"no MessageType":  `<plist><dict><key>UDID</key><string>x</string></dict></plist>`,
		"unknown type":    `<plist><dict><key>MessageType</key><string>Frobnicate</string></dict></plist>`,
		"wrong key type":  `<plist><dict><key>MessageType</key><string>TokenUpdate</string><key>Token</key><dict/></dict></plist>`,
		"array, not dict": `<plist><array><string>TokenUpdate</string></array></plist>`,
	} {
		if _, err := DecodeCheckin([]byte(body)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	_, err = DecodeCheckin([]byte(`<plist><dict><key>MessageType</key><string>Frobnicate</string></dict></plist>`))
	if !errors.Is(err, ErrUnknownMessageType) {
		t.Errorf("unknown MessageType error = %v, want ErrUnknownMessageType", err)
	}
}

const deviceInformationResponseXML = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0">
<dict>
	<key>CommandUUID</key><string>c1</string>
	<key>QueryResponses</key>
	<dict>
		<key>DeviceName</key><string>Ana's iPhone</string>
		<key>OSVersion</key><string>18.1</string>
		<key>SerialNumber</key><string>F2LXK0ABCD12</string>
		<key>IsSupervised</key><true/>
		<key>BatteryLevel</key><real>0.81</real>
	</dict>
	<key>Status</key><string>Acknowledged</string>
	<key>UDID</key><string>00008030-001A2B3C4D5E6F70</string>
</dict>
</plist>`

func TestDecodeResponse(t *testing.T) {
	r, err := DecodeResponse([]byte(deviceInformationResponseXML), "DeviceInformation")
	if err != nil {
		t.Fatal(err)
	}
	di, ok := r.Typed.(*DeviceInformationResponse)
	if !ok {
		t.Fatalf("Typed = %T", r.Typed)
	}
	q := di.QueryResponses
	if r.Status != StatusAcknowledged || r.CommandUUID != "c1" || di.UDID != "00008030-001A2B3C4D5E6F70" ||
		q.DeviceName != "Ana's iPhone" || q.SerialNumber != "F2LXK0ABCD12" ||
		q.IsSupervised == nil || !*q.IsSupervised || q.BatteryLevel == nil || *q.BatteryLevel != 0.81 {
		t.Errorf("DeviceInformation response = %+v / %+v", r.CommandResult, q)
	}

	errResp := `<plist><dict><key>CommandUUID</key><string>c2</string><key>Status</key><string>Error</string>
<key>ErrorChain</key><array><dict><key>ErrorCode</key><integer>12021</integer><key>ErrorDomain</key>
<string>MCMDMErrorDomain</string><key>LocalizedDescription</key><string>Unknown command</string></dict></array>
<key>UDID</key><string>d</string></dict></plist>`
	r, err = DecodeResponse([]byte(errResp), "FutureThing")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusError || len(r.ErrorChain) != 1 || r.ErrorChain[0].ErrorCode != 12021 || r.Typed != nil {
		t.Errorf("error response = %+v", r)
	}

	r, err = DecodeResponse([]byte(`<plist><dict><key>Status</key><string>Idle</string><key>UDID</key><string>d</string></dict></plist>`), "")
	if err != nil || r.Status != StatusIdle {
		t.Errorf("idle: %+v, %v", r, err)
	}
	for name, body := range map[string]string{
		"no status":      `<plist><dict><key>UDID</key><string>d</string></dict></plist>`,
		"unknown status": `<plist><dict><key>Status</key><string>Maybe</string><key>CommandUUID</key><string>c</string></dict></plist>`,
		"no uuid":        `<plist><dict><key>Status</key><string>Acknowledged</string></dict></plist>`,
		"garbage":        `{"Status":"Idle"}`,
	} {
		if _, err := DecodeResponse([]byte(body), ""); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func FuzzDecodeCheckin(f *testing.F) {
	f.Add([]byte(tokenUpdateXML))
	f.Add([]byte(`<plist><dict><key>MessageType</key><string>Authenticate</string></dict></plist>`))
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, raw []byte) { DecodeCheckin(raw) })
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(deviceInformationResponseXML), "DeviceInformation")
	f.Add([]byte(`<plist><dict><key>Status</key><string>Idle</string></dict></plist>`), "")
	f.Add([]byte(plistHead+managedApplicationListBody+"</plist>"), "ManagedApplicationList")
	f.Fuzz(func(t *testing.T, raw []byte, rt string) { DecodeResponse(raw, rt) })
}

func FuzzDecodeCommand(f *testing.F) {
	raw, _ := MarshalCommand("u", &DeviceLock{Message: "m"})
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) { DecodeCommand(raw) })
}

func TestCommandFromKeys(t *testing.T) {
	c, err := CommandFromKeys("DeviceInformation", map[string]any{"Queries": []any{"SerialNumber", "OSVersion"}})
	di, ok := c.(*DeviceInformation)
	if err != nil || !ok || len(di.Queries) != 2 || di.Queries[1] != "OSVersion" {
		t.Fatalf("DeviceInformation from keys: %+v, %v", c, err)
	}
	c, err = CommandFromKeys("DeviceInformation", map[string]any{"Queries": "UDID"})
	if di, ok := c.(*DeviceInformation); err != nil || !ok || len(di.Queries) != 1 || di.Queries[0] != "UDID" {
		t.Fatalf("a lone value for an array key: %+v, %v", c, err)
	}
	c, err = CommandFromKeys("EraseDevice", map[string]any{"PIN": "123456", "PreserveDataPlan": false})
	if e, ok := c.(*EraseDevice); err != nil || !ok || e.PIN != "123456" || e.PreserveDataPlan == nil || *e.PreserveDataPlan {
		t.Fatalf("EraseDevice from keys: %+v, %v", c, err)
	}
	if _, err := CommandFromKeys("DeviceLock", map[string]any{"Colour": "red"}); err == nil || !strings.Contains(err.Error(), "Colour") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := CommandFromKeys("EraseDevice", map[string]any{"PreserveDataPlan": "yes"}); err == nil {
		t.Error("a string for a boolean key was accepted")
	}
	if c, err := CommandFromKeys("BrandNew", map[string]any{"A": 1}); err != nil || c.RequestType() != "BrandNew" {
		t.Errorf("unknown RequestType: %+v, %v", c, err)
	}
}
