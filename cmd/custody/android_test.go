package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/zerotouch"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

// decodeQR reads a QR code PNG file as a phone camera would.
func decodeQR(t *testing.T, path string) string {
	t.Helper()
	png, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeQRBytes(t, png)
}

func decodeQRBytes(t testing.TB, png []byte) string {
	t.Helper()
	text, err := campaigntest.DecodeQR(png)
	if err != nil {
		t.Fatalf("decoding the QR code: %v", err)
	}
	return text
}

// Android end to end against the fake Google APIs: CSV-pre-enrolled
// records get tokens whose QR PNG decodes to the exact provisioning JSON,
// simulated devices scan it, enrol and are matched to their records
// through Pub/Sub pushes; a zero-touch device enrols without scanning;
// LOCK and wipe reach devices and statuses follow; a mismatched device
// under the restriction is removed.
func TestAndroidEndToEnd(t *testing.T) {
	fake := zerotouchtest.New()
	defer fake.Close()
	enterprise := fake.AddEnterprise("Example")
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0")

	out, err := cli(t, "android", "bind", "--data", dir, "--enterprise", enterprise, "--endpoint", fake.URL, "--customer", fake.Customer())
	if err != nil || !strings.Contains(out, "bound to "+enterprise) {
		t.Fatalf("android bind: %v\n%s", err, out)
	}
	push := regexp.MustCompile(`Pub/Sub push URL: (\S+)`).FindStringSubmatch(out)
	if push == nil {
		t.Fatalf("bind printed no push URL:\n%s", out)
	}
	fake.PushURL = push[1]

	csv := "name,email,ownership,serial,platform,imei\n" +
		"Ana,ana@example.com,corporate,AND001,android,490154203237518\n" +
		"Bo,bo@example.com,corporate,AND002,android,\n" +
		"Cy,cy@example.com,corporate,AND003,android,\n"
	if _, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "android.csv", []byte(csv))); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(t.TempDir(), "and001.png")
	out, err = cli(t, "android", "token", "--data", dir, "--serial", "AND001", "--png", png)
	if err != nil {
		t.Fatal(err)
	}
	payload := decodeQR(t, png)
	value, err := zerotouch.TokenFromQR([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if payload != string(zerotouch.QRPayload(value)) || !strings.Contains(out, "enrollment link: https://enterprise.google.com/android/enroll?et="+value) {
		t.Fatalf("QR code %s, output:\n%s", payload, out)
	}
	d1, err := fake.ScanQR([]byte(payload), zerotouchtest.DeviceInfo{Serial: "AND001", IMEI: "490154203237518"})
	if err != nil {
		t.Fatal(err)
	}
	var row inventoryJSON
	out, _ = cli(t, "devices", "show", "--data", dir, "AND001", "--json")
	json.Unmarshal([]byte(out), &row)
	if row.Status != "enrolled" || row.ID != d1.Name || row.PreEnrolled {
		t.Fatalf("AND001 after scanning: %s", out)
	}

	// LOCK through custody enqueue, then wipe.
	if _, err := cli(t, "enqueue", "--data", dir, "AND001", "--type", "LOCK"); err != nil {
		t.Fatal(err)
	}
	if ran, err := d1.Poll(); err != nil || len(ran) != 1 || !d1.Locked() {
		t.Fatalf("device after LOCK: %v %v", ran, err)
	}
	trace, _ := cli(t, "trace", "--data", dir, "AND001")
	if !strings.Contains(trace, "command-result") || !strings.Contains(trace, "LOCK done") || !strings.Contains(trace, d1.Name) {
		t.Errorf("trace of an Android device:\n%s", trace)
	}
	if _, err := cli(t, "enqueue", "--data", dir, "AND001", "--type", "WIPE"); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !d1.Wiped() {
		t.Errorf("device after WIPE: %v", err)
	}
	out, _ = cli(t, "devices", "show", "--data", dir, "AND001", "--json")
	row = inventoryJSON{}
	json.Unmarshal([]byte(out), &row)
	if row.Status != string(enroll.StatusWiped) {
		t.Errorf("AND001 after the wipe: %s", out)
	}

	// Under the restriction, AND002's token on another device: deleted.
	cli(t, "settings", "set", "--data", dir, "enrollment.preenrolled-only", "true")
	png2 := filepath.Join(t.TempDir(), "and002.png")
	if _, err := cli(t, "android", "token", "--data", dir, "--serial", "AND002", "--png", png2); err != nil {
		t.Fatal(err)
	}
	bad, err := fake.ScanQR([]byte(decodeQR(t, png2)), zerotouchtest.DeviceInfo{Serial: "NOTOURS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) {
		t.Errorf("mismatched device: %v, want it wiped", err)
	}
	trace, _ = cli(t, "trace", "--data", dir, "AND002")
	if !strings.Contains(trace, "refused") || !strings.Contains(trace, "NOTOURS") {
		t.Errorf("trace of AND002 lacks the refusal:\n%s", trace)
	}

	// Zero-touch: the customer's device becomes a record, gets the
	// configuration, and enrols at first boot.
	fake.ClaimDevice(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "ZT0001"})
	if out, err := cli(t, "zerotouch", "sync", "--data", dir, "--group", "zt"); err != nil || !strings.Contains(out, "1 zero-touch devices") {
		t.Fatalf("zerotouch sync: %v\n%s", err, out)
	}
	if _, err := cli(t, "zerotouch", "configure", "--data", dir, "--name", "Fleet", "--company", "Example Org"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "zerotouch", "apply", "--data", dir, "--imei", "356938035643809"); err != nil {
		t.Fatal(err)
	}
	zd, err := fake.Boot(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "ZT0001"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ = cli(t, "devices", "show", "--data", dir, "ZT0001", "--json")
	row = inventoryJSON{}
	json.Unmarshal([]byte(out), &row)
	if row.Status != "enrolled" || row.ID != zd.Name || row.Source != enroll.SourceZeroTouch {
		t.Errorf("zero-touch device: %s", out)
	}
	if out, err := cli(t, "android", "sync", "--data", dir); err != nil || !strings.Contains(out, "1 devices seen, 0 refused") {
		t.Errorf("android sync: %v\n%s", err, out)
	}
}

// Binding by signup: bind with a project prints Google's signup URL; when
// the administrator has signed up, Google calls /android/callback with the
// enterprise token and the server creates and binds the enterprise.
func TestAndroidSignup(t *testing.T) {
	fake := zerotouchtest.New()
	defer fake.Close()
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir, "--dep-sync-interval", "0")
	out, err := cli(t, "android", "bind", "--data", dir, "--project", "custody-test", "--endpoint", fake.URL)
	if err != nil || !strings.Contains(out, "https://play.google.com/work/adminsignup") {
		t.Fatalf("android bind --project: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(filepath.Join(dir, fileAndroid))
	var cfg androidConfig
	json.Unmarshal(data, &cfg)
	if cfg.PendingSignup == "" || cfg.Enterprise != "" {
		t.Fatalf("binding before the callback: %s", data)
	}
	if resp, err := http.Get(url + "/android/callback?enterpriseToken=wrong"); err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("callback with a wrong token: %v %v", resp, err)
	}
	resp, err := http.Get(url + "/android/callback?enterpriseToken=" + fake.CompleteSignup(cfg.PendingSignup))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: %v %v", resp, err)
	}
	resp.Body.Close()
	data, _ = os.ReadFile(filepath.Join(dir, fileAndroid))
	cfg = androidConfig{}
	json.Unmarshal(data, &cfg)
	if !strings.HasPrefix(cfg.Enterprise, "enterprises/") || cfg.PendingSignup != "" {
		t.Fatalf("binding after the callback: %s", data)
	}
	// The server works with the new enterprise at once.
	if out, err := cli(t, "android", "sync", "--data", dir); err != nil || !strings.Contains(out, "1 policies put") {
		t.Errorf("android sync after signup: %v\n%s", err, out)
	}
}
