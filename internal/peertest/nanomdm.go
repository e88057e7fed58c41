package peertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A NanoMDMServer is a running NanoMDM (the pinned release, NanoMDM in this
// package) with its webhook pointed at the test: every check-in and
// command report it takes arrives as a NanoEvent.
type NanoMDMServer struct {
	// URL is the server's root, e.g. http://127.0.0.1:PORT; devices use
	// URL+"/mdm" as their one MDM URL.
	URL    string
	APIKey string

	mu     sync.Mutex
	events []NanoEvent
	notify chan struct{}
	d      *daemon
}

// A NanoEvent is one webhook event of NanoMDM: a check-in (Topic
// "mdm.Authenticate", "mdm.TokenUpdate", …) or a command report
// ("mdm.Connect", with Status and CommandUUID).
type NanoEvent struct {
	Topic       string
	UDID        string
	Status      string // a report's: Idle, Acknowledged, Error, …
	CommandUUID string
	RawPayload  []byte // the device's plist body as NanoMDM received it
}

// StartNanoMDM starts NanoMDM trusting the device CA caPEM (for a SCEP
// server's issued certificates), with its file storage in a temporary
// directory, an API key, and its webhook sending events to the test. It is
// stopped when the test ends.
func StartNanoMDM(t testing.TB, caPEM []byte) *NanoMDMServer {
	t.Helper()
	bin := NanoMDM.Need(t)
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &NanoMDMServer{APIKey: "peertest-nanomdm", notify: make(chan struct{}, 1)}
	hook := httptest.NewServer(http.HandlerFunc(s.webhook))
	t.Cleanup(hook.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, fmt.Sprintf("nanomdm-%d.log", attempt))
		d, err := startDaemon(cleanEnv(), dir, logPath, bin,
			"-listen", "127.0.0.1:"+port, "-ca", caPath, "-api", s.APIKey,
			"-storage", "filekv", "-storage-dsn", filepath.Join(dir, "db"),
			"-webhook-url", hook.URL, "-debug")
		if err != nil {
			t.Fatalf("peertest: start nanomdm: %v", err)
		}
		t.Cleanup(d.stop)
		url := "http://127.0.0.1:" + port
		err = waitFor(ctx, 20*time.Millisecond, func() (bool, error) {
			if err := d.exitErr(); err != nil {
				return false, err
			}
			resp, err := http.Get(url + "/version")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err == nil {
			s.URL, s.d = url, d
			return s
		}
		d.stop()
		lastErr = fmt.Errorf("nanomdm did not answer on %s: %w\n%s", url, err, d.logTail(20))
	}
	t.Fatalf("peertest: %v", lastErr)
	return nil
}

func (s *NanoMDMServer) webhook(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Topic        string `json:"topic"`
		CheckinEvent *struct {
			UDID       string `json:"udid"`
			RawPayload string `json:"raw_payload"`
		} `json:"checkin_event"`
		AcknowledgeEvent *struct {
			UDID        string `json:"udid"`
			Status      string `json:"status"`
			CommandUUID string `json:"command_uuid"`
			RawPayload  string `json:"raw_payload"`
		} `json:"acknowledge_event"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e := NanoEvent{Topic: ev.Topic}
	var raw string
	switch {
	case ev.CheckinEvent != nil:
		e.UDID, raw = ev.CheckinEvent.UDID, ev.CheckinEvent.RawPayload
	case ev.AcknowledgeEvent != nil:
		a := ev.AcknowledgeEvent
		e.UDID, e.Status, e.CommandUUID, raw = a.UDID, a.Status, a.CommandUUID, a.RawPayload
	}
	e.RawPayload, _ = base64.StdEncoding.DecodeString(raw)
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Events returns the webhook events received so far.
func (s *NanoMDMServer) Events() []NanoEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]NanoEvent(nil), s.events...)
}

// WaitEvents waits until match holds for the events received, or ctx ends.
func (s *NanoMDMServer) WaitEvents(ctx context.Context, match func([]NanoEvent) bool) error {
	for {
		if match(s.Events()) {
			return nil
		}
		select {
		case <-s.notify:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%w; nanomdm log:\n%s", ctx.Err(), s.d.logTail(30))
		}
	}
}

// Enqueue queues a raw command plist for the enrollment ids through
// NanoMDM's own API (PUT /v1/enqueue/ID,ID?nopush=1: there are no pushes
// without an APNs certificate) and returns the API's JSON answer.
func (s *NanoMDMServer) Enqueue(ctx context.Context, command []byte, ids ...string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URL+"/v1/enqueue/"+strings.Join(ids, ",")+"?nopush=1", bytes.NewReader(command))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("nanomdm", s.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("nanomdm enqueue: %s: %s", resp.Status, body)
	}
	return string(body), nil
}

// PID is NanoMDM's process ID.
func (s *NanoMDMServer) PID() int { return s.d.cmd.Process.Pid }

// LogTail returns the last lines of NanoMDM's log.
func (s *NanoMDMServer) LogTail(n int) string { return s.d.logTail(n) }

// EnrollmentProfile returns an unsigned enrollment profile for NanoMDM the
// way its quick start builds one by hand: a SCEP payload (scepURL,
// challenge, a 2048-bit RSA key) and an MDM payload whose ServerURL is
// mdmURL with no separate CheckInURL, signing messages, with topic.
func EnrollmentProfile(scepURL, challenge, mdmURL, topic string) []byte {
	return []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadContent</key>
			<dict>
				<key>Key Type</key><string>RSA</string>
				<key>Challenge</key><string>%s</string>
				<key>Key Usage</key><integer>5</integer>
				<key>Keysize</key><integer>2048</integer>
				<key>URL</key><string>%s</string>
				<key>Subject</key><array><array><array><string>CN</string><string>peertest device</string></array></array></array>
			</dict>
			<key>PayloadIdentifier</key><string>com.github.micromdm.scep</string>
			<key>PayloadType</key><string>com.apple.security.scep</string>
			<key>PayloadUUID</key><string>CB90E976-AD44-4B69-8108-8095E6260978</string>
			<key>PayloadVersion</key><integer>1</integer>
		</dict>
		<dict>
			<key>AccessRights</key><integer>8191</integer>
			<key>CheckOutWhenRemoved</key><true/>
			<key>IdentityCertificateUUID</key><string>CB90E976-AD44-4B69-8108-8095E6260978</string>
			<key>PayloadIdentifier</key><string>com.github.micromdm.nanomdm.mdm</string>
			<key>PayloadType</key><string>com.apple.mdm</string>
			<key>PayloadUUID</key><string>96B11019-B54C-49DC-9480-43525834DE7B</string>
			<key>PayloadVersion</key><integer>1</integer>
			<key>ServerCapabilities</key>
			<array>
				<string>com.apple.mdm.per-user-connections</string>
				<string>com.apple.mdm.bootstraptoken</string>
			</array>
			<key>ServerURL</key><string>%s</string>
			<key>SignMessage</key><true/>
			<key>Topic</key><string>%s</string>
		</dict>
	</array>
	<key>PayloadDisplayName</key><string>Enrollment Profile</string>
	<key>PayloadIdentifier</key><string>com.github.micromdm.nanomdm</string>
	<key>PayloadType</key><string>Configuration</string>
	<key>PayloadUUID</key><string>F9760DD4-F2D1-4F29-8D2C-48D52DD0A9B3</string>
	<key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
`, xmlText(challenge), xmlText(scepURL), xmlText(mdmURL), xmlText(topic)))
}

func xmlText(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
