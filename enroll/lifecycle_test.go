package enroll

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
)

func TestRefs(t *testing.T) {
	for ref, want := range map[string][2]string{
		RecordRef("C02X"):          {"C02X", ""},
		UserRef("ana@example.com"): {"", "ana@example.com"},
		"a5f3c2":                   {"", ""},
		"":                         {"", ""},
	} {
		if s, e := ParseRef(ref); s != want[0] || e != want[1] {
			t.Errorf("ParseRef(%q) = %q, %q; want %q", ref, s, e, want)
		}
	}
}

func TestSettingsSet(t *testing.T) {
	var s Settings
	for _, v := range []string{"true", "On", "YES", "1"} {
		s = Settings{}
		if err := s.Set("enrollment.preenrolled-only", v); err != nil || !s.PreEnrolledOnly {
			t.Errorf("Set(%q): %v, %+v", v, err, s)
		}
	}
	if err := s.Set("enrollment.preenrolled-only", "off"); err != nil || s.PreEnrolledOnly {
		t.Errorf("Set(off): %v, %+v", err, s)
	}
	if err := s.Set("enrollment.preenrolled-only", "perhaps"); err == nil || !strings.Contains(err.Error(), "not a boolean") {
		t.Errorf("Set(perhaps): %v", err)
	}
	if err := s.Set("colour", "red"); err == nil || !strings.Contains(err.Error(), "enrollment.preenrolled-only") {
		t.Errorf("Set of an unknown setting: %v (want the known names listed)", err)
	}
	if v := s.Values()["enrollment.preenrolled-only"]; v != "false" {
		t.Errorf("Values: %q", v)
	}
}

const wifi = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>PayloadType</key><string>Configuration</string>
<key>PayloadIdentifier</key><string>com.example.wifi</string>
<key>PayloadUUID</key><string>0F6C0F0E-8B1A-4D5E-9A7B-2C3D4E5F6A7B</string>
<key>PayloadDisplayName</key><string>Wi-Fi</string>
<key>PayloadContent</key><array/>
</dict></plist>`

func TestNewProfileAssignment(t *testing.T) {
	a, err := NewProfileAssignment("ring-1", []byte(wifi))
	if err != nil || a.Name != "com.example.wifi" || a.DisplayName != "Wi-Fi" || a.Kind != AssignProfile || a.ID == "" {
		t.Fatalf("NewProfileAssignment = %+v, %v", a, err)
	}
	for name, tc := range map[string]struct{ group, profile, want string }{
		"no group":      {"", wifi, "bad group name"},
		"group with ;":  {"a;b", wifi, "bad group name"},
		"not a plist":   {"g", "hello", "neither a plist"},
		"not a profile": {"g", strings.Replace(wifi, "Configuration", "com.apple.wifi.managed", 1), "want Configuration"},
		"no identifier": {"g", strings.Replace(wifi, "PayloadIdentifier", "X", 1), "no PayloadIdentifier"},
		"no uuid":       {"g", strings.Replace(wifi, "PayloadUUID", "X", 1), "no PayloadUUID"},
		"broken plist":  {"g", wifi[:60], "not a plist dictionary"},
	} {
		_, err := NewProfileAssignment(tc.group, []byte(tc.profile))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an ErrInvalid about %q", name, err, tc.want)
		}
	}
}

func TestNewCommandAssignment(t *testing.T) {
	a, err := NewCommandAssignment("g", "DeviceLock", map[string]any{"Message": "Lost", "PIN": "123456"})
	if err != nil || a.Name != "DeviceLock" || a.Kind != AssignCommand {
		t.Fatalf("NewCommandAssignment = %+v, %v", a, err)
	}
	cmd, err := a.command(nil)
	if err != nil || cmd.RequestType() != "DeviceLock" {
		t.Fatalf("command: %v, %v", cmd, err)
	}
	var dict map[string]any
	if err := plist.Unmarshal(a.Payload, &dict); err != nil || dict["Message"] != "Lost" || dict["RequestType"] != "DeviceLock" {
		t.Errorf("payload %v, %v", dict, err)
	}
	if _, err := NewCommandAssignment("g", "DeviceLock", map[string]any{"Colour": "red"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Colour") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := NewCommandAssignment("g", "", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no RequestType: %v", err)
	}
}

// A record's history keeps its first event (creation) and the latest ones.
func TestRecordLogBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &Record{History: []Event{{At: t0, Step: StepCreated}}}
	for i := range 3 * maxHistory {
		r.Log(Event{At: t0.Add(time.Duration(i+1) * time.Second), Step: StepAssigned})
	}
	if len(r.History) != maxHistory || r.History[0].Step != StepCreated ||
		!r.History[len(r.History)-1].At.Equal(t0.Add(3*maxHistory*time.Second)) {
		t.Errorf("history of %d events, first %+v, last %+v", len(r.History), r.History[0], r.History[len(r.History)-1])
	}
	for i := 2; i < len(r.History); i++ {
		if !r.History[i].At.After(r.History[i-1].At) {
			t.Fatalf("history out of order at %d", i)
		}
	}
}
