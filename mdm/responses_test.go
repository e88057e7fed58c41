package mdm

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"gopkg.in/yaml.v3"
)

// schemaDir is Apple's schema as mdm/doc.go's go:generate finds it, from
// this package's directory.
const schemaDir = "../../shared/apple-device-management/mdm"

type schemaKey struct {
	Key       string      `yaml:"key"`
	Type      string      `yaml:"type"`
	RangeList []any       `yaml:"rangelist"`
	Subkeys   []schemaKey `yaml:"subkeys"`
}

type schemaCommand struct {
	Payload struct {
		RequestType string `yaml:"requesttype"`
	} `yaml:"payload"`
	PayloadKeys  []schemaKey `yaml:"payloadkeys"`
	ResponseKeys []schemaKey `yaml:"responsekeys"`
}

func loadSchemaCommands(t *testing.T) map[string]schemaCommand {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(schemaDir, "commands", "*.yaml"))
	if len(paths) == 0 {
		t.Skipf("Apple's device-management schema is not at %s (a clone of github.com/apple/device-management next to this repository): the schema-driven test needs it", schemaDir)
	}
	cmds := map[string]schemaCommand{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c schemaCommand
		if err := yaml.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cmds[c.Payload.RequestType] = c
	}
	return cmds
}

func isWildcardKey(k string) bool { return k == "ANY" || strings.HasPrefix(k, "ANY ") }

// wildcardExamples are two keys a device would send for a wildcard.
func wildcardExamples(k string) []string {
	switch strings.TrimSpace(strings.TrimPrefix(k, "ANY")) {
	case "app identifier":
		return []string{"com.example.app", "com.example.notes"}
	case "restriction name":
		return []string{"allowCamera", "allowAirDrop"}
	case "profile identifier":
		return []string{"com.example.profile.restrictions", "com.example.profile.wifi"}
	case "index":
		return []string{"0", "1"}
	}
	// A bare ANY: app configuration and feedback keys, error details.
	return []string{"ServerURL", "RetryCount"}
}

// sampleDict is a dictionary with a value of the schema's type for every
// key, two example keys for a wildcard; wildcards counts those.
func sampleDict(keys []schemaKey, wildcards *int) map[string]any {
	d := map[string]any{}
	for _, k := range keys {
		if k.Key == "" {
			continue
		}
		if isWildcardKey(k.Key) {
			*wildcards++
			for i, name := range wildcardExamples(k.Key) {
				d[name] = sampleValue(k, i, wildcards)
			}
			continue
		}
		d[k.Key] = sampleValue(k, 0, wildcards)
	}
	return d
}

func sampleValue(k schemaKey, i int, wildcards *int) any {
	pick := func(def any) any {
		if len(k.RangeList) > 0 {
			return k.RangeList[i%len(k.RangeList)]
		}
		return def
	}
	switch k.Type {
	case "<string>":
		return fmt.Sprint(pick(fmt.Sprintf("%s-%d", k.Key, i)))
	case "<integer>":
		v := pick(7 + i)
		if n, ok := v.(int); ok {
			return n
		}
		return 7 + i
	case "<real>":
		return 0.5 + float64(i)
	case "<boolean>":
		return true
	case "<date>":
		return time.Date(2025, 3, 14, 9, 26, 53+i, 0, time.UTC)
	case "<data>":
		return []byte("data of " + k.Key)
	case "<any>":
		if i%2 == 1 {
			return 42
		}
		return "https://mdm.example.com"
	case "<dictionary>":
		if len(k.Subkeys) == 0 {
			return map[string]any{"Key": "value"}
		}
		return sampleDict(k.Subkeys, wildcards)
	case "<array>":
		switch len(k.Subkeys) {
		case 0:
			return []any{"element"}
		case 1:
			return []any{sampleValue(k.Subkeys[0], 0, wildcards), sampleValue(k.Subkeys[0], 1, wildcards)}
		}
		var a []any
		for _, v := range k.Subkeys {
			a = append(a, sampleValue(v, 0, wildcards))
		}
		return a
	}
	panic("schema type " + k.Type)
}

// generic decodes a plist dictionary into plain Go values.
func generic(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var d map[string]any
	if err := plist.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	return d
}

// For every command of the schema: a response holding every key Apple
// documents, wildcard dictionaries with two concrete keys, decodes into its
// type with no key dropped, and marshalling the typed response gives the
// body back, value for value.
func TestEveryResponseFromSchema(t *testing.T) {
	cmds := loadSchemaCommands(t)
	wildcards := 0
	for _, rt := range RequestTypes() {
		c, ok := cmds[rt]
		if !ok {
			t.Errorf("%s: no schema file", rt)
			continue
		}
		body := sampleDict(c.ResponseKeys, &wildcards)
		body["Status"] = StatusAcknowledged
		body["CommandUUID"] = "uuid-" + rt
		body["UDID"] = "00008030-001A2B3C4D5E6F70"
		raw, err := plist.Marshal(body)
		if err != nil {
			t.Fatalf("%s: %v", rt, err)
		}
		r, err := DecodeResponse(raw, rt)
		if err != nil {
			t.Errorf("%s: %v\n%s", rt, err, raw)
			continue
		}
		if reflect.TypeOf(r.Typed) != reflect.TypeOf(newCommandResponse(rt)) {
			t.Errorf("%s: Typed is %T", rt, r.Typed)
			continue
		}
		if len(r.Dropped) > 0 {
			t.Errorf("%s: Dropped %v", rt, r.Dropped)
		}
		if u := UnknownKeys(raw, r.Typed); len(u) > 0 {
			t.Errorf("%s: UnknownKeys %v", rt, u)
		}
		back, err := plist.Marshal(r.Typed)
		if err != nil {
			t.Errorf("%s: marshal the typed response: %v", rt, err)
			continue
		}
		if got, want := generic(t, back), generic(t, raw); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the typed response does not give the body back:\n got %v\nwant %v", rt, got, want)
		}
	}
	// 20 wildcard keys in the schema's responses (the restriction ones
	// twice: global and per profile); a count off means the walk missed
	// some or the schema changed.
	if wildcards < 10 {
		t.Errorf("%d wildcard keys in the sample responses, want the schema's", wildcards)
	}
}

// Every command of the schema decoded from a payload holding every key it
// documents keeps them all (Settings aside: its array of several item
// types marshals but does not decode).
func TestEveryCommandFromSchema(t *testing.T) {
	cmds := loadSchemaCommands(t)
	for _, rt := range RequestTypes() {
		if rt == "Settings" {
			continue
		}
		var n int
		keys := sampleDict(cmds[rt].PayloadKeys, &n)
		raw, err := plist.Marshal(map[string]any{"CommandUUID": "u", "Command": keys})
		if err != nil {
			t.Fatal(err)
		}
		keys["RequestType"] = rt
		raw, _ = plist.Marshal(map[string]any{"CommandUUID": "u", "Command": keys})
		p, err := DecodeCommand(raw)
		if err != nil {
			t.Errorf("%s: %v", rt, err)
			continue
		}
		delete(keys, "RequestType")
		onlyKeys, _ := plist.Marshal(keys)
		if u := UnknownKeys(onlyKeys, p.Command); len(u) > 0 {
			t.Errorf("%s: UnknownKeys %v", rt, u)
		}
	}
}

// Every response type marshals from its zero value: the encoder panics on
// a nil map without omitempty.
func TestZeroResponsesMarshal(t *testing.T) {
	for _, rt := range RequestTypes() {
		if _, err := plist.Marshal(newCommandResponse(rt)); err != nil {
			t.Errorf("%s: %v", rt, err)
		}
	}
}

const plistHead = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
`

// decodeTyped decodes a hand-written body and asserts nothing is dropped.
func decodeTyped[T any](t *testing.T, body, requestType string) T {
	t.Helper()
	r, err := DecodeResponse([]byte(plistHead+body+"\n</plist>\n"), requestType)
	if err != nil {
		t.Fatal(err)
	}
	typed, ok := r.Typed.(T)
	if !ok {
		t.Fatalf("Typed = %T", r.Typed)
	}
	if len(r.Dropped) > 0 {
		t.Errorf("%s: Dropped %v", requestType, r.Dropped)
	}
	return typed
}

// A ManagedApplicationList as an iPhone sends it: one dictionary per app,
// keyed by bundle identifier.
const managedApplicationListBody = `<dict>
	<key>CommandUUID</key>
	<string>5B1C2E0A-6B42-4C8A-9F0E-2D7A1C3B4E5F</string>
	<key>ManagedApplicationList</key>
	<dict>
		<key>com.example.app</key>
		<dict>
			<key>ExternalVersionIdentifier</key>
			<integer>852540207</integer>
			<key>HasConfiguration</key>
			<true/>
			<key>HasFeedback</key>
			<false/>
			<key>IsValidated</key>
			<true/>
			<key>ManagementFlags</key>
			<integer>1</integer>
			<key>Status</key>
			<string>Managed</string>
		</dict>
		<key>com.example.notes</key>
		<dict>
			<key>HasConfiguration</key>
			<false/>
			<key>HasFeedback</key>
			<false/>
			<key>IsValidated</key>
			<false/>
			<key>ManagementFlags</key>
			<integer>5</integer>
			<key>Status</key>
			<string>Installing</string>
		</dict>
		<key>com.example.legacy</key>
		<dict>
			<key>ManagementFlags</key>
			<integer>0</integer>
			<key>Status</key>
			<string>ManagedButUninstalled</string>
			<key>UnusedRedemptionCode</key>
			<string>XKJ7HF3LWRPN</string>
		</dict>
	</dict>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`

func TestManagedApplicationListResponse(t *testing.T) {
	resp := decodeTyped[*ManagedApplicationListResponse](t, managedApplicationListBody, "ManagedApplicationList")
	apps := resp.ManagedApplicationList
	if len(apps) != 3 {
		t.Fatalf("ManagedApplicationList = %+v, want 3 apps", apps)
	}
	if a := apps["com.example.app"]; a.Status != "Managed" || a.ManagementFlags != 1 || !a.HasConfiguration ||
		a.HasFeedback || !a.IsValidated || a.ExternalVersionIdentifier != 852540207 {
		t.Errorf("com.example.app = %+v", a)
	}
	if a := apps["com.example.notes"]; a.Status != "Installing" || a.ManagementFlags != 5 || a.IsValidated {
		t.Errorf("com.example.notes = %+v", a)
	}
	if a := apps["com.example.legacy"]; a.Status != "ManagedButUninstalled" || a.UnusedRedemptionCode != "XKJ7HF3LWRPN" {
		t.Errorf("com.example.legacy = %+v", a)
	}
	// It marshals back to the same dictionary.
	back, err := plist.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	got := generic(t, back)["ManagedApplicationList"].(map[string]any)["com.example.app"].(map[string]any)
	if got["Status"] != "Managed" || got["ExternalVersionIdentifier"] != uint64(852540207) {
		t.Errorf("marshalled com.example.app = %v", got)
	}
}

func TestInstalledApplicationListResponse(t *testing.T) {
	resp := decodeTyped[*InstalledApplicationListResponse](t, `<dict>
	<key>CommandUUID</key>
	<string>c-installed</string>
	<key>InstalledApplicationList</key>
	<array>
		<dict>
			<key>AdHocCodeSigned</key>
			<false/>
			<key>AppStoreVendable</key>
			<true/>
			<key>BetaApp</key>
			<false/>
			<key>BundleSize</key>
			<integer>48234496</integer>
			<key>DeviceBasedVPP</key>
			<true/>
			<key>DynamicSize</key>
			<integer>1204224</integer>
			<key>ExternalVersionIdentifier</key>
			<integer>852540207</integer>
			<key>HasUpdateAvailable</key>
			<false/>
			<key>Identifier</key>
			<string>com.example.app</string>
			<key>Installing</key>
			<false/>
			<key>IsValidated</key>
			<true/>
			<key>Name</key>
			<string>Example</string>
			<key>ShortVersion</key>
			<string>4.2.1</string>
			<key>Version</key>
			<string>4210</string>
		</dict>
		<dict>
			<key>BundleSize</key>
			<integer>9011200</integer>
			<key>Identifier</key>
			<string>com.apple.Pages</string>
			<key>Installing</key>
			<true/>
			<key>Name</key>
			<string>Pages</string>
			<key>ShortVersion</key>
			<string>14.1</string>
			<key>Version</key>
			<string>7034.0.77</string>
		</dict>
	</array>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`, "InstalledApplicationList")
	list := resp.InstalledApplicationList
	if len(list) != 2 {
		t.Fatalf("InstalledApplicationList = %+v", list)
	}
	a := list[0]
	if a.Identifier != "com.example.app" || a.Name != "Example" || a.ShortVersion != "4.2.1" || a.Version != "4210" ||
		a.BundleSize == nil || *a.BundleSize != 48234496 || a.DynamicSize == nil || *a.DynamicSize != 1204224 ||
		a.ExternalVersionIdentifier == nil || *a.ExternalVersionIdentifier != 852540207 ||
		a.IsValidated == nil || !*a.IsValidated || a.DeviceBasedVPP == nil || !*a.DeviceBasedVPP ||
		a.AdHocCodeSigned == nil || *a.AdHocCodeSigned {
		t.Errorf("first app = %+v", a)
	}
	if b := list[1]; b.Identifier != "com.apple.Pages" || b.Installing == nil || !*b.Installing || b.IsValidated != nil {
		t.Errorf("second app = %+v", b)
	}
}

func TestRestrictionsResponse(t *testing.T) {
	resp := decodeTyped[*RestrictionsResponse](t, `<dict>
	<key>CommandUUID</key>
	<string>c-restrictions</string>
	<key>GlobalRestrictions</key>
	<dict>
		<key>intersection</key>
		<dict>
			<key>allowListedAppBundleIDs</key>
			<dict>
				<key>values</key>
				<array>
					<string>com.example.app</string>
					<string>com.apple.mobilesafari</string>
				</array>
			</dict>
		</dict>
		<key>restrictedBool</key>
		<dict>
			<key>allowCamera</key>
			<dict>
				<key>value</key>
				<false/>
			</dict>
			<key>forceEncryptedBackup</key>
			<dict>
				<key>value</key>
				<true/>
			</dict>
		</dict>
		<key>restrictedValue</key>
		<dict>
			<key>maxGracePeriod</key>
			<dict>
				<key>value</key>
				<integer>5</integer>
			</dict>
		</dict>
		<key>union</key>
		<dict>
			<key>blockedAppBundleIDs</key>
			<dict>
				<key>values</key>
				<array>
					<string>com.example.game</string>
				</array>
			</dict>
		</dict>
	</dict>
	<key>ProfileRestrictions</key>
	<dict>
		<key>com.example.profile.restrictions</key>
		<dict>
			<key>restrictedBool</key>
			<dict>
				<key>allowCamera</key>
				<dict>
					<key>value</key>
					<false/>
				</dict>
			</dict>
		</dict>
		<key>com.example.profile.passcode</key>
		<dict>
			<key>restrictedValue</key>
			<dict>
				<key>maxGracePeriod</key>
				<dict>
					<key>value</key>
					<integer>5</integer>
				</dict>
			</dict>
		</dict>
	</dict>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`, "Restrictions")
	g := resp.GlobalRestrictions
	if cam, ok := g.RestrictedBool["allowCamera"]; !ok || cam.Value || !g.RestrictedBool["forceEncryptedBackup"].Value {
		t.Errorf("restrictedBool = %+v", g.RestrictedBool)
	}
	if v := g.RestrictedValue["maxGracePeriod"]; v.Value != 5 {
		t.Errorf("restrictedValue = %+v", g.RestrictedValue)
	}
	if v := g.Intersection["allowListedAppBundleIDs"].Values; !slices.Equal(v, []string{"com.example.app", "com.apple.mobilesafari"}) {
		t.Errorf("intersection = %+v", g.Intersection)
	}
	if v := g.Union["blockedAppBundleIDs"].Values; !slices.Equal(v, []string{"com.example.game"}) {
		t.Errorf("union = %+v", g.Union)
	}
	p := resp.ProfileRestrictions
	if len(p) != 2 {
		t.Fatalf("ProfileRestrictions = %+v", p)
	}
	if cam, ok := p["com.example.profile.restrictions"].RestrictedBool["allowCamera"]; !ok || cam.Value {
		t.Errorf("com.example.profile.restrictions = %+v", p["com.example.profile.restrictions"])
	}
	if v := p["com.example.profile.passcode"].RestrictedValue["maxGracePeriod"]; v.Value != 5 {
		t.Errorf("com.example.profile.passcode = %+v", p["com.example.profile.passcode"])
	}
	// Global and per-profile restrictions are one type.
	var _ RestrictionsDictionary = p["com.example.profile.passcode"]
}

func TestSecurityInfoResponse(t *testing.T) {
	mac := decodeTyped[*SecurityInfoResponse](t, `<dict>
	<key>CommandUUID</key>
	<string>c-security-mac</string>
	<key>SecurityInfo</key>
	<dict>
		<key>AuthenticatedRootVolumeEnabled</key>
		<true/>
		<key>BootstrapTokenAllowedForAuthentication</key>
		<string>allowed</string>
		<key>BootstrapTokenRequiredForKernelExtensionApproval</key>
		<false/>
		<key>BootstrapTokenRequiredForSoftwareUpdate</key>
		<false/>
		<key>FDE_Enabled</key>
		<true/>
		<key>FDE_HasInstitutionalRecoveryKey</key>
		<false/>
		<key>FDE_HasPersonalRecoveryKey</key>
		<true/>
		<key>FirewallSettings</key>
		<dict>
			<key>Applications</key>
			<array>
				<dict>
					<key>Allowed</key>
					<true/>
					<key>BundleID</key>
					<string>com.example.app</string>
					<key>Name</key>
					<string>Example</string>
				</dict>
			</array>
			<key>BlockAllIncoming</key>
			<false/>
			<key>FirewallEnabled</key>
			<true/>
			<key>StealthMode</key>
			<true/>
		</dict>
		<key>IsRecoveryLockEnabled</key>
		<false/>
		<key>ManagementStatus</key>
		<dict>
			<key>EnrolledViaDEP</key>
			<true/>
			<key>IsActivationLockManageable</key>
			<true/>
			<key>IsUserEnrollment</key>
			<false/>
			<key>UserApprovedEnrollment</key>
			<true/>
		</dict>
		<key>RemoteDesktopEnabled</key>
		<false/>
		<key>SecureBoot</key>
		<dict>
			<key>ExternalBootLevel</key>
			<string>disallowed</string>
			<key>SecureBootLevel</key>
			<string>full</string>
		</dict>
		<key>SystemIntegrityProtectionEnabled</key>
		<true/>
	</dict>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>0000FE00-A1B2C3D4E5F60718</string>
</dict>`, "SecurityInfo")
	s := mac.SecurityInfo
	if s.FDEEnabled == nil || !*s.FDEEnabled || s.FDEHasPersonalRecoveryKey == nil || !*s.FDEHasPersonalRecoveryKey ||
		s.SystemIntegrityProtectionEnabled == nil || !*s.SystemIntegrityProtectionEnabled ||
		s.BootstrapTokenAllowedForAuthentication != "allowed" {
		t.Errorf("macOS SecurityInfo = %+v", s)
	}
	if f := s.FirewallSettings; f == nil || f.FirewallEnabled == nil || !*f.FirewallEnabled || len(f.Applications) != 1 ||
		f.Applications[0].BundleID != "com.example.app" || f.Applications[0].Allowed == nil || !*f.Applications[0].Allowed {
		t.Errorf("FirewallSettings = %+v", s.FirewallSettings)
	}
	if m := s.ManagementStatus; m == nil || m.EnrolledViaDEP == nil || !*m.EnrolledViaDEP || m.IsUserEnrollment == nil || *m.IsUserEnrollment {
		t.Errorf("ManagementStatus = %+v", s.ManagementStatus)
	}
	if b := s.SecureBoot; b == nil || b.SecureBootLevel != "full" || b.ExternalBootLevel != "disallowed" {
		t.Errorf("SecureBoot = %+v", s.SecureBoot)
	}

	ios := decodeTyped[*SecurityInfoResponse](t, `<dict>
	<key>CommandUUID</key>
	<string>c-security-ios</string>
	<key>SecurityInfo</key>
	<dict>
		<key>HardwareEncryptionCaps</key>
		<integer>3</integer>
		<key>PasscodeCompliant</key>
		<true/>
		<key>PasscodeCompliantWithProfiles</key>
		<true/>
		<key>PasscodeLockGracePeriodEnforced</key>
		<integer>0</integer>
		<key>PasscodePresent</key>
		<true/>
	</dict>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`, "SecurityInfo")
	i := ios.SecurityInfo
	if i.HardwareEncryptionCaps == nil || *i.HardwareEncryptionCaps != 3 || i.PasscodePresent == nil || !*i.PasscodePresent ||
		i.PasscodeLockGracePeriodEnforced == nil || *i.PasscodeLockGracePeriodEnforced != 0 || i.FDEEnabled != nil {
		t.Errorf("iOS SecurityInfo = %+v", i)
	}
}

func TestCertificateListResponse(t *testing.T) {
	der := []byte{0x30, 0x82, 0x01, 0xb3, 0x30, 0x82, 0x01, 0x59, 0xa0, 0x03, 0x02, 0x01, 0x02}
	resp := decodeTyped[*CertificateListResponse](t, `<dict>
	<key>CertificateList</key>
	<array>
		<dict>
			<key>CommonName</key>
			<string>Custody Device Identity</string>
			<key>Data</key>
			<data>`+base64.StdEncoding.EncodeToString(der)+`</data>
			<key>IsIdentity</key>
			<true/>
		</dict>
		<dict>
			<key>CommonName</key>
			<string>Example Root CA</string>
			<key>Data</key>
			<data>MIIBszCCAVk=</data>
			<key>IsIdentity</key>
			<false/>
		</dict>
	</array>
	<key>CommandUUID</key>
	<string>c-certs</string>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`, "CertificateList")
	l := resp.CertificateList
	if len(l) != 2 || l[0].CommonName != "Custody Device Identity" || !l[0].IsIdentity || !bytes.Equal(l[0].Data, der) ||
		l[1].CommonName != "Example Root CA" || l[1].IsIdentity || len(l[1].Data) != 8 {
		t.Errorf("CertificateList = %+v", l)
	}
}

// A DeviceInformation answer to many queries, as an iPhone sends it.
const deviceInformationManyBody = `<dict>
	<key>CommandUUID</key>
	<string>c-devinfo</string>
	<key>QueryResponses</key>
	<dict>
		<key>AvailableDeviceCapacity</key>
		<real>97.53</real>
		<key>BatteryLevel</key>
		<real>0.81</real>
		<key>BluetoothMAC</key>
		<string>f0:99:b6:12:34:56</string>
		<key>BuildVersion</key>
		<string>21F90</string>
		<key>CarrierSettingsVersion</key>
		<string>56.0</string>
		<key>CellularTechnology</key>
		<integer>3</integer>
		<key>CurrentCarrierNetwork</key>
		<string>Example Mobile</string>
		<key>CurrentMCC</key>
		<string>310</string>
		<key>CurrentMNC</key>
		<string>260</string>
		<key>DataRoamingEnabled</key>
		<false/>
		<key>DeviceCapacity</key>
		<real>128</real>
		<key>DeviceName</key>
		<string>Ana's iPhone</string>
		<key>EASDeviceIdentifier</key>
		<string>ABCDEF0123456789ABCDEF0123</string>
		<key>ICCID</key>
		<string>8901 2600 0000 1234 5678</string>
		<key>IMEI</key>
		<string>35 123456 789012 3</string>
		<key>IsActivationLockEnabled</key>
		<false/>
		<key>IsCloudBackupEnabled</key>
		<true/>
		<key>IsDeviceLocatorServiceEnabled</key>
		<true/>
		<key>IsDoNotDisturbInEffect</key>
		<false/>
		<key>IsMDMLostModeEnabled</key>
		<false/>
		<key>IsNetworkTethered</key>
		<false/>
		<key>IsRoaming</key>
		<false/>
		<key>IsSupervised</key>
		<true/>
		<key>LastCloudBackupDate</key>
		<date>2025-03-13T02:14:09Z</date>
		<key>MEID</key>
		<string>35123456789012</string>
		<key>Model</key>
		<string>MQ9X3LL/A</string>
		<key>ModelName</key>
		<string>iPhone</string>
		<key>ModelNumber</key>
		<string>MQ9X3</string>
		<key>ModemFirmwareVersion</key>
		<string>2.50.01</string>
		<key>OSVersion</key>
		<string>17.5.1</string>
		<key>PersonalHotspotEnabled</key>
		<false/>
		<key>PhoneNumber</key>
		<string>+1 555 0100</string>
		<key>ProductName</key>
		<string>iPhone15,2</string>
		<key>SIMCarrierNetwork</key>
		<string>Example Mobile</string>
		<key>SIMMCC</key>
		<string>310</string>
		<key>SIMMNC</key>
		<string>260</string>
		<key>SerialNumber</key>
		<string>F2LXK0ABCD12</string>
		<key>ServiceSubscriptions</key>
		<array>
			<dict>
				<key>CarrierSettingsVersion</key>
				<string>56.0</string>
				<key>CurrentCarrierNetwork</key>
				<string>Example Mobile</string>
				<key>EID</key>
				<string>89049032000001000000012345678901</string>
				<key>ICCID</key>
				<string>8901 2600 0000 1234 5678</string>
				<key>IMEI</key>
				<string>35 123456 789012 3</string>
				<key>IsDataPreferred</key>
				<true/>
				<key>IsRoaming</key>
				<false/>
				<key>IsVoicePreferred</key>
				<true/>
				<key>Label</key>
				<string>Primary</string>
				<key>LabelID</key>
				<string>7A3B2C1D-0000-4000-8000-000000000001</string>
			</dict>
		</array>
		<key>SubscriberMCC</key>
		<string>310</string>
		<key>SubscriberMNC</key>
		<string>260</string>
		<key>TimeZone</key>
		<string>Europe/Lisbon</string>
		<key>UDID</key>
		<string>00008030-001A2B3C4D5E6F70</string>
		<key>VoiceRoamingEnabled</key>
		<true/>
		<key>WiFiMAC</key>
		<string>f0:99:b6:12:34:57</string>
		<key>iTunesStoreAccountIsActive</key>
		<true/>
	</dict>
	<key>Status</key>
	<string>Acknowledged</string>
	<key>UDID</key>
	<string>00008030-001A2B3C4D5E6F70</string>
</dict>`

func TestDeviceInformationManyKeys(t *testing.T) {
	resp := decodeTyped[*DeviceInformationResponse](t, deviceInformationManyBody, "DeviceInformation")
	q := resp.QueryResponses
	if q.DeviceName != "Ana's iPhone" || q.OSVersion != "17.5.1" || q.BuildVersion != "21F90" || q.ProductName != "iPhone15,2" ||
		q.Model != "MQ9X3LL/A" || q.ModelNumber != "MQ9X3" || q.SerialNumber != "F2LXK0ABCD12" || q.UDID != "00008030-001A2B3C4D5E6F70" ||
		q.IMEI != "35 123456 789012 3" || q.WiFiMAC != "f0:99:b6:12:34:57" || q.TimeZone != "Europe/Lisbon" || q.CurrentMCC != "310" {
		t.Errorf("QueryResponses strings = %+v", q)
	}
	if q.DeviceCapacity == nil || *q.DeviceCapacity != 128 || q.AvailableDeviceCapacity == nil || *q.AvailableDeviceCapacity != 97.53 ||
		q.BatteryLevel == nil || *q.BatteryLevel != 0.81 || q.CellularTechnology == nil || *q.CellularTechnology != 3 {
		t.Errorf("QueryResponses numbers = %+v", q)
	}
	if q.IsSupervised == nil || !*q.IsSupervised || q.DataRoamingEnabled == nil || *q.DataRoamingEnabled ||
		q.ITunesStoreAccountIsActive == nil || !*q.ITunesStoreAccountIsActive || q.IsMDMLostModeEnabled == nil || *q.IsMDMLostModeEnabled {
		t.Errorf("QueryResponses booleans = %+v", q)
	}
	if q.LastCloudBackupDate == nil || !q.LastCloudBackupDate.Equal(time.Date(2025, 3, 13, 2, 14, 9, 0, time.UTC)) {
		t.Errorf("LastCloudBackupDate = %v", q.LastCloudBackupDate)
	}
	if s := q.ServiceSubscriptions; len(s) != 1 || s[0].Label != "Primary" || s[0].EID != "89049032000001000000012345678901" ||
		s[0].IsDataPreferred == nil || !*s[0].IsDataPreferred {
		t.Errorf("ServiceSubscriptions = %+v", q.ServiceSubscriptions)
	}
}

// Keys the types do not have are listed, by path, in Dropped and by
// UnknownKeys; map keys are written * and array elements [].
func TestResponseDroppedKeys(t *testing.T) {
	body := strings.Replace(deviceInformationManyBody, "<key>DeviceName</key>",
		"<key>IsFutureFeatureEnabled</key><true/><key>DeviceName</key>", 1)
	body = strings.Replace(body, "<key>Status</key>\n\t<string>Acknowledged</string>",
		"<key>FutureTopKey</key><string>x</string><key>Status</key><string>Acknowledged</string>", 1)
	raw := []byte(plistHead + body + "</plist>")
	r, err := DecodeResponse(raw, "DeviceInformation")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"FutureTopKey", "QueryResponses.IsFutureFeatureEnabled"}
	if !slices.Equal(r.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", r.Dropped, want)
	}
	if got := UnknownKeys(raw, r.Typed); !slices.Equal(got, want) {
		t.Errorf("UnknownKeys = %v, want %v", got, want)
	}
	if q := r.Typed.(*DeviceInformationResponse).QueryResponses; q.DeviceName != "Ana's iPhone" {
		t.Errorf("the known keys are not decoded: %+v", q)
	}

	// A key new in every app is listed once.
	apps := strings.ReplaceAll(managedApplicationListBody, "<key>ManagementFlags</key>", "<key>FutureFlag</key><true/><key>ManagementFlags</key>")
	r, err = DecodeResponse([]byte(plistHead+apps+"</plist>"), "ManagedApplicationList")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ManagedApplicationList.*.FutureFlag"}; !slices.Equal(r.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", r.Dropped, want)
	}
	list := `<plist><dict><key>CommandUUID</key><string>c</string><key>Status</key><string>Acknowledged</string>
<key>InstalledApplicationList</key><array><dict><key>Identifier</key><string>a</string><key>Colour</key><string>red</string></dict></array></dict></plist>`
	if got := UnknownKeys([]byte(list), new(InstalledApplicationListResponse)); !slices.Equal(got, []string{"InstalledApplicationList[].Colour"}) {
		t.Errorf("UnknownKeys in an array = %v", got)
	}

	// Nothing is dropped, nothing is listed; no typed decode, no list.
	if r, _ := DecodeResponse([]byte(plistHead+managedApplicationListBody+"</plist>"), "ManagedApplicationList"); r.Dropped != nil {
		t.Errorf("Dropped = %v for a body the type holds", r.Dropped)
	}
	if r, _ := DecodeResponse(raw, ""); r.Dropped != nil || r.Typed != nil {
		t.Errorf("without a RequestType: Dropped %v, Typed %T", r.Dropped, r.Typed)
	}
	// Values under an any (app configuration) are kept whole.
	cfg := `<plist><dict><key>CommandUUID</key><string>c</string><key>Status</key><string>Acknowledged</string>
<key>ApplicationConfigurations</key><array><dict><key>Identifier</key><string>com.example.app</string>
<key>Configuration</key><dict><key>ServerURL</key><string>https://example.com</string><key>Nested</key><dict><key>A</key><integer>1</integer></dict></dict>
</dict></array></dict></plist>`
	r, err = DecodeResponse([]byte(cfg), "ManagedApplicationConfiguration")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Typed.(*ManagedApplicationConfigurationResponse).ApplicationConfigurations
	if len(r.Dropped) > 0 || len(c) != 1 || c[0].Configuration["ServerURL"] != "https://example.com" {
		t.Errorf("ManagedApplicationConfiguration: Dropped %v, %+v", r.Dropped, c)
	}
	if UnknownKeys([]byte("not a plist"), new(DeviceInformationResponse)) != nil {
		t.Error("UnknownKeys of a body that is not a plist")
	}
}

// mixedDict is what mdmgen generates for a dictionary with fixed keys and
// a wildcard (the current schema has none; TestGenMixedDictionary in
// mdmgen checks the generator writes these methods).
type mixedDict struct {
	Name  string `plist:"Name"`
	Count *int   `plist:"Count,omitempty"`

	// Other holds the keys other than the fields' ("ANY restriction name").
	Other map[string]mixedValue `plist:"-" mdm:"wildcard"`
}

type mixedValue struct {
	Value bool `plist:"value"`
}

func (d *mixedDict) UnmarshalPlist(f func(any) error) error {
	type plain mixedDict
	return decodeWildcard(f, (*plain)(d), &d.Other)
}

func (d mixedDict) MarshalPlist() (any, error) {
	type plain mixedDict
	return encodeWildcard(plain(d), d.Other)
}

// A dictionary with fixed keys and a wildcard: the fixed keys decode into
// fields, the others into Other, and it marshals back whole, as a field,
// a map value or an array element.
func TestDecodeMixedDictionary(t *testing.T) {
	type outer struct {
		One  mixedDict            `plist:"One"`
		Ptr  *mixedDict           `plist:"Ptr,omitempty"`
		Map  map[string]mixedDict `plist:"Map,omitempty"`
		List []mixedDict          `plist:"List,omitempty"`
	}
	dict := `<dict><key>Name</key><string>n</string><key>Count</key><integer>3</integer>
<key>allowCamera</key><dict><key>value</key><true/></dict><key>allowAirDrop</key><dict><key>value</key><false/></dict></dict>`
	raw := []byte(`<plist><dict><key>One</key>` + dict + `<key>Ptr</key>` + dict + `<key>Map</key><dict><key>k</key>` + dict +
		`</dict><key>List</key><array>` + dict + `</array></dict></plist>`)
	var o outer
	if err := plist.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*mixedDict{"One": &o.One, "Ptr": o.Ptr, "Map": ptr(o.Map["k"]), "List": ptr(o.List[0])} {
		if d == nil || d.Name != "n" || d.Count == nil || *d.Count != 3 || len(d.Other) != 2 ||
			!d.Other["allowCamera"].Value || d.Other["allowAirDrop"].Value {
			t.Errorf("%s = %+v", name, d)
		}
	}
	if u := UnknownKeys(raw, &o); u != nil {
		t.Errorf("UnknownKeys = %v", u)
	}
	back, err := plist.Marshal(&o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := generic(t, back), generic(t, raw); !reflect.DeepEqual(got, want) {
		t.Errorf("marshalled:\n got %v\nwant %v", got, want)
	}
	// A wildcard value of the wrong type is an error naming its key.
	bad := []byte(`<plist><dict><key>One</key><dict><key>Name</key><string>n</string><key>allowCamera</key><string>yes</string></dict></dict></plist>`)
	if err := plist.Unmarshal(bad, new(outer)); err == nil || !strings.Contains(err.Error(), "allowCamera") {
		t.Errorf("a string for a wildcard dictionary: %v", err)
	}
	// A key under a wildcard value that the value type lacks is listed.
	extra := []byte(`<plist><dict><key>One</key><dict><key>Name</key><string>n</string><key>allowCamera</key><dict><key>value</key><true/><key>since</key><integer>1</integer></dict></dict></dict></plist>`)
	if u := UnknownKeys(extra, new(outer)); !slices.Equal(u, []string{"One.*.since"}) {
		t.Errorf("UnknownKeys = %v", u)
	}
}

func ptr[T any](v T) *T { return &v }
