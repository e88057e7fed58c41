package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/custodymdm/custody/dep/deptest"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

func depStatus(t *testing.T, dir string) depStatusJSON {
	t.Helper()
	out, err := cli(t, "dep", "status", "--data", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st []depStatusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) == 0 {
		t.Fatalf("dep status: %v\n%s", err, out)
	}
	return st[0]
}

// Apple Automated Device Enrollment end to end against the fake ADE
// service: the server token uploaded as a .p7m encrypted to our keypair, a
// profile defined, devices synced into pre-enrolled records and given the
// profile (a failed assignment retried), simulated devices enrolling
// through MachineInfo into the identity chain, replays, disowned and
// unknown serials refused, and changes synced.
func TestADEEndToEnd(t *testing.T) {
	fake := deptest.New()
	defer fake.Close()
	abm := fake.AddAccount("Custody ADE")
	abm.AddDevices(deptest.Devices("ADE", 30)...)
	abm.FailAssign(true, "ADE00000007")

	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir, "--dep-sync-interval", "0")

	// The keypair, and a token encrypted to it as Apple Business Manager
	// does.
	pemOut, err := cli(t, "dep", "keypair", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(pemOut))
	if block == nil {
		t.Fatalf("dep keypair printed no PEM:\n%s", pemOut)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := cli(t, "dep", "keypair", "--data", dir); again != pemOut {
		t.Error("dep keypair made a new key the second time")
	}
	p7m, err := deptest.EncryptToken(abm.Tokens, cert)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "dep", "token", "upload", "--data", dir, writeFile(t, "token.p7m", p7m),
		"--name", "abm", "--base-url", fake.URL, "--group", "ade-fleet")
	if err != nil || !strings.Contains(out, `server "Custody ADE"`) {
		t.Fatalf("token upload: %v\n%s", err, out)
	}
	if _, err := cli(t, "dep", "token", "upload", "--data", dir, writeFile(t, "junk.p7m", []byte("junk")), "--name", "bad"); err == nil ||
		!strings.Contains(err.Error(), "400") {
		t.Errorf("uploading junk: %v", err)
	}

	profile := writeFile(t, "profile.json", []byte(`{"profile_name":"Corporate","is_supervised":true,"is_mandatory":true,"skip_setup_items":["Location"]}`))
	uuid, err := cli(t, "dep", "profile", "define", "--data", dir, profile)
	if err != nil {
		t.Fatal(err)
	}
	uuid = strings.TrimSpace(uuid)
	if p := abm.Profile(uuid); p == nil || p.URL != url+"/ade/enroll" || !p.IsSupervised {
		t.Fatalf("profile at the service: %+v", p)
	}

	// The first sync: 30 records, the profile assigned to 29, one FAILED.
	out, err = cli(t, "dep", "sync", "--data", dir)
	if err != nil || !strings.Contains(out, "full fetch") || !strings.Contains(out, "30 fetched") || !strings.Contains(out, "assigned to 29 (1 failed)") {
		t.Fatalf("dep sync: %v\n%s", err, out)
	}
	rows := inventory(t, dir, "--group", "ade-fleet")
	if len(rows) != 30 {
		t.Fatalf("%d ADE records, want 30", len(rows))
	}
	for _, r := range rows {
		if !r.PreEnrolled || r.Source != enroll.SourceADE || r.Ownership != enroll.OwnershipCorporate {
			t.Fatalf("ADE record %+v", r)
		}
	}
	if st := depStatus(t, dir); st.Devices != 30 || st.ProfileOK != 29 || st.AssignFailed != 1 || !st.Fetched || st.DefaultProfile != uuid {
		t.Errorf("status after the first sync: %+v", st)
	}
	// The failure is retried at the next round.
	abm.FailAssign(false, "ADE00000007")
	if out, err := cli(t, "dep", "sync", "--data", dir); err != nil || !strings.Contains(out, "assigned to 1 (0 failed)") {
		t.Errorf("retrying the failed assignment: %v\n%s", err, out)
	}
	if d := abm.Device("ADE00000007"); d.ProfileUUID != uuid {
		t.Errorf("device 7 at the service: %+v", d)
	}

	// A device in Setup Assistant enrols through MachineInfo.
	opts := mdmtest.EnrollOptions{Roots: caPool(t, dir), SerialNumber: "ADE00000001"}
	d, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", opts)
	if err != nil {
		t.Fatal(err)
	}
	var tr enroll.Trace
	out, _ = cli(t, "trace", "--data", dir, "ADE00000001", "--json")
	json.Unmarshal([]byte(out), &tr)
	if tr.Record == nil || tr.Record.Source != enroll.SourceADE || tr.Record.Status != enroll.StatusEnrolled || tr.Record.EnrollmentID != d.UDID ||
		tr.Token == nil || tr.Token.For != "record:ADE00000001" || len(tr.Certs) != 1 || tr.Record.ADE == nil || tr.Record.ADE.ProfileUUID != uuid {
		t.Fatalf("trace of an ADE device: %s", out)
	}
	var steps []string
	for _, e := range tr.Record.History {
		steps = append(steps, string(e.Step))
	}
	if got := strings.Join(steps, " "); got != "created ade-assigned ade-profile authenticated enrolled" {
		t.Errorf("history %s", got)
	}
	text, _ := cli(t, "trace", "--data", dir, "ADE00000001")
	if !strings.Contains(text, "source ade") {
		t.Errorf("trace text lacks the source:\n%s", text)
	}

	// A replayed MachineInfo gets no second profile until the record is
	// reset.
	if _, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", opts); !refused(err) || !strings.Contains(err.Error(), "already enrolled") {
		t.Errorf("replayed MachineInfo: %v, want 403", err)
	}
	if _, err := cli(t, "preenroll", "reset", "--data", dir, "ADE00000001"); err != nil {
		t.Fatal(err)
	}
	if _, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", opts); err != nil {
		t.Errorf("MachineInfo after a reset: %v", err)
	}

	// A disowned device is refused.
	if out, err := cli(t, "dep", "disown", "--data", dir, "--serial", "ADE00000002"); err != nil || !strings.Contains(out, "ADE00000002\tSUCCESS") {
		t.Fatalf("disown: %v\n%s", err, out)
	}
	if _, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", mdmtest.EnrollOptions{SerialNumber: "ADE00000002"}); !refused(err) || !strings.Contains(err.Error(), "disowned") {
		t.Errorf("disowned serial: %v, want 403", err)
	}
	// With the restriction on, an unknown serial is refused.
	cli(t, "settings", "set", "--data", dir, "enrollment.preenrolled-only", "true")
	if _, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", mdmtest.EnrollOptions{SerialNumber: "STRANGER1"}); !refused(err) {
		t.Errorf("unknown serial with the restriction on: %v, want 403", err)
	}
	// A GET is a 405; a body that is not signed MachineInfo is a 400.
	if _, err := mdmtest.Enroll(context.Background(), url+"/ade/enroll", mdmtest.EnrollOptions{}); err == nil {
		t.Error("GET of the ADE endpoint served a profile")
	}
	for _, body := range []string{"", "not CMS", "<plist><dict><key>SERIAL</key><string>ADE00000003</string></dict></plist>"} {
		resp, err := http.Post(url+"/ade/enroll", "application/pkcs7-signature", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("MachineInfo %q: HTTP %d, want 400", body, resp.StatusCode)
		}
	}

	// Changes in Apple Business Manager reach the records.
	abm.AddDevices(deptest.Devices("NEW", 5)...)
	abm.DeleteDevices("ADE00000030")
	out, err = cli(t, "dep", "sync", "--data", dir)
	if err != nil || !strings.Contains(out, "5 added") || !strings.Contains(out, "assigned to 5") {
		t.Fatalf("sync of changes: %v\n%s", err, out)
	}
	st := depStatus(t, dir)
	if st.Devices != 35 || st.Deleted != 2 || st.Enrolled != 1 {
		// ADE00000002 left the server when disowned, ADE00000030 was
		// deleted; ADE00000001 is enrolled.
		t.Errorf("status after the changes: %+v", st)
	}
	if _, err := mdmtest.EnrollADE(context.Background(), url+"/ade/enroll", mdmtest.EnrollOptions{SerialNumber: "ADE00000030"}); !refused(err) ||
		!strings.Contains(err.Error(), "no longer assigned") {
		t.Errorf("a device deleted from the server: %v, want 403", err)
	}

	// A second ABM server at once, its token given decrypted.
	school := fake.AddAccount("School")
	school.AddDevices(deptest.Devices("SCH", 3)...)
	js, _ := json.Marshal(school.Tokens)
	if _, err := cli(t, "dep", "token", "upload", "--data", dir, writeFile(t, "school.json", js), "--name", "school", "--base-url", fake.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "dep", "sync", "--data", dir); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("sync without a name among two tokens: %v", err)
	}
	if out, err := cli(t, "dep", "sync", "--data", dir, "--name", "school"); err != nil || !strings.Contains(out, "school: full fetch") || !strings.Contains(out, "3 fetched") {
		t.Errorf("sync of the second token: %v\n%s", err, out)
	}
	out, _ = cli(t, "dep", "status", "--data", dir)
	if !strings.Contains(out, "abm") || !strings.Contains(out, "school") || !strings.Contains(out, "School") {
		t.Errorf("status with two tokens:\n%s", out)
	}
}
