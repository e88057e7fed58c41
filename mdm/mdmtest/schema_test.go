package mdmtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

// schemaKey and keyOS are the shape of checkin_schema_gen_test.go, which
// mdmgen writes from Apple's schema (go generate ./mdm/).
type schemaKey struct {
	Key      string
	Type     string // "<string>", "<integer>", …
	Required bool
	OS       map[string]keyOS // the platforms that send the key
}

type keyOS struct {
	Introduced     string
	DeviceChannel  bool
	UserChannel    bool
	UserEnrollment string // "allowed", "required", "forbidden" or ""
}

// A message is one request a device sent, with what the test knows of the
// sender.
type message struct {
	platform, osVersion string
	userChannel         bool
	userEnrollment      bool
	checkin             bool
	requestType         string // for a report: the command it answers
	raw                 []byte
}

// newerOrEqual reports whether version a is at least b ("18.1" ≥ "9.0").
func newerOrEqual(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

func plistType(v any) string {
	switch v.(type) {
	case string:
		return "<string>"
	case uint64, int64, int:
		return "<integer>"
	case float64:
		return "<real>"
	case bool:
		return "<boolean>"
	case []byte:
		return "<data>"
	case time.Time:
		return "<date>"
	case map[string]any:
		return "<dictionary>"
	case []any:
		return "<array>"
	}
	return fmt.Sprintf("%T", v)
}

// checkCheckin holds a check-in message to Apple's schema: each key is one
// the schema lists for the message, of its type, sent by that platform at
// that OS version on that channel and enrollment type; and each key the
// schema requires there is present.
func checkCheckin(m message) []string {
	var body map[string]any
	if err := plist.Unmarshal(m.raw, &body); err != nil {
		return []string{"not a plist: " + err.Error()}
	}
	mt, _ := body["MessageType"].(string)
	keys, ok := checkinSchema[mt]
	if !ok {
		return []string{fmt.Sprintf("MessageType %q is not in Apple's schema", mt)}
	}
	where := fmt.Sprintf("%s %s (%s", m.platform, mt, map[bool]string{true: "user channel", false: "device channel"}[m.userChannel])
	if m.userEnrollment {
		where += ", User Enrollment"
	}
	where += ")"
	var problems []string
	byName := map[string]schemaKey{}
	for _, k := range keys {
		byName[k.Key] = k
	}
	sends := func(k schemaKey) (keyOS, bool) {
		os, ok := k.OS[m.platform]
		if !ok || !newerOrEqual(m.osVersion, os.Introduced) {
			return os, false
		}
		if m.userChannel && !os.UserChannel || !m.userChannel && !os.DeviceChannel {
			return os, false
		}
		return os, !(m.userEnrollment && os.UserEnrollment == "forbidden")
	}
	for name, v := range body {
		k, ok := byName[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: key %s is not in Apple's schema", where, name))
			continue
		}
		if got := plistType(v); got != k.Type {
			problems = append(problems, fmt.Sprintf("%s: %s is a %s, the schema says %s", where, name, got, k.Type))
		}
		if _, ok := sends(k); !ok {
			problems = append(problems, fmt.Sprintf("%s: %s is not sent there (schema: %+v)", where, name, k.OS))
		}
	}
	for _, k := range keys {
		os, ok := sends(k)
		if !ok || !k.Required {
			continue
		}
		switch {
		case os.UserEnrollment == "required" && !m.userEnrollment:
			continue // EnrollmentID, EnrollmentUserID: a User Enrollment's names
		case k.Key == "UDID" && m.userEnrollment:
			continue // the schema's either/or: a device names itself one way
		case k.Key == "DigestResponse":
			continue // absent from the first of UserAuthenticate's two steps
		case os.UserChannel && !os.DeviceChannel && !m.userChannel:
			continue
		}
		if _, present := body[k.Key]; !present {
			problems = append(problems, fmt.Sprintf("%s: required key %s is missing", where, k.Key))
		}
	}
	return problems
}

// checkReport holds a report to the generated response types (which are
// Apple's schema): it decodes, and no key it carries is unknown.
func checkReport(m message) []string {
	resp, err := mdm.DecodeResponse(m.raw, m.requestType)
	if err != nil {
		return []string{fmt.Sprintf("%s report of %s: %v", m.platform, m.requestType, err)}
	}
	typed := any(&resp.CommandResult)
	if resp.Typed != nil {
		typed = resp.Typed
	}
	if unknown := mdm.UnknownKeys(m.raw, typed); len(unknown) > 0 {
		return []string{fmt.Sprintf("%s report of %q carries keys not in Apple's schema: %v", m.platform, m.requestType, unknown)}
	}
	return nil
}

// schemaServer serves a few devices and records what each sent: Idle
// gets each command of commands once per channel; UserAuthenticate gets a
// zero-length challenge.
type schemaServer struct {
	mu       sync.Mutex
	msgs     []message
	sent     map[string]int    // channel → commands sent
	pending  map[string]string // channel → RequestType of the command it was sent
	devices  map[string]*mdmtest.Device
	commands []mdm.Command
}

func (s *schemaServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var head struct {
		MessageType, Status, UDID, EnrollmentID, UserID string
	}
	plist.Unmarshal(raw, &head)
	dev := head.UDID + head.EnrollmentID
	d := s.devices[dev]
	channel := dev + ":" + head.UserID
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, message{platform: d.Platform, osVersion: d.OSVersion, userChannel: head.UserID != "",
		userEnrollment: d.EnrollmentID != "", checkin: head.MessageType != "", requestType: s.pending[channel], raw: raw})
	switch {
	case head.MessageType == "UserAuthenticate":
		b, _ := plist.Marshal(map[string]string{"DigestChallenge": ""})
		w.Write(b)
	case head.Status != "" && s.sent[channel] < len(s.commands):
		c := s.commands[s.sent[channel]]
		s.sent[channel]++
		s.pending[channel] = c.RequestType()
		b, _ := mdm.MarshalCommand(fmt.Sprintf("CMD-%d", s.sent[channel]), c)
		w.Write(b)
	case head.Status != "":
		s.pending[channel] = ""
	}
}

// Every message the simulated device sends (check-ins and reports, on an
// iPhone, a Mac and its user channel, a User Enrollment, a device in
// Setup Assistant) is held to Apple's schema, so that the simulator
// follows Apple and not one server's habits.
func TestMessagesFollowAppleSchema(t *testing.T) {
	ca := newCA(t)
	cert, key := identity(t, ca)
	profile := []byte(`<plist><dict><key>PayloadIdentifier</key><string>com.example.wifi</string></dict></plist>`)
	srv := &schemaServer{sent: map[string]int{}, pending: map[string]string{}, devices: map[string]*mdmtest.Device{},
		commands: []mdm.Command{
			&mdm.DeviceInformation{Queries: []string{"UDID", "SerialNumber", "DeviceName", "Model", "ModelName", "ProductName",
				"OSVersion", "BuildVersion", "IsSupervised", "BatteryLevel", "AwaitingConfiguration"}},
			&mdm.SecurityInfo{}, &mdm.InstallProfile{Payload: profile}, &mdm.ProfileList{},
			&mdm.RemoveProfile{Identifier: "com.example.none"}, &mdm.DeviceLock{}, &mdm.DeviceConfigured{},
			&mdm.RawCommand{Type: "SomethingNewer"},
		}}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	iphone := mdmtest.NewDevice(cert, key)
	iphone.IMEI, iphone.MEID, iphone.UnlockToken = "35 209900 176148 1", "35209900176148", []byte("unlock")
	mac := mdmtest.NewMac(cert, key)
	byod := mdmtest.NewDevice(cert, key)
	byod.EnrollmentID = "A7F3C2E1B4D5968776A5B4C3D2E1F0A9B8C7D6E5"
	setup := mdmtest.NewDevice(cert, key)
	setup.AwaitingConfiguration = true
	ctx := context.Background()
	for _, d := range []*mdmtest.Device{iphone, mac, byod, setup} {
		d.ServerURL, d.Topic = hs.URL, "com.apple.mgmt.External.schema"
		srv.devices[d.UDID+d.EnrollmentID] = d
		if d.EnrollmentID != "" {
			srv.devices[d.EnrollmentID] = d
		}
	}
	srv.devices[byod.EnrollmentID] = byod
	for _, d := range []*mdmtest.Device{iphone, mac, byod, setup} {
		for _, step := range []func(context.Context) error{d.Authenticate, d.TokenUpdate,
			func(ctx context.Context) error { _, err := d.Poll(ctx); return err },
			func(ctx context.Context) error { _, err := d.DeclarativeManagement(ctx, "tokens", nil); return err },
			d.CheckOut} {
			if err := step(ctx); err != nil {
				t.Fatalf("%s: %v", d.Platform, err)
			}
		}
	}
	u := mac.User("7A1C7E4B-9D2F-4E35-B6A8-1F0C3D5E7A9B", "ana", "Ana Lima")
	if err := u.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.TokenUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Poll(ctx); err != nil {
		t.Fatal(err)
	}

	checkins, reports := 0, 0
	for _, m := range srv.msgs {
		var problems []string
		if m.checkin {
			checkins++
			problems = checkCheckin(m)
		} else {
			reports++
			problems = checkReport(m)
		}
		for _, p := range problems {
			t.Error(p)
		}
	}
	// 4 devices × (Authenticate, TokenUpdate, DeclarativeManagement,
	// CheckOut) + setup's TokenUpdate after DeviceConfigured + the user's
	// UserAuthenticate and TokenUpdate.
	if checkins != 4*4+1+2 || reports < 4*len(srv.commands) {
		t.Errorf("checked %d check-ins and %d reports", checkins, reports)
	}
}

// The checker itself refuses what Apple's devices do not send.
func TestSchemaCheckerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    message
		want string
	}{
		{"Model from an iPhone", message{platform: "iOS", osVersion: "18.1", checkin: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>Authenticate</string><key>Topic</key><string>t</string><key>UDID</key><string>u</string>
			<key>Model</key><string>iPhone15,2</string></dict></plist>`)}, "Model is not sent there"},
		{"a key Apple does not have", message{platform: "iOS", osVersion: "18.1", checkin: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>CheckOut</string><key>Topic</key><string>t</string><key>UDID</key><string>u</string>
			<key>Reason</key><string>bye</string></dict></plist>`)}, "key Reason is not in Apple's schema"},
		{"a wrong type", message{platform: "iOS", osVersion: "18.1", checkin: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>TokenUpdate</string><key>Topic</key><string>t</string><key>UDID</key><string>u</string>
			<key>PushMagic</key><string>m</string><key>Token</key><string>not data</string></dict></plist>`)}, "Token is a <string>"},
		{"a missing required key", message{platform: "iOS", osVersion: "18.1", checkin: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>TokenUpdate</string><key>Topic</key><string>t</string><key>UDID</key><string>u</string>
			<key>PushMagic</key><string>m</string></dict></plist>`)}, "required key Token is missing"},
		{"a serial number from a User Enrollment", message{platform: "iOS", osVersion: "18.1", checkin: true, userEnrollment: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>Authenticate</string><key>Topic</key><string>t</string><key>EnrollmentID</key><string>e</string>
			<key>SerialNumber</key><string>F2LXK0ABCD12</string></dict></plist>`)}, "SerialNumber is not sent there"},
		{"a key newer than the OS", message{platform: "iOS", osVersion: "12.0", checkin: true, raw: []byte(`<plist><dict>
			<key>MessageType</key><string>Authenticate</string><key>Topic</key><string>t</string><key>UDID</key><string>u</string>
			<key>EnrollmentID</key><string>e</string></dict></plist>`)}, "EnrollmentID is not sent there"},
	} {
		problems := strings.Join(checkCheckin(tc.m), "\n")
		if !strings.Contains(problems, tc.want) {
			t.Errorf("%s: problems %q, want %q", tc.name, problems, tc.want)
		}
	}
	if p := checkReport(message{platform: "iOS", requestType: "ProfileList", raw: []byte(`<plist><dict>
		<key>Status</key><string>Acknowledged</string><key>CommandUUID</key><string>c</string><key>UDID</key><string>u</string>
		<key>ProfileList</key><array/><key>Colour</key><string>red</string></dict></plist>`)}); len(p) != 1 || !strings.Contains(p[0], "Colour") {
		t.Errorf("a report with an unknown key: %v", p)
	}
}
