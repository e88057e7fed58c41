package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/internal/peertest"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/scep"
)

// apiCall calls the admin API of the server whose data dir is dir.
func apiCall(t *testing.T, dir, method, path string, in, out any) {
	t.Helper()
	info, err := readServerInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, info.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatal(err)
		}
	}
}

func caPool(t testing.TB, dir string) *x509.CertPool {
	pemData, err := os.ReadFile(filepath.Join(dir, fileCACert))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemData)
	return p
}

// An enrollment link serves a profile signed so that openssl accepts it,
// once.
func TestEnrollmentProfileSignedOnce(t *testing.T) {
	openssl := peertest.Need(t, "openssl", "openssl")
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)

	url, err := cli(t, "enroll", "new", "--data", dir, "--note", "ana")
	if err != nil {
		t.Fatal(err)
	}
	url = strings.TrimSpace(url)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	path := filepath.Join(t.TempDir(), "enroll.mobileconfig")
	os.WriteFile(path, profile, 0o644)
	out, err := exec.Command(openssl, "cms", "-verify", "-inform", "DER", "-in", path,
		"-CAfile", filepath.Join(dir, fileCACert), "-purpose", "any").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("com.apple.security.scep")) || !bytes.Contains(out, []byte("com.apple.mdm")) {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("<key>SignMessage</key>")) || !bytes.Contains(out, []byte(strings.TrimSuffix(url, url[strings.LastIndex(url, "/enroll/"):])+"/mdm")) {
		t.Errorf("profile lacks SignMessage or the MDM ServerURL:\n%s", out)
	}

	again, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusGone {
		t.Errorf("second GET of a used link: %d, want 410", again.StatusCode)
	}
	bad, _ := http.Get(url[:strings.LastIndex(url, "/")] + "/nonsense")
	bad.Body.Close()
	if bad.StatusCode != http.StatusNotFound {
		t.Errorf("unknown link: %d, want 404", bad.StatusCode)
	}
}

// A simulated iPhone follows an enrollment link: it verifies the profile,
// gets its identity by SCEP, checks in, and its certificate records the
// link that enrolled it.
func TestDeviceEnrolsFromLink(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)

	var link enrollmentResponse
	apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{For: "record-ana"}, &link)
	dev, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir), RequireSigned: true})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if done, err := dev.Poll(context.Background()); err != nil || len(done) != 0 {
		t.Fatalf("Poll: %d commands, %v", len(done), err)
	}
	var cert certJSON
	apiCall(t, dir, http.MethodGet, "/api/v1/certs/"+mdm.CertFingerprint(dev.Cert), nil, &cert)
	if cert.For != link.ID || cert.ChallengeID == "" || !strings.Contains(cert.Subject, link.ID) {
		t.Errorf("device cert %+v: want it minted for enrollment %s", cert, link.ID)
	}
	topic, _ := os.ReadFile(filepath.Join(dir, fileTopic))
	if dev.Topic != strings.TrimSpace(string(topic)) || !strings.HasPrefix(dev.Topic, "com.apple.mgmt.External.") {
		t.Errorf("device topic %q, server topic %q", dev.Topic, topic)
	}
}

// The administrator's view: list the enrolled device, queue commands from
// the command line, read the results, erase the device.
func TestCommandsFromCLI(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	var link enrollmentResponse
	apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{}, &link)
	dev, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
	if err != nil {
		t.Fatal(err)
	}

	out, err := cli(t, "devices", "list", "--data", dir)
	if err != nil || !strings.Contains(out, dev.UDID) || !strings.Contains(out, dev.SerialNumber) || !strings.Contains(out, "enrolled") {
		t.Fatalf("devices list: %v\n%s", err, out)
	}
	profile := filepath.Join(t.TempDir(), "wifi.mobileconfig")
	os.WriteFile(profile, []byte(`<plist><dict><key>PayloadIdentifier</key><string>com.example.wifi</string></dict></plist>`), 0o644)
	info, err := cli(t, "enqueue", "--data", dir, dev.UDID, "--type", "DeviceInformation", "--param", "Queries=SerialNumber", "--param", "Queries=OSVersion")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "enqueue", "--data", dir, dev.UDID, "--type", "InstallProfile", "--param", "Payload=@"+profile); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "enqueue", "--data", dir, "no-such-device", "--type", "DeviceLock"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("enqueue for an unknown device: %v", err)
	}
	if _, err := cli(t, "enqueue", "--data", dir, dev.UDID, "--type", "DeviceLock", "--param", "Colour=red"); err == nil || !strings.Contains(err.Error(), "Colour") {
		t.Errorf("enqueue with an unknown key: %v", err)
	}

	if done, err := dev.Poll(context.Background()); err != nil || len(done) != 2 {
		t.Fatalf("Poll: %d commands, %v", len(done), err)
	}
	out, err = cli(t, "commands", "--data", dir, dev.UDID, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cmds struct {
		Queue   []queuedJSON `json:"queue"`
		Results []resultJSON `json:"results"`
	}
	json.Unmarshal([]byte(out), &cmds)
	if len(cmds.Queue) != 0 || len(cmds.Results) != 2 || cmds.Results[0].CommandUUID != strings.TrimSpace(info) ||
		cmds.Results[0].RequestType != "DeviceInformation" || cmds.Results[0].Status != "Acknowledged" ||
		!strings.Contains(cmds.Results[0].Plist, dev.SerialNumber) || cmds.Results[1].Status != "Acknowledged" {
		t.Fatalf("commands: %s", out)
	}
	if p := dev.Profiles(); len(p) != 1 || p[0] != "com.example.wifi" {
		t.Errorf("device profiles %v", p)
	}

	if _, err := cli(t, "enqueue", "--data", dir, dev.UDID, "--type", "EraseDevice"); err != nil {
		t.Fatal(err)
	}
	dev.Poll(context.Background())
	var shown deviceJSON
	out, _ = cli(t, "devices", "show", "--data", dir, "--json", dev.UDID)
	json.Unmarshal([]byte(out), &shown)
	if !dev.Wiped() || shown.WipedAt.IsZero() || shown.Enabled {
		t.Errorf("after EraseDevice: device wiped %v, record %+v", dev.Wiped(), shown)
	}
}

// Queueing a command pushes the device through APNs (a fake here), which
// wakes it to fetch and answer; an uploaded push certificate sets the topic
// of later enrollments.
func TestPushOnEnqueue(t *testing.T) {
	dir := t.TempDir()
	fake := serveWithFakeAPNs(t, dir)

	var link enrollmentResponse
	apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{}, &link)
	dev, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	fake.Register(dev)
	uuid, err := cli(t, "enqueue", "--data", dir, dev.UDID, "--type", "DeviceLock", "--param", "Message=Call IT")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-fake.Wakes:
		if w.Err != nil || len(w.Commands) != 1 || w.Commands[0].CommandUUID != strings.TrimSpace(uuid) {
			t.Fatalf("woken device ran %v, %v", w.Commands, w.Err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("enqueue did not push the device")
	}
	if p := fake.Pushes(); len(p) != 1 || p[0].Topic != dev.Topic || p[0].PushMagic != dev.PushMagic {
		t.Errorf("pushes %+v", p)
	}
	if out, err := cli(t, "push", "--data", dir, dev.UDID); err != nil || !strings.Contains(out, "pushed "+dev.UDID) {
		t.Errorf("custody push: %q, %v", out, err)
	}
	<-fake.Wakes

	certFile := filepath.Join(t.TempDir(), "push.pem")
	os.WriteFile(certFile, fakePushCert(t, "com.apple.mgmt.External.5c0ffee0-uploaded"), 0o600)
	if out, err := cli(t, "pushcert", "upload", "--data", dir, certFile); err != nil || !strings.Contains(out, "com.apple.mgmt.External.5c0ffee0-uploaded") {
		t.Fatalf("pushcert upload: %q, %v", out, err)
	}
	apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{}, &link)
	second, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if second.Topic != "com.apple.mgmt.External.5c0ffee0-uploaded" {
		t.Errorf("enrollment after upload has topic %q", second.Topic)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, pemCert(fake.Certificate()), 0o600)
	if _, err := cli(t, "pushcert", "upload", "--data", dir, bad); err == nil {
		t.Error("a certificate without its key was accepted")
	}
}

// fakePushCert makes a self-signed certificate shaped like Apple's MDM push
// certificate (topic in the UID), with its key, in PEM.
func fakePushCert(t *testing.T, topic string) []byte {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		Subject: pkix.Name{CommonName: "APSP:" + topic, ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: topic},
		}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return append(pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)...)
}

// The story for a fleet: N devices enrol from their own links,
// are pushed, answer DeviceInformation and InstallProfile, and are erased.
func TestFleetEndToEnd(t *testing.T) {
	const n = 8
	dir := t.TempDir()
	fake := serveWithFakeAPNs(t, dir)

	devices := make([]*mdmtest.Device, n)
	errs := make(chan error, n)
	for i := range devices {
		var link enrollmentResponse
		apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{For: fmt.Sprint("record-", i)}, &link)
		go func() {
			d, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir), RequireSigned: true})
			devices[i] = d
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("enrol: %v", err)
		}
	}
	ids := make([]string, n)
	for i, d := range devices {
		fake.Register(d)
		ids[i] = d.UDID
	}
	profile := filepath.Join(t.TempDir(), "vpn.mobileconfig")
	os.WriteFile(profile, []byte(`<plist><dict><key>PayloadIdentifier</key><string>com.example.vpn</string></dict></plist>`), 0o644)
	wait := func(what string) {
		t.Helper()
		for range n {
			select {
			case w := <-fake.Wakes:
				if w.Err != nil {
					t.Fatalf("%s: %v", what, w.Err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: not every device was woken", what)
			}
		}
	}
	if _, err := cli(t, append([]string{"enqueue", "--data", dir, "--type", "DeviceInformation", "--param", "Queries=SerialNumber", "--no-push"}, ids...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, append([]string{"enqueue", "--data", dir, "--type", "InstallProfile", "--param", "Payload=@" + profile}, ids...)...); err != nil {
		t.Fatal(err)
	}
	wait("DeviceInformation and InstallProfile")
	for _, d := range devices {
		var cmds struct {
			Results []resultJSON `json:"results"`
		}
		apiCall(t, dir, http.MethodGet, "/api/v1/devices/"+d.UDID+"/commands", nil, &cmds)
		if len(cmds.Results) != 2 || !strings.Contains(cmds.Results[0].Plist, "<string>"+d.SerialNumber+"</string>") ||
			cmds.Results[1].RequestType != "InstallProfile" || cmds.Results[1].Status != "Acknowledged" {
			t.Errorf("%s results: %+v", d.UDID, cmds.Results)
		}
		if p := d.Profiles(); len(p) != 1 || p[0] != "com.example.vpn" {
			t.Errorf("%s profiles %v", d.UDID, p)
		}
	}
	if _, err := cli(t, append([]string{"enqueue", "--data", dir, "--type", "EraseDevice"}, ids...)...); err != nil {
		t.Fatal(err)
	}
	wait("EraseDevice")
	var list []deviceJSON
	out, _ := cli(t, "devices", "list", "--data", dir, "--json")
	json.Unmarshal([]byte(out), &list)
	wiped := 0
	for _, d := range list {
		if !d.WipedAt.IsZero() {
			wiped++
		}
	}
	for _, d := range devices {
		if !d.Wiped() {
			t.Errorf("%s not wiped", d.UDID)
		}
	}
	if wiped != n {
		t.Errorf("%d of %d devices recorded as wiped", wiped, n)
	}
}

// A device that renews its identity by SCEP keeps its enrollment: the new
// certificate is rebound, and the old one no longer speaks for it.
func TestRenewalRebinds(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir)
	var link enrollmentResponse
	apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{}, &link)
	dev, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	oldCert, oldKey := dev.Cert, dev.Key
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(newKey, pkix.Name{CommonName: dev.Cert.Subject.CommonName}, "")
	renewed, err := (&scep.Client{URL: url + "/scep"}).Renew(context.Background(), oldCert, oldKey, csr)
	if err != nil {
		t.Fatal(err)
	}
	dev.Cert, dev.Key = renewed, newKey
	if _, err := dev.Poll(context.Background()); err != nil {
		t.Fatalf("poll with the renewed identity: %v", err)
	}
	var shown deviceJSON
	apiCall(t, dir, http.MethodGet, "/api/v1/devices/"+dev.UDID, nil, &shown)
	if shown.CertFingerprint != mdm.CertFingerprint(renewed) {
		t.Errorf("enrollment bound to %s, want the renewed %s", shown.CertFingerprint, mdm.CertFingerprint(renewed))
	}
	old := dev.Clone()
	old.Cert, old.Key = oldCert, oldKey
	var he *mdmtest.HTTPError
	if _, err := old.Poll(context.Background()); !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
		t.Errorf("the replaced certificate: %v, want 403", err)
	}
}

// custody sim apple drives simulated devices through every phase against a
// live server and reports each phase; three devices share two keys, and
// their commands are enqueued two devices at a time.
func TestSimApple(t *testing.T) {
	defer func(n int) { enqueueChunk = n }(enqueueChunk)
	enqueueChunk = 2
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	out, err := cli(t, "sim", "apple", "--data", dir, "--devices", "3", "--concurrency", "2", "--checkins", "2", "--commands", "2", "--keys", "2",
		"--ca", filepath.Join(dir, fileCACert))
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	for _, want := range []string{"enrol: 3 in", "idle check-ins: 6 in", "command round trips: 6 in", "server CPU", "p99", "Result", "TokenUpdate"} {
		if !strings.Contains(out, want) {
			t.Errorf("sim report lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`idle check-ins: 6 in .*\n.*\n  \(server side, all MDM requests\) +n=6 `).MatchString(out) {
		t.Errorf("sim report lacks the server's own latencies for the 6 idle check-ins:\n%s", out)
	}
	if strings.Contains(out, "errors:") {
		t.Errorf("sim reported errors:\n%s", out)
	}
	var list []deviceJSON
	devs, _ := cli(t, "devices", "list", "--data", dir, "--json")
	json.Unmarshal([]byte(devs), &list)
	if len(list) != 3 {
		t.Errorf("%d devices enrolled, want 3", len(list))
	}
}

// The sim's server-side percentiles are interpolated within histogram
// buckets as Prometheus's histogram_quantile does.
func TestQuantile(t *testing.T) {
	b := []bucket{{0.001, 50}, {0.002, 90}, {0.004, 100}, {math.Inf(1), 100}}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, time.Millisecond}, {0.25, 500 * time.Microsecond}, {0.7, 1500 * time.Microsecond}, {0.95, 3 * time.Millisecond}, {1, 4 * time.Millisecond}} {
		if got := quantile(b, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	over := []bucket{{0.001, 1}, {math.Inf(1), 10}}
	if got := quantile(over, 0.99); got != time.Millisecond {
		t.Errorf("quantile in the +Inf bucket = %v, want the last finite bound", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}

// serveWithFakeAPNs starts custody serve on dir with its APNs host pointed
// at a fake, which it returns; both stop when the test ends.
func serveWithFakeAPNs(t *testing.T, dir string, extra ...string) *mdmtest.APNs {
	t.Helper()
	fake := mdmtest.NewAPNs()
	t.Cleanup(fake.Close)
	caFile := filepath.Join(t.TempDir(), "apns-ca.pem")
	os.WriteFile(caFile, pemCert(fake.Certificate()), 0o644)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	startServe(t, ctx, dir, append([]string{"--apns-host", fake.URL, "--apns-ca", caFile}, extra...)...)
	return fake
}
