package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/storage/postgres/pgtest"
)

var sha256Line = regexp.MustCompile(`sha256 ([0-9a-f]{64})`)

// checksum is the SHA-256 an export or import reported.
func checksum(t *testing.T, out string) string {
	t.Helper()
	m := sha256Line.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no checksum in:\n%s", out)
	}
	return m[1]
}

// A server's database moves from bbolt to PostgreSQL and back with custody
// export and import-data: the same records at each step (counts and
// checksum), and the devices go on where they were: a command queued
// before the move is delivered after it, through the server on the new
// backend.
func TestExportImportData(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	boltURL, done := startServe(t, ctx, dir)
	devices := make([]*mdmtest.Device, 3)
	for i := range devices {
		var link enrollmentResponse
		apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{For: fmt.Sprint("record-", i)}, &link)
		d, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
		if err != nil {
			t.Fatal(err)
		}
		devices[i] = d
	}
	queued, err := cli(t, "enqueue", "--data", dir, "--type", "ProfileList", "--no-push", devices[0].UDID)
	if err != nil {
		t.Fatal(err)
	}
	queued = strings.TrimSpace(queued)
	csvFile := writeFileTB(t, "users.csv", []byte("Name,Email,Ownership,Serial Number,Platform,Groups\nAna,ana@example.com,corporate,MOVE0001,ios,staff\n"))
	if out, err := runCLI("preenroll", "import", "--data", dir, csvFile); err != nil {
		t.Fatalf("preenroll import: %v\n%s", err, out)
	}

	// The embedded database is exported only once its server has stopped.
	file := filepath.Join(t.TempDir(), "custody.export")
	if out, err := runCLI("export", "--data", dir, "-o", file); err == nil || !strings.Contains(err.Error(), "another custody process is using") {
		t.Errorf("export while the server runs: %v\n%s", err, out)
	}
	stop()
	<-done
	out, err := runCLI("export", "--data", dir, "-o", file)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	exported := checksum(t, out)
	for _, want := range []string{"mdm.enrollment", "mdm.queue", "scep.cert", "enroll.record", "enroll.user"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + ` +[1-9]`).MatchString(out) {
			t.Errorf("export summary counts no %s:\n%s", want, out)
		}
	}

	out, err = runCLI("import-data", "--storage", "postgres", "--dsn", dsn, file)
	if err != nil || !strings.Contains(out, "verified") || checksum(t, out) != exported {
		t.Fatalf("import-data into postgres: %v\n%s", err, out)
	}
	if out, err := runCLI("import-data", "--storage", "postgres", "--dsn", dsn, file); err == nil || !strings.Contains(err.Error(), "empty database") {
		t.Errorf("a second import: %v\n%s", err, out)
	}

	// The server on PostgreSQL, with the same data dir, knows the devices
	// and delivers the command queued before the move.
	ctx, stop = context.WithCancel(context.Background())
	pgURL, done := startServe(t, ctx, dir, "--storage", "postgres", "--dsn", dsn)
	for _, d := range devices { // the new server listens elsewhere
		d.ServerURL = strings.Replace(d.ServerURL, boltURL, pgURL, 1)
		d.CheckInURL = strings.Replace(d.CheckInURL, boltURL, pgURL, 1)
	}
	ran, err := devices[0].Poll(context.Background())
	if err != nil || len(ran) != 1 || ran[0].CommandUUID != queued {
		t.Fatalf("after the move the device ran %v, %v; want the queued %s", ran, err, queued)
	}
	var cmds struct {
		Results []resultJSON `json:"results"`
	}
	apiCall(t, dir, http.MethodGet, "/api/v1/devices/"+devices[0].UDID+"/commands", nil, &cmds)
	if len(cmds.Results) != 1 || cmds.Results[0].CommandUUID != queued || cmds.Results[0].Status != "Acknowledged" {
		t.Errorf("results after the move: %+v", cmds.Results)
	}
	if ran, err := devices[1].Poll(context.Background()); err != nil || len(ran) != 0 {
		t.Errorf("another device: ran %v, %v", ran, err)
	}
	// A PostgreSQL database is exported while its server runs.
	file2 := filepath.Join(t.TempDir(), "custody.export")
	out, err = runCLI("export", "--storage", "postgres", "--dsn", dsn, "-o", file2)
	if err != nil {
		t.Fatalf("export from postgres: %v\n%s", err, out)
	}
	stop()
	<-done
	moved := checksum(t, out)
	if moved == exported {
		t.Error("the export after a command's result has the checksum of the one before")
	}

	// And back to the embedded database in a new data dir.
	back := t.TempDir()
	out, err = runCLI("import-data", "--data", back, file2)
	if err != nil || checksum(t, out) != moved {
		t.Fatalf("import-data into bolt: %v\n%s", err, out)
	}
	out, err = runCLI("export", "--data", back, "-o", filepath.Join(t.TempDir(), "again"))
	if err != nil || checksum(t, out) != moved {
		t.Errorf("export of the bolt copy: %v\n%s", err, out)
	}
	if out, err := runCLI("import-data", "--data", t.TempDir(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("import of a missing file succeeded:\n%s", out)
	}
}
