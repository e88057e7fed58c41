package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

// sampleCSV returns enroll.WriteSampleCSV's n rows as an administrator's
// spreadsheet exports them: a byte-order mark, CRLF line ends, a quoted
// name with a comma; edit may change the rows (1-based) first.
func sampleCSV(t *testing.T, n int, edit func(rows [][]string)) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := enroll.WriteSampleCSV(&buf, n); err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		rows = append(rows, strings.Split(line, ","))
	}
	if len(rows) > 5 {
		rows[5][0] = `"Doe, Jane"`
	}
	if edit != nil {
		edit(rows)
	}
	var out bytes.Buffer
	out.WriteString("\xEF\xBB\xBF")
	for _, r := range rows {
		out.WriteString(strings.Join(r, ",") + "\r\n")
	}
	return out.Bytes()
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func inventory(t *testing.T, dir string, args ...string) []inventoryJSON {
	t.Helper()
	out, err := cli(t, append([]string{"devices", "list", "--data", dir, "--json"}, args...)...)
	if err != nil {
		t.Fatalf("devices list: %v", err)
	}
	var rows []inventoryJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("devices list: %v\n%s", err, out)
	}
	return rows
}

// enrollSerial enrols a simulated device with the given serial number
// through an enrollment URL.
func enrollSerial(t *testing.T, dir, url, serial string) (*mdmtest.Device, error) {
	t.Helper()
	return mdmtest.Enroll(context.Background(), strings.TrimSpace(url), mdmtest.EnrollOptions{Roots: caPool(t, dir), SerialNumber: serial})
}

func recordURL(t *testing.T, dir, serial string) string {
	t.Helper()
	url, err := cli(t, "enroll", "url", "--data", dir, "--serial", serial)
	if err != nil {
		t.Fatalf("enroll url --serial %s: %v", serial, err)
	}
	return url
}

func mobileconfig(identifier string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>PayloadType</key><string>Configuration</string>
<key>PayloadVersion</key><integer>1</integer>
<key>PayloadIdentifier</key><string>` + identifier + `</string>
<key>PayloadUUID</key><string>6B1D3E52-3F1A-4C55-9E0B-` + fmt.Sprintf("%012X", len(identifier)) + `</string>
<key>PayloadDisplayName</key><string>` + identifier + `</string>
<key>PayloadContent</key><array/>
</dict></plist>`)
}

// installs counts the InstallProfile commands a device has answered.
func installs(t *testing.T, dir, id string) int {
	t.Helper()
	out, err := cli(t, "commands", "--data", dir, id, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cmds struct {
		Queue   []queuedJSON `json:"queue"`
		Results []resultJSON `json:"results"`
	}
	json.Unmarshal([]byte(out), &cmds)
	n := 0
	for _, r := range cmds.Results {
		if r.RequestType == "InstallProfile" && r.Status == "Acknowledged" {
			n++
		}
	}
	return n
}

func poll(t *testing.T, d *mdmtest.Device) int {
	t.Helper()
	done, err := d.Poll(context.Background())
	if err != nil {
		t.Fatalf("%s Poll: %v", d.SerialNumber, err)
	}
	return len(done)
}

// The pre-enrollment workflow end to end: a CSV of 1,000 records with bad
// rows (refused whole, then imported without them, then re-imported), a
// profile assigned to a group before anyone enrols, devices enrolling by
// their records' links, and the profile installed exactly once on each
// device of the group and on no other.
func TestPreEnrollmentImportAndAssignments(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)

	bad := func(rows [][]string) {
		rows[10][1] = "not-an-email" // line 11
		rows[20][3] = "leased"       // line 21
		rows[30][5] = "windows"      // line 31
		rows[41][4] = "SN00000040"   // line 42, a duplicate of line 41
		rows[50][4] = ""             // line 51
	}
	file := writeFile(t, "devices.csv", sampleCSV(t, 1000, bad))

	// Strict: nothing written, every bad line named.
	out, err := cli(t, "preenroll", "import", "--data", dir, file, "--group", "wave-1")
	if err == nil || !strings.Contains(err.Error(), "5 bad rows") {
		t.Fatalf("strict import of a file with bad rows: %v\n%s", err, out)
	}
	for _, want := range []string{"line 11: bad email", "line 21: unknown ownership", "line 31: unknown platform",
		"line 42:", "already on line 41", "line 51:"} {
		if !strings.Contains(out, want) {
			t.Errorf("strict import output lacks %q:\n%s", want, out)
		}
	}
	if n := len(inventory(t, dir)); n != 0 {
		t.Fatalf("strict import of a bad file wrote %d records", n)
	}
	if out, err := cli(t, "preenroll", "import", "--data", dir, file, "--dry-run"); err != nil || !strings.Contains(out, "995 good rows, 5 bad") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if n := len(inventory(t, dir)); n != 0 {
		t.Fatalf("dry run wrote %d records", n)
	}

	// --skip-invalid writes the 995 good rows.
	out, err = cli(t, "preenroll", "import", "--data", dir, file, "--group", "wave-1", "--skip-invalid")
	if err != nil || !strings.Contains(out, "records 995 created") {
		t.Fatalf("import --skip-invalid: %v\n%s", err, out)
	}
	rows := inventory(t, dir)
	if len(rows) != 995 {
		t.Fatalf("%d records after import, want 995", len(rows))
	}
	for _, r := range rows {
		if !r.PreEnrolled || r.Status != "pre-approved" || r.Source != "csv" || len(r.Groups) != 1 || r.Groups[0] != "wave-1" || r.ID != "" {
			t.Fatalf("imported record %+v", r)
		}
	}
	if rows[4].UserName != "Doe, Jane" || rows[0].Platform != enroll.PlatformMacOS {
		t.Errorf("quoted name or platform: %+v / %+v", rows[4], rows[0])
	}

	// Re-importing the file, line 11 fixed and one device renamed: one new
	// record, one changed, no duplicates.
	fixed := writeFile(t, "fixed.csv", sampleCSV(t, 1000, func(rows [][]string) {
		bad(rows)
		rows[10][1] = "user00010@example.com"
		rows[1][6] = "Reception iPad"
	}))
	out, err = cli(t, "preenroll", "import", "--data", dir, fixed, "--group", "wave-1", "--skip-invalid")
	if err != nil || !strings.Contains(out, "records 1 created, 1 updated, 994 unchanged") {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	if n := len(inventory(t, dir)); n != 996 {
		t.Fatalf("%d records after re-import, want 996", n)
	}
	show, err := cli(t, "devices", "show", "--data", dir, "sn00000001")
	if err != nil || !strings.Contains(show, "Pre-enrolled device") || !strings.Contains(show, "Reception iPad") ||
		!strings.Contains(show, "user00001@example.com") || strings.Contains(show, "Enrollment:") {
		t.Fatalf("devices show of a pre-enrolled record: %v\n%s", err, show)
	}

	// A profile assigned to a group before any of its devices enrolled.
	if _, err := cli(t, "groups", "add", "--data", dir, "ring-a", "--serial", "SN00000001", "--serial", "SN00000002", "--serial", "SN00000003"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "groups", "add", "--data", dir, "ring-a", "--serial", "NOPE1"); err == nil || !strings.Contains(err.Error(), "NOPE1") {
		t.Errorf("adding an unknown serial to a group: %v", err)
	}
	wifi := writeFile(t, "wifi.mobileconfig", mobileconfig("com.example.wifi"))
	if _, err := cli(t, "assignments", "add", "--data", dir, "ring-a", "--profile", wifi); err != nil {
		t.Fatal(err)
	}
	devs := map[string]*mdmtest.Device{}
	for _, sn := range []string{"SN00000001", "SN00000002", "SN00000004"} {
		d, err := enrollSerial(t, dir, recordURL(t, dir, sn), sn)
		if err != nil {
			t.Fatalf("enrol %s: %v", sn, err)
		}
		devs[sn] = d
	}
	for sn, want := range map[string]int{"SN00000001": 1, "SN00000002": 1, "SN00000004": 0} {
		if n := poll(t, devs[sn]); n != want {
			t.Errorf("%s got %d commands after enrolling, want %d", sn, n, want)
		}
	}
	// Once: another TokenUpdate queues nothing again.
	for _, d := range devs {
		if err := d.TokenUpdate(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := poll(t, d); n != 0 {
			t.Errorf("%s got %d commands after a second TokenUpdate, want 0", d.SerialNumber, n)
		}
	}
	// A device added to the group later gets the profile at once.
	if _, err := cli(t, "groups", "add", "--data", dir, "ring-a", "--serial", "SN00000004"); err != nil {
		t.Fatal(err)
	}
	if n := poll(t, devs["SN00000004"]); n != 1 {
		t.Errorf("SN00000004 got %d commands after joining the group, want 1", n)
	}
	// An assignment added later reaches every enrolled member at once.
	vpn := writeFile(t, "vpn.mobileconfig", mobileconfig("com.example.vpn"))
	if _, err := cli(t, "assignments", "add", "--data", dir, "ring-a", "--profile", vpn); err != nil {
		t.Fatal(err)
	}
	for sn, d := range devs {
		if n := poll(t, d); n != 1 {
			t.Errorf("%s got %d commands after the second assignment, want 1", sn, n)
		}
		if p := d.Profiles(); len(p) != 2 || p[0] != "com.example.vpn" && p[1] != "com.example.vpn" {
			t.Errorf("%s profiles %v", sn, p)
		}
		if n := installs(t, dir, d.UDID); n != 2 {
			t.Errorf("%s answered %d InstallProfile commands, want 2 (each profile once)", sn, n)
		}
	}
	// A member that enrols after both assignments gets both, once.
	d3, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000003"), "SN00000003")
	if err != nil {
		t.Fatal(err)
	}
	if n := poll(t, d3); n != 2 || installs(t, dir, d3.UDID) != 2 {
		t.Errorf("SN00000003 got %d commands on enrolling, want 2", n)
	}
	// A device outside the group never got anything.
	d5, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000005"), "SN00000005")
	if err != nil {
		t.Fatal(err)
	}
	if n := poll(t, d5); n != 0 || len(d5.Profiles()) != 0 {
		t.Errorf("SN00000005, outside the group, got %d commands", n)
	}

	// A command assigned to the group reaches its enrolled members.
	devs["SN00000003"] = d3
	if _, err := cli(t, "assignments", "add", "--data", dir, "ring-a", "--type", "DeviceInformation", "--param", "Queries=SerialNumber"); err != nil {
		t.Fatal(err)
	}
	for sn, d := range devs {
		done, err := d.Poll(context.Background())
		if err != nil || len(done) != 1 || done[0].Command.RequestType() != "DeviceInformation" {
			t.Errorf("%s after the command assignment: %d commands, %v", sn, len(done), err)
		}
	}
	if n := poll(t, d5); n != 0 {
		t.Errorf("SN00000005, outside the group, got %d commands", n)
	}
	out, err = cli(t, "assignments", "list", "--data", dir, "--group", "ring-a")
	if err != nil || strings.Count(out, "ring-a") != 3 || !strings.Contains(out, "com.example.vpn") || !strings.Contains(out, "DeviceInformation") {
		t.Errorf("assignments list: %v\n%s", err, out)
	}

	if n := len(inventory(t, dir, "--status", "enrolled")); n != 5 {
		t.Errorf("--status enrolled: %d devices, want 5", n)
	}
	ring := inventory(t, dir, "--group", "ring-a")
	if len(ring) != 4 {
		t.Errorf("--group ring-a: %d devices, want 4", len(ring))
	}
	for _, r := range ring {
		if r.PreEnrolled || r.Status != "enrolled" || r.ID == "" || r.Model == "" {
			t.Errorf("enrolled ring member %+v", r)
		}
	}
	if n := len(inventory(t, dir, "--status", "pre-approved")); n != 991 {
		t.Errorf("--status pre-approved: %d, want 991", n)
	}
	if _, err := cli(t, "devices", "list", "--data", dir, "--status", "lost"); err == nil || !strings.Contains(err.Error(), "unknown status") {
		t.Errorf("--status lost: %v", err)
	}
	groups, err := cli(t, "groups", "list", "--data", dir)
	if err != nil || !strings.Contains(groups, "ring-a") || !strings.Contains(groups, "wave-1") {
		t.Errorf("groups list: %v\n%s", err, groups)
	}
}

// The users import: users without devices, from a file with only name,
// email and ownership.
func TestUsersImport(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	file := writeFile(t, "users.csv", []byte("full name,E-Mail,Ownership Type\r\nAna Lima,ana@example.com,Personal\r\nBo,bo@example,corporate\r\n"))
	out, err := cli(t, "users", "import", "--data", dir, file)
	if err == nil || !strings.Contains(out, "line 3: bad email") {
		t.Fatalf("users import with a bad row: %v\n%s", err, out)
	}
	out, err = cli(t, "users", "import", "--data", dir, file, "--skip-invalid", "--group", "staff")
	if err != nil || !strings.Contains(out, "users 1 created") || !strings.Contains(out, "records 0 created") {
		t.Fatalf("users import: %v\n%s", err, out)
	}
	// A user's link: a personal device enrols as that user's.
	url, err := cli(t, "enroll", "url", "--data", dir, "--email", "ANA@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrollSerial(t, dir, url, "BYOD0001"); err != nil {
		t.Fatal(err)
	}
	d, err := cli(t, "devices", "show", "--data", dir, "BYOD0001", "--json")
	var row inventoryJSON
	json.Unmarshal([]byte(d), &row)
	if err != nil || row.UserEmail != "ana@example.com" || row.Ownership != enroll.OwnershipPersonal || row.Status != "enrolled" || row.Source != "enrollment" {
		t.Errorf("device enrolled with a user's link: %v %+v", err, row)
	}
	if _, err := cli(t, "enroll", "url", "--data", dir, "--email", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("link for an unknown user: %v", err)
	}

	// A column the automatic mapping does not know, mapped by hand.
	odd := writeFile(t, "odd.csv", []byte("Name,Email,Ownership,Kennung,Platform\nAna Lima,ana@example.com,personal,ipad0042,iPadOS\n"))
	if out, err := cli(t, "preenroll", "import", "--data", dir, odd); err == nil || !strings.Contains(err.Error(), "serial") {
		t.Errorf("import without a serial column: %v\n%s", err, out)
	}
	out, err = cli(t, "preenroll", "import", "--data", dir, odd, "--map", "Kennung=serial")
	if err != nil || !strings.Contains(out, `serial←"Kennung"`) || !strings.Contains(out, "records 1 created") {
		t.Fatalf("import with --map: %v\n%s", err, out)
	}
	d, _ = cli(t, "devices", "show", "--data", dir, "IPAD0042", "--json")
	row = inventoryJSON{}
	json.Unmarshal([]byte(d), &row)
	if row.Platform != enroll.PlatformIOS || row.UserEmail != "ana@example.com" || !row.PreEnrolled {
		t.Errorf("mapped record: %+v", row)
	}
}

// refused reports whether err is the server refusing the device with 403.
func refused(err error) bool {
	var he *mdmtest.HTTPError
	return errors.As(err, &he) && he.StatusCode == http.StatusForbidden
}

// The pre-enrolled-only restriction: with it on, links are minted only for
// records, an unknown serial is refused, and a record's link works only for
// that record's serial; with it off, an unknown device enrols and gets a
// record.
func TestPreEnrolledOnly(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	file := writeFile(t, "devices.csv", sampleCSV(t, 3, nil))
	if _, err := cli(t, "preenroll", "import", "--data", dir, file); err != nil {
		t.Fatal(err)
	}
	// A generic link minted while the restriction is off.
	generic, err := cli(t, "enroll", "new", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "settings", "set", "--data", dir, "enrollment.preenrolled-only", "true"); err != nil || !strings.Contains(out, "= true") {
		t.Fatalf("settings set: %v %s", err, out)
	}
	if out, _ := cli(t, "settings", "get", "--data", dir, "enrollment.preenrolled-only"); strings.TrimSpace(out) != "true" {
		t.Errorf("settings get: %q", out)
	}
	if _, err := cli(t, "settings", "set", "--data", dir, "enrollment.preenrolled-only", "maybe"); err == nil || !strings.Contains(err.Error(), "not a boolean") {
		t.Errorf("settings set to a non-boolean: %v", err)
	}
	if _, err := cli(t, "settings", "set", "--data", dir, "enrollment.colour", "red"); err == nil || !strings.Contains(err.Error(), "unknown setting") {
		t.Errorf("settings set of an unknown setting: %v", err)
	}

	// Links and challenges only for records.
	if _, err := cli(t, "enroll", "new", "--data", dir); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("generic link with the restriction on: %v", err)
	}
	if _, err := cli(t, "challenge", "--data", dir); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("challenge without a record with the restriction on: %v", err)
	}
	if _, err := cli(t, "challenge", "--data", dir, "--for", "record:SN00000001"); err != nil {
		t.Errorf("challenge for a record with the restriction on: %v", err)
	}
	if _, err := cli(t, "enroll", "url", "--data", dir, "--serial", "SN99999999"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("link for an unknown serial: %v", err)
	}

	// An unknown serial is refused, even with a link that predates the
	// restriction.
	if _, err := enrollSerial(t, dir, generic, "UNKNOWN01"); !refused(err) {
		t.Errorf("unknown serial with the restriction on: %v, want 403", err)
	}
	// Record 1's link presented by a device with serial 2 is refused, and
	// the refusal is on record 1's history.
	if _, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000001"), "SN00000002"); !refused(err) {
		t.Errorf("record 1's link with serial 2: %v, want 403", err)
	}
	trace, _ := cli(t, "trace", "--data", dir, "SN00000001")
	if !strings.Contains(trace, "refused") || !strings.Contains(trace, "reports serial number SN00000002") {
		t.Errorf("trace of record 1 lacks the refusal:\n%s", trace)
	}
	// Record 2's own link works; CheckOut later unenrols it.
	d2, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000002"), "SN00000002")
	if err != nil {
		t.Fatalf("record 2's link with serial 2: %v", err)
	}
	if err := d2.CheckOut(context.Background()); err != nil {
		t.Fatal(err)
	}
	var row inventoryJSON
	out, _ := cli(t, "devices", "show", "--data", dir, "SN00000002", "--json")
	json.Unmarshal([]byte(out), &row)
	if row.Status != "unenrolled" || row.Enabled {
		t.Errorf("record 2 after CheckOut: %+v", row)
	}
	if n := len(inventory(t, dir)); n != 3 {
		t.Errorf("%d inventory rows, want the 3 records", n)
	}

	// Off: an unknown device enrols and a record appears.
	if _, err := cli(t, "settings", "set", "--data", dir, "enrollment.preenrolled-only", "false"); err != nil {
		t.Fatal(err)
	}
	url, err := cli(t, "enroll", "new", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrollSerial(t, dir, url, "UNKNOWN02"); err != nil {
		t.Fatalf("unknown serial with the restriction off: %v", err)
	}
	row = inventoryJSON{}
	out, _ = cli(t, "devices", "show", "--data", dir, "UNKNOWN02", "--json")
	json.Unmarshal([]byte(out), &row)
	if row.Serial != "UNKNOWN02" || row.Status != "enrolled" || row.Source != "enrollment" || row.ID == "" || row.PreEnrolled {
		t.Errorf("record of an unknown device: %+v", row)
	}
	// Even with it off, a record's link does not enrol another serial.
	if _, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000003"), "SN00000001"); !refused(err) {
		t.Errorf("record 3's link with serial 1, restriction off: %v, want 403", err)
	}
}

// custody trace of an enrolled-then-wiped device shows every link of its
// chain, and the links match one another.
func TestTraceEnrolledThenWiped(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	file := writeFile(t, "devices.csv", sampleCSV(t, 2, nil))
	if _, err := cli(t, "preenroll", "import", "--data", dir, file, "--group", "fleet"); err != nil {
		t.Fatal(err)
	}
	wifi := writeFile(t, "wifi.mobileconfig", mobileconfig("com.example.wifi"))
	if _, err := cli(t, "assignments", "add", "--data", dir, "fleet", "--profile", wifi); err != nil {
		t.Fatal(err)
	}
	d, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000001"), "SN00000001")
	if err != nil {
		t.Fatal(err)
	}
	poll(t, d)
	if _, err := cli(t, "enqueue", "--data", dir, d.UDID, "--type", "EraseDevice"); err != nil {
		t.Fatal(err)
	}
	var mid inventoryJSON
	out, _ := cli(t, "devices", "show", "--data", dir, "SN00000001", "--json")
	json.Unmarshal([]byte(out), &mid)
	if mid.Status != "wipe-pending" {
		t.Errorf("status after EraseDevice was queued: %q, want wipe-pending", mid.Status)
	}
	poll(t, d)
	if !d.Wiped() {
		t.Fatal("device not wiped")
	}

	out, err = cli(t, "trace", "--data", dir, "SN00000001", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var tr enroll.Trace
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatal(err)
	}
	r := tr.Record
	switch {
	case r.Status != enroll.StatusWiped || r.Source != "csv":
		t.Errorf("record %+v", r)
	case tr.Token == nil || tr.Token.ID != r.TokenID || tr.Token.For != "record:SN00000001" || tr.Token.UsedAt.IsZero():
		t.Errorf("token %+v (record's token %s)", tr.Token, r.TokenID)
	case tr.Challenge == nil || tr.Challenge.ID != tr.Token.ChallengeID || tr.Challenge.For != tr.Token.ID || tr.Challenge.UsedAt.IsZero():
		t.Errorf("challenge %+v", tr.Challenge)
	case len(tr.Certs) != 1 || tr.Certs[0].Fingerprint != tr.Challenge.CertFingerprint || tr.Certs[0].ChallengeID != tr.Challenge.ID ||
		tr.Certs[0].Fingerprint != r.CertFingerprint || !tr.Certs[0].Revoked():
		t.Errorf("certs %+v", tr.Certs)
	case tr.Enrollment == nil || tr.Enrollment.ID != d.UDID || tr.Enrollment.ID != r.EnrollmentID ||
		tr.Enrollment.CertFingerprint != r.CertFingerprint || tr.Enrollment.WipedAt.IsZero() || tr.Enrollment.TokenUpdateAt.IsZero():
		t.Errorf("enrollment %+v", tr.Enrollment)
	case len(tr.Results) != 2 || tr.Results[0].RequestType != "InstallProfile" || tr.Results[1].RequestType != "EraseDevice" ||
		tr.Results[1].Status != "Acknowledged":
		t.Errorf("results %+v", tr.Results)
	}
	var steps []string
	for _, e := range r.History {
		steps = append(steps, string(e.Step))
	}
	want := "created link-minted authenticated enrolled assigned wipe-requested wiped cert-revoked"
	if strings.Join(steps, " ") != want {
		t.Errorf("history %v, want %s", steps, want)
	}
	for _, e := range r.History {
		if e.Step == enroll.StepWiped && e.Command != tr.Results[1].CommandUUID || e.Step == enroll.StepCertRevoked && e.Cert != r.CertFingerprint {
			t.Errorf("history event %+v does not name its link", e)
		}
	}

	// The text form, by serial and by enrollment ID, names every link.
	for _, key := range []string{"SN00000001", d.UDID} {
		text, err := cli(t, "trace", "--data", dir, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("trace %s:\n%s", key, text)
		for _, want := range []string{"record      SN00000001", "source csv", "token " + tr.Token.ID, "challenge   " + tr.Challenge.ID,
			"sha256 " + r.CertFingerprint, "revoked", "enrollment  " + d.UDID, "InstallProfile", "EraseDevice", "Acknowledged",
			"wipe-requested", "wiped", "cert-revoked"} {
			if !strings.Contains(text, want) {
				t.Errorf("trace %s lacks %q:\n%s", key, want, text)
			}
		}
	}
	if _, err := cli(t, "trace", "--data", dir, "NOSUCH"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("trace of an unknown device: %v", err)
	}

	// The wiped device is set up again with a new link: a new chain, and
	// its group's profile installed again.
	again, err := enrollSerial(t, dir, recordURL(t, dir, "SN00000001"), "SN00000001")
	if err != nil {
		t.Fatal(err)
	}
	if n := poll(t, again); n != 1 || len(again.Profiles()) != 1 {
		t.Errorf("re-enrolled device got %d commands, want its profile again", n)
	}
	out, _ = cli(t, "trace", "--data", dir, "SN00000001", "--json")
	var tr2 enroll.Trace
	json.Unmarshal([]byte(out), &tr2)
	if tr2.Record.Status != enroll.StatusEnrolled || tr2.Token.ID == tr.Token.ID || tr2.Certs[0].Fingerprint == r.CertFingerprint ||
		tr2.Certs[0].Revoked() || tr2.Enrollment == nil || !tr2.Enrollment.Enabled {
		t.Errorf("trace after re-enrollment: %+v", tr2)
	}
	if last := tr2.Record.History[len(tr2.Record.History)-1]; last.Step != enroll.StepAssigned {
		t.Errorf("last history event after re-enrollment: %+v", last)
	}
}
