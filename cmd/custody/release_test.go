package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

func historySteps(t *testing.T, dir, serial string) []string {
	t.Helper()
	var tr enroll.Trace
	out, err := cli(t, "trace", "--data", dir, serial, "--json")
	if err != nil || json.Unmarshal([]byte(out), &tr) != nil || tr.Record == nil {
		t.Fatalf("trace %s: %v\n%s", serial, err, out)
	}
	var steps []string
	for _, e := range tr.Record.History {
		steps = append(steps, string(e.Step))
	}
	return steps
}

// A device held in Setup Assistant (ADE's await_device_configured) gets
// its group's profile first, then DeviceConfigured, and leaves; one that
// never fetches its profile is released after --ade-release-after.
func TestDeviceConfiguredRelease(t *testing.T) {
	dir := t.TempDir()
	serveWithFakeAPNs(t, dir, "--ade-release-after", "2s")
	csv := "name,email,ownership,serial,platform\nAna,ana@example.com,corporate,SETUP0001,ios\nBo,bo@example.com,corporate,SETUP0002,ios\n"
	if out, err := cli(t, "preenroll", "import", "--data", dir, "--group", "setup", writeFile(t, "setup.csv", []byte(csv))); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if _, err := cli(t, "assignments", "add", "--data", dir, "setup", "--profile", writeFile(t, "wifi.mobileconfig", mobileconfig("com.example.wifi"))); err != nil {
		t.Fatal(err)
	}
	enrol := func(serial string) *mdmtest.Device {
		t.Helper()
		out, err := cli(t, "enroll", "url", "--data", dir, "--serial", serial)
		if err != nil {
			t.Fatalf("enroll url: %v\n%s", err, out)
		}
		d, err := mdmtest.Enroll(context.Background(), strings.TrimSpace(out),
			mdmtest.EnrollOptions{Roots: caPool(t, dir), SerialNumber: serial, AwaitConfiguration: true})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// Ana's device: the profile, then DeviceConfigured, then out.
	ana := enrol("SETUP0001")
	if show, _ := cli(t, "devices", "show", "SETUP0001", "--data", dir); !strings.Contains(show, "awaiting configuration since") {
		t.Errorf("devices show of a device in Setup Assistant:\n%s", show)
	}
	done, err := ana.Poll(context.Background())
	if err != nil || len(done) != 1 || done[0].Command.RequestType() != "InstallProfile" {
		t.Fatalf("first poll: %v, %v", done, err)
	}
	// Drained of its assignments, the device is released: its next poll
	// gets DeviceConfigured, and it leaves Setup Assistant.
	done, err = ana.Poll(context.Background())
	if err != nil || len(done) != 1 || done[0].Command.RequestType() != "DeviceConfigured" || ana.AwaitingConfiguration {
		t.Fatalf("second poll ran %v (%v); awaiting %v", done, err, ana.AwaitingConfiguration)
	}
	if !slices.Equal(ana.Profiles(), []string{"com.example.wifi"}) {
		t.Errorf("profiles before release: %v", ana.Profiles())
	}
	var row inventoryJSON
	apiCall(t, dir, "GET", "/api/v1/inventory/SETUP0001", nil, &row)
	if row.AwaitingConfiguration || row.ConfiguredAt.IsZero() {
		t.Errorf("inventory after DeviceConfigured: awaiting %v, configured at %v", row.AwaitingConfiguration, row.ConfiguredAt)
	}
	if got := strings.Join(historySteps(t, dir, "SETUP0001"), " "); !strings.Contains(got, "enrolled awaiting-configuration assigned released configured") &&
		!strings.Contains(got, "enrolled assigned awaiting-configuration released configured") {
		t.Errorf("history of a released device: %s", got)
	}
	if text, _ := cli(t, "trace", "--data", dir, "SETUP0001"); !strings.Contains(text, "everything queued for the device was sent") {
		t.Errorf("trace does not say why the device was released:\n%s", text)
	}

	// Bo's device never polls: released by the timeout, DeviceConfigured
	// waits behind its profile.
	bo := enrol("SETUP0002")
	var released bool
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !released; time.Sleep(100 * time.Millisecond) {
		released = slices.Contains(historySteps(t, dir, "SETUP0002"), "released")
	}
	if !released {
		t.Fatal("a device awaiting configuration was not released after --ade-release-after")
	}
	done, err = bo.Poll(context.Background())
	if err != nil || len(done) != 2 || done[0].Command.RequestType() != "InstallProfile" || done[1].Command.RequestType() != "DeviceConfigured" {
		t.Fatalf("Bo's poll after the timeout: %v, %v", done, err)
	}
	if text, _ := cli(t, "trace", "--data", dir, "SETUP0002"); !strings.Contains(text, "still awaiting after 2s") {
		t.Errorf("trace does not say the timeout released the device:\n%s", text)
	}
}
