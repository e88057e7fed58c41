package mdm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/mdm"
)

// The corpus: check-in messages and command reports shaped as Apple
// documents them, for an iPhone, a Mac and its user channel, and a User
// Enrollment, replayed in order against one Service. Each request carries
// the Content-Type an Apple device gives it, is signed by the identity it
// names, and expects a status and a stored effect.

const (
	iosUDID  = "00008110-000A1B2C3D4E5F60"
	macUDID  = "564D1B2A-8C3E-5F4A-9B6C-7D8E9F0A1B2C"
	byodID   = "A7F3C2E1B4D5968776A5B4C3D2E1F0A9B8C7D6E5"
	macUser  = "7A1C7E4B-9D2F-4E35-B6A8-1F0C3D5E7A9B"
	topic    = "com.apple.mgmt.External.0a1b2c3d-4e5f-6789-abcd-ef0123456789"
	checkinC = "application/x-apple-aspen-mdm-checkin"
	reportC  = "application/x-apple-aspen-mdm"
)

func plistDoc(dict string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
` + dict + `
</dict>
</plist>
`
}

// A corpusStep is one request of the corpus.
type corpusStep struct {
	name        string
	as          string // the identity that signs it: "ios", "mac", "byod", "other", or "" for none
	contentType string
	body        string
	// enqueue, when set, is queued for the enrollment before the request.
	enqueue *corpusCommand
	status  int
	// check looks at what was stored and answered.
	check func(t *testing.T, s *server, answer []byte)
}

type corpusCommand struct {
	enrollment, uuid string
	cmd              mdm.Command
}

func enrollment(t *testing.T, s *server, id string) *mdm.Enrollment {
	t.Helper()
	e, err := s.store.Enrollment(context.Background(), id)
	if err != nil {
		t.Fatalf("enrollment %s: %v", id, err)
	}
	return e
}

func lastResult(t *testing.T, s *server, id string) *mdm.Result {
	t.Helper()
	rs, err := s.store.Results(context.Background(), id)
	if err != nil || len(rs) == 0 {
		t.Fatalf("results of %s: %d, %v", id, len(rs), err)
	}
	return rs[len(rs)-1]
}

func queued(t *testing.T, s *server, id string) []*mdm.QueuedCommand {
	t.Helper()
	q, err := s.store.Queue(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestCorpus(t *testing.T) {
	s := newServer(t)
	ids := map[string]deviceIdentity{"ios": newDevice(t, s.ca), "mac": newDevice(t, s.ca), "byod": newDevice(t, s.ca), "other": newDevice(t, s.ca)}
	ack := func(udid, uuid, extra string) string {
		return plistDoc(`<key>CommandUUID</key><string>` + uuid + `</string>
<key>Status</key><string>Acknowledged</string>
<key>UDID</key><string>` + udid + `</string>` + extra)
	}
	steps := []corpusStep{
		// An iPhone, enrolling from a profile.
		{name: "iOS Authenticate", as: "ios", contentType: checkinC, status: 200, body: plistDoc(`
<key>BuildVersion</key><string>22B83</string>
<key>IMEI</key><string>35 209900 176148 1</string>
<key>MEID</key><string>35209900176148</string>
<key>MessageType</key><string>Authenticate</string>
<key>OSVersion</key><string>18.1</string>
<key>ProductName</key><string>iPhone15,2</string>
<key>SerialNumber</key><string>F2LXK0ABCD12</string>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				e := enrollment(t, s, iosUDID)
				if e.Enabled || e.SerialNumber != "F2LXK0ABCD12" || e.ProductName != "iPhone15,2" || e.IMEI != "35 209900 176148 1" || e.Model != "" {
					t.Errorf("after Authenticate: %+v", e)
				}
			}},
		{name: "iOS TokenUpdate", as: "ios", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>2B3C4D5E-6F70-4182-93A4-B5C6D7E8F901</string>
<key>Token</key><data>Ym9ndXMgYXBucyB0b2tlbiBvZiAzMiBieXRlcyEhISE=</data>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + iosUDID + `</string>
<key>UnlockToken</key><data>dW5sb2NrIHRva2Vu</data>`),
			check: func(t *testing.T, s *server, _ []byte) {
				e := enrollment(t, s, iosUDID)
				if !e.Enabled || e.PushMagic != "2B3C4D5E-6F70-4182-93A4-B5C6D7E8F901" || string(e.UnlockToken) != "unlock token" || e.AwaitingConfiguration {
					t.Errorf("after TokenUpdate: %+v", e)
				}
			}},
		{name: "iOS Idle, nothing queued: an empty 200", as: "ios", contentType: reportC, status: 200,
			body: plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, answer []byte) {
				if len(answer) != 0 {
					t.Errorf("Idle with an empty queue answered %q", answer)
				}
			}},
		{name: "iOS Idle with a command queued: the command", as: "ios", contentType: reportC, status: 200,
			enqueue: &corpusCommand{iosUDID, "0001-DEVICEINFO", &mdm.DeviceInformation{Queries: []string{"DeviceName", "BatteryLevel", "IsSupervised"}}},
			body:    plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, answer []byte) {
				p, err := mdm.DecodeCommand(answer)
				if err != nil || p.CommandUUID != "0001-DEVICEINFO" {
					t.Errorf("Idle answered %q (%v)", answer, err)
				}
			}},
		{name: "iOS DeviceInformation Acknowledged", as: "ios", contentType: reportC, status: 200,
			body: ack(iosUDID, "0001-DEVICEINFO", `
<key>QueryResponses</key>
<dict>
	<key>BatteryLevel</key><real>0.86</real>
	<key>DeviceName</key><string>Ana’s iPhone</string>
	<key>IsSupervised</key><true/>
</dict>`),
			check: func(t *testing.T, s *server, answer []byte) {
				r := lastResult(t, s, iosUDID)
				resp, err := mdm.DecodeResponse(r.Raw, r.RequestType)
				if err != nil || r.RequestType != "DeviceInformation" || r.Status != "Acknowledged" {
					t.Fatalf("result %+v, %v", r, err)
				}
				if q := resp.Typed.(*mdm.DeviceInformationResponse).QueryResponses; q.DeviceName != "Ana’s iPhone" || q.BatteryLevel == nil || *q.BatteryLevel != 0.86 {
					t.Errorf("decoded %+v", q)
				}
				if len(answer) != 0 || len(queued(t, s, iosUDID)) != 0 {
					t.Errorf("after the last result: answer %q, queue %d", answer, len(queued(t, s, iosUDID)))
				}
			}},
		{name: "iOS Error with an ErrorChain", as: "ios", contentType: reportC, status: 200,
			enqueue: &corpusCommand{iosUDID, "0002-INSTALLAPP", &mdm.RawCommand{Type: "InstallApplication", Keys: map[string]any{"iTunesStoreID": 361309726}}},
			body: plistDoc(`<key>CommandUUID</key><string>0002-INSTALLAPP</string>
<key>ErrorChain</key>
<array>
	<dict>
		<key>ErrorCode</key><integer>12064</integer>
		<key>ErrorDomain</key><string>MCMDMErrorDomain</string>
		<key>LocalizedDescription</key><string>The app cannot be installed.</string>
		<key>USEnglishDescription</key><string>The app cannot be installed.</string>
	</dict>
</array>
<key>Status</key><string>Error</string>
<key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				r := lastResult(t, s, iosUDID)
				resp, err := mdm.DecodeResponse(r.Raw, "")
				if err != nil || r.Status != "Error" || len(resp.ErrorChain) != 1 || resp.ErrorChain[0].ErrorCode != 12064 {
					t.Errorf("Error result %+v, %+v, %v", r, resp, err)
				}
			}},
		{name: "iOS NotNow: kept, marked", as: "ios", contentType: reportC, status: 200,
			enqueue: &corpusCommand{iosUDID, "0003-LOCK", &mdm.DeviceLock{}},
			body:    plistDoc(`<key>CommandUUID</key><string>0003-LOCK</string><key>Status</key><string>NotNow</string><key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, answer []byte) {
				q := queued(t, s, iosUDID)
				if len(q) != 1 || !q[0].NotNow || len(answer) != 0 {
					t.Errorf("after NotNow: queue %+v, answer %q", q, answer)
				}
			}},
		{name: "iOS Idle after NotNow: the command again", as: "ios", contentType: reportC, status: 200,
			body: plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, answer []byte) {
				if p, err := mdm.DecodeCommand(answer); err != nil || p.CommandUUID != "0003-LOCK" {
					t.Errorf("Idle after NotNow answered %q (%v)", answer, err)
				}
			}},
		{name: "iOS CommandFormatError: removed", as: "ios", contentType: reportC, status: 200,
			body: plistDoc(`<key>CommandUUID</key><string>0003-LOCK</string><key>Status</key><string>CommandFormatError</string><key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if r := lastResult(t, s, iosUDID); r.Status != "CommandFormatError" || len(queued(t, s, iosUDID)) != 0 {
					t.Errorf("after CommandFormatError: %+v, queue %d", r, len(queued(t, s, iosUDID)))
				}
			}},
		{name: "iOS result for a command never queued", as: "ios", contentType: reportC, status: 400,
			body: ack(iosUDID, "NOT-QUEUED", "")},
		{name: "iOS Acknowledged without CommandUUID", as: "ios", contentType: reportC, status: 400,
			body: plistDoc(`<key>Status</key><string>Acknowledged</string><key>UDID</key><string>` + iosUDID + `</string>`)},
		{name: "iOS unknown Status", as: "ios", contentType: reportC, status: 400,
			body: plistDoc(`<key>Status</key><string>Sleeping</string><key>UDID</key><string>` + iosUDID + `</string>`)},
		{name: "iOS Idle as a binary plist", as: "ios", contentType: reportC, status: 200,
			body: binaryIdle(t)},
		{name: "iOS Idle signed by another device's certificate", as: "other", contentType: reportC, status: 403,
			body: plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + iosUDID + `</string>`)},
		{name: "iOS Idle unsigned", as: "", contentType: reportC, status: 400,
			body: plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + iosUDID + `</string>`)},
		{name: "a body that is not a plist", as: "ios", contentType: reportC, status: 400, body: "<plist><dict><key>Status"},
		{name: "an unknown MessageType", as: "ios", contentType: checkinC, status: 400,
			body: plistDoc(`<key>MessageType</key><string>Greetings</string><key>UDID</key><string>` + iosUDID + `</string>`)},
		{name: "Authenticate naming no device", as: "other", contentType: checkinC, status: 400,
			body: plistDoc(`<key>MessageType</key><string>Authenticate</string><key>Topic</key><string>` + topic + `</string>`)},
		{name: "iOS TokenUpdate from Setup Assistant, awaiting configuration", as: "ios", contentType: checkinC, status: 200, body: plistDoc(`
<key>AwaitingConfiguration</key><true/>
<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>2B3C4D5E-6F70-4182-93A4-B5C6D7E8F901</string>
<key>Token</key><data>Ym9ndXMgYXBucyB0b2tlbiBvZiAzMiBieXRlcyEhISE=</data>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, iosUDID); !e.AwaitingConfiguration || e.AwaitingSince.IsZero() {
					t.Errorf("awaiting configuration not recorded: %+v", e)
				}
			}},
		{name: "iOS DeviceConfigured Acknowledged: out of Setup Assistant", as: "ios", contentType: reportC, status: 200,
			enqueue: &corpusCommand{iosUDID, "0004-CONFIGURED", &mdm.DeviceConfigured{}},
			body:    ack(iosUDID, "0004-CONFIGURED", ""),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, iosUDID); e.AwaitingConfiguration || e.ConfiguredAt.IsZero() {
					t.Errorf("after DeviceConfigured: %+v", e)
				}
			}},

		// A Mac, its bootstrap token and a user's channel.
		{name: "macOS Authenticate", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>BuildVersion</key><string>24B83</string>
<key>DeviceName</key><string>Ana’s MacBook Air</string>
<key>MessageType</key><string>Authenticate</string>
<key>Model</key><string>Mac14,2</string>
<key>ModelName</key><string>MacBook Air</string>
<key>OSVersion</key><string>15.1</string>
<key>ProductName</key><string>Mac14,2</string>
<key>SerialNumber</key><string>C02XK1ABJGH5</string>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + macUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, macUDID); e.DeviceName != "Ana’s MacBook Air" || e.ModelName != "MacBook Air" || e.Model != "Mac14,2" {
					t.Errorf("Mac after Authenticate: %+v", e)
				}
			}},
		{name: "macOS TokenUpdate", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A</string>
<key>Token</key><data>bWFjIHB1c2ggdG9rZW4gb2YgMzIgYnl0ZXMhISEhISE=</data>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + macUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, macUDID); !e.Enabled {
					t.Errorf("Mac after TokenUpdate: %+v", e)
				}
			}},
		{name: "macOS SetBootstrapToken", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>AwaitingConfiguration</key><false/>
<key>BootstrapToken</key><data>Ym9vdHN0cmFwIHRva2Vu</data>
<key>MessageType</key><string>SetBootstrapToken</string>
<key>UDID</key><string>` + macUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, macUDID); string(e.BootstrapToken) != "bootstrap token" {
					t.Errorf("bootstrap token %q", e.BootstrapToken)
				}
			}},
		{name: "macOS GetBootstrapToken", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>GetBootstrapToken</string>
<key>UDID</key><string>` + macUDID + `</string>`),
			check: func(t *testing.T, s *server, answer []byte) {
				var got struct{ BootstrapToken []byte }
				if err := plist.Unmarshal(answer, &got); err != nil || string(got.BootstrapToken) != "bootstrap token" {
					t.Errorf("GetBootstrapToken answered %q (%v)", answer, err)
				}
			}},
		{name: "macOS UserAuthenticate, first step: declined with 410", as: "mac", contentType: checkinC, status: 410, body: plistDoc(`
<key>MessageType</key><string>UserAuthenticate</string>
<key>UDID</key><string>` + macUDID + `</string>
<key>UserID</key><string>` + macUser + `</string>`)},
		{name: "macOS user channel TokenUpdate", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>TokenUpdate</string>
<key>NotOnConsole</key><false/>
<key>PushMagic</key><string>1A2B3C4D-5E6F-4071-8293-A4B5C6D7E8F9</string>
<key>Token</key><data>dXNlciBwdXNoIHRva2VuIG9mIDMyIGJ5dGVzISEhISE=</data>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + macUDID + `</string>
<key>UserID</key><string>` + macUser + `</string>
<key>UserLongName</key><string>Ana Lima</string>
<key>UserShortName</key><string>ana</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				e := enrollment(t, s, macUDID+":"+macUser)
				if !e.Enabled || e.DeviceID != macUDID || e.UserID != macUser || e.PushMagic != "1A2B3C4D-5E6F-4071-8293-A4B5C6D7E8F9" {
					t.Errorf("user channel: %+v", e)
				}
			}},
		{name: "macOS user channel ProfileList Acknowledged", as: "mac", contentType: reportC, status: 200,
			enqueue: &corpusCommand{macUDID + ":" + macUser, "0005-USERPROFILES", &mdm.ProfileList{}},
			body: ack(macUDID, "0005-USERPROFILES", `
<key>ProfileList</key><array/>
<key>UserID</key><string>`+macUser+`</string>
<key>UserLongName</key><string>Ana Lima</string>
<key>UserShortName</key><string>ana</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if r := lastResult(t, s, macUDID+":"+macUser); r.RequestType != "ProfileList" || r.Status != "Acknowledged" {
					t.Errorf("user channel result %+v", r)
				}
			}},
		{name: "macOS user channel Idle", as: "mac", contentType: reportC, status: 200,
			body: plistDoc(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + macUDID + `</string><key>UserID</key><string>` + macUser + `</string>`)},
		{name: "Authenticate on a user channel", as: "mac", contentType: checkinC, status: 400, body: plistDoc(`
<key>MessageType</key><string>Authenticate</string>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + macUDID + `</string>
<key>UserID</key><string>` + macUser + `</string>`)},
		{name: "macOS CheckOut: device and user channel disabled", as: "mac", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>CheckOut</string>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + macUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if enrollment(t, s, macUDID).Enabled || enrollment(t, s, macUDID+":"+macUser).Enabled {
					t.Error("channels still enabled after CheckOut")
				}
			}},

		// A personal iPhone in User Enrollment: named by EnrollmentID only.
		{name: "User Enrollment Authenticate", as: "byod", contentType: checkinC, status: 200, body: plistDoc(`
<key>BuildVersion</key><string>22B83</string>
<key>EnrollmentID</key><string>` + byodID + `</string>
<key>MessageType</key><string>Authenticate</string>
<key>OSVersion</key><string>18.1</string>
<key>ProductName</key><string>iPhone16,1</string>
<key>Topic</key><string>` + topic + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, byodID); e.SerialNumber != "" || e.ProductName != "iPhone16,1" {
					t.Errorf("User Enrollment after Authenticate: %+v", e)
				}
			}},
		{name: "User Enrollment TokenUpdate", as: "byod", contentType: checkinC, status: 200, body: plistDoc(`
<key>EnrollmentID</key><string>` + byodID + `</string>
<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>0F1E2D3C-4B5A-4697-8877-665544332211</string>
<key>Token</key><data>cGVyc29uYWwgcHVzaCB0b2tlbiBvZiAzMiBieXRlcyE=</data>
<key>Topic</key><string>` + topic + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if e := enrollment(t, s, byodID); !e.Enabled {
					t.Errorf("User Enrollment after TokenUpdate: %+v", e)
				}
			}},
		{name: "User Enrollment Idle", as: "byod", contentType: reportC, status: 200,
			body: plistDoc(`<key>EnrollmentID</key><string>` + byodID + `</string><key>Status</key><string>Idle</string>`)},
		{name: "iOS CheckOut", as: "ios", contentType: checkinC, status: 200, body: plistDoc(`
<key>MessageType</key><string>CheckOut</string>
<key>Topic</key><string>` + topic + `</string>
<key>UDID</key><string>` + iosUDID + `</string>`),
			check: func(t *testing.T, s *server, _ []byte) {
				if enrollment(t, s, iosUDID).Enabled {
					t.Error("iPhone still enabled after CheckOut")
				}
			}},
	}
	ctx := context.Background()
	for i, st := range steps {
		if st.enqueue != nil {
			payload, err := mdm.MarshalCommand(st.enqueue.uuid, st.enqueue.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.store.Enqueue(ctx, []string{st.enqueue.enrollment}, &mdm.QueuedCommand{
				UUID: st.enqueue.uuid, RequestType: st.enqueue.cmd.RequestType(), Payload: payload, EnqueuedAt: time.Now(),
			}); err != nil {
				t.Fatal(err)
			}
		}
		req, err := http.NewRequest(http.MethodPut, s.url, strings.NewReader(st.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", st.contentType)
		req.Header.Set("User-Agent", "MDM/1.0")
		if st.as != "" {
			id := ids[st.as]
			sig, err := mdm.Sign([]byte(st.body), id.cert, id.key)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Mdm-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.status {
			t.Fatalf("%d %s: status %d, want %d: %s", i, st.name, resp.StatusCode, st.status, bytes.TrimSpace(answer))
		}
		if st.check != nil {
			t.Run(fmt.Sprintf("%02d %s", i, st.name), func(t *testing.T) {
				if resp.StatusCode != 200 {
					answer = nil
				}
				st.check(t, s, answer)
			})
		}
	}
}

// binaryIdle is the iPhone's Idle as a binary plist (written by Python's
// plistlib; this plist library reads binary plists but does not write them).
func binaryIdle(t *testing.T) string {
	b, err := base64.StdEncoding.DecodeString("YnBsaXN0MDDSAQIDBFZTdGF0dXNUVURJRFRJZGxlXxAZMDAwMDgxMTAtMDAwQTFCMkMzRDRFNUY2MAgNFBkeAAAAAAAAAQEAAAAAAAAABQAAAAAAAAAAAAAAAAAAADo=")
	if err != nil {
		t.Fatal(err)
	}
	var check struct{ UDID string }
	if err := plist.Unmarshal(b, &check); err != nil || check.UDID != iosUDID {
		t.Fatalf("binary Idle: %+v, %v", check, err)
	}
	return string(b)
}
