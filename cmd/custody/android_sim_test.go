package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

// androidRows returns the inventory's Android rows.
func androidRows(t *testing.T, dir string) []inventoryJSON {
	t.Helper()
	var rows []inventoryJSON
	for _, r := range inventory(t, dir) {
		if r.Platform == enroll.PlatformAndroid {
			rows = append(rows, r)
		}
	}
	return rows
}

// custody sim android against an unbound server: it binds the server to
// its fake, enrols the devices (tokens for the sim's user), and reports
// the three phases; the devices are in the inventory, matched to records.
// A second run needs --bind, and with it enrols more devices.
func TestSimAndroid(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0")

	out, err := cli(t, "sim", "android", "--data", dir, "--devices", "5", "--checkins", "2", "--commands", "1", "--concurrency", "3")
	if err != nil {
		t.Fatalf("sim android: %v\n%s", err, out)
	}
	for _, want := range []string{
		"custody sim android: 5 devices, concurrency 3\n",
		"\nenrol: 5 in ", "\nstatus reports: 10 in ", "\ncommand round trips: 5 in ",
		"token (admin API)", "QR scan (ENROLLMENT push)", "record check (admin API)",
		"status report (poll, push)", "command (admin API)", "poll (commands, COMMAND pushes)",
		"(server side, Pub/Sub pushes)", "server CPU",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Every phase has the server's own latencies for the pushes, the
	// first (on a fresh server, before any push) included.
	if n := len(regexp.MustCompile(`\n  \(server side, Pub/Sub pushes\) +n=`).FindAllString(out, -1)); n != 3 {
		t.Errorf("report has the server's push latencies for %d phases, want 3:\n%s", n, out)
	}
	if strings.Contains(out, "failed") || strings.Contains(out, "errors:") {
		t.Errorf("report shows failures:\n%s", out)
	}
	rows := androidRows(t, dir)
	if len(rows) != 5 {
		t.Fatalf("inventory has %d Android rows, want 5: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Status != string(enroll.StatusEnrolled) || !strings.HasPrefix(r.ID, "enterprises/") || r.PreEnrolled ||
			r.UserEmail != simAndroidUser || r.Ownership != enroll.OwnershipCorporate {
			t.Errorf("Android device after the sim: %+v", r)
		}
	}
	if trace, _ := cli(t, "trace", "--data", dir, rows[0].Serial); !strings.Contains(trace, "LOCK done") {
		t.Errorf("trace of %s lacks the LOCK's result:\n%s", rows[0].Serial, trace)
	}

	// Bound now (to the first run's fake, which is gone): --bind rebinds.
	out, err = cli(t, "sim", "android", "--data", dir, "--devices", "2", "--checkins", "0", "--commands", "0")
	if err == nil || !strings.Contains(err.Error(), "give --bind") {
		t.Errorf("second run without --bind: %v\n%s", err, out)
	}
	out, err = cli(t, "sim", "android", "--data", dir, "--devices", "2", "--checkins", "1", "--commands", "1", "--bind",
		"--google-listen", "127.0.0.1:0", "--command", "REBOOT")
	if err != nil || !strings.Contains(out, "enrol: 2 in ") || !strings.Contains(out, "command round trips: 2 in ") {
		t.Errorf("second run with --bind: %v\n%s", err, out)
	}
	if rows := androidRows(t, dir); len(rows) != 7 {
		t.Errorf("inventory has %d Android rows after the second run, want 7", len(rows))
	}
}

// With --serials the devices take the serial numbers of CSV-pre-enrolled
// records, whose tokens are minted for them, and are matched to them; a
// serial number without a record fails that device alone, and the sim
// exits non-zero.
func TestSimAndroidSerials(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0")
	csv := "name,email,ownership,serial,platform\n" +
		"Ana,ana@example.com,corporate,AND101,android\n" +
		"Bo,bo@example.com,corporate,AND102,android\n" +
		"Cy,cy@example.com,corporate,AND103,android\n"
	if _, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "android.csv", []byte(csv))); err != nil {
		t.Fatal(err)
	}
	serials := writeFile(t, "serials.csv", []byte("serial\nAND101\nNOREC9\nAND102\nAND103\n"))
	out, err := cli(t, "sim", "android", "--data", dir, "--serials", serials, "--checkins", "1", "--commands", "1", "--concurrency", "2")
	if err == nil {
		t.Errorf("sim with a serial number without a record exited 0:\n%s", out)
	}
	for _, want := range []string{
		"custody sim android: 4 devices", "enrol: 3 in ", "3 of 4 planned done, 1 failed", "minting its token:", "NOREC9",
		"status reports: 3 in ", "command round trips: 3 in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	rows := androidRows(t, dir)
	if len(rows) != 3 {
		t.Fatalf("inventory has %d Android rows, want the 3 records: %+v", len(rows), rows)
	}
	emails := map[string]string{"AND101": "ana@example.com", "AND102": "bo@example.com", "AND103": "cy@example.com"}
	for _, r := range rows {
		if r.Status != string(enroll.StatusEnrolled) || !strings.HasPrefix(r.ID, "enterprises/") || r.PreEnrolled ||
			r.Source != enroll.SourceCSV || r.UserEmail != emails[r.Serial] {
			t.Errorf("record after the sim: %+v", r)
		}
	}
}

// A syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// --stay keeps the devices polling: a LOCK queued after the phases reaches
// its device, and the interruption ends the run with the stay's report.
// With --work-profile the devices open their links as personal devices.
func TestSimAndroidStay(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0")
	simCtx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(simCtx, []string{"sim", "android", "--data", dir, "--devices", "2", "--checkins", "0", "--commands", "0",
			"--stay", "--poll-interval", "50ms", "--work-profile"}, &out, &errOut)
	}()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(errOut.String(), "devices staying"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sim did not stay:\n%s", errOut.String())
		}
		select {
		case err := <-done:
			t.Fatalf("the sim exited (%v) before staying:\n%s\n%s", err, errOut.String(), out.String())
		default:
		}
	}
	rows := androidRows(t, dir)
	if len(rows) != 2 || rows[0].Ownership != enroll.OwnershipPersonal || rows[0].Status != string(enroll.StatusEnrolled) {
		t.Fatalf("work-profile devices: %+v", rows)
	}
	serial := rows[0].Serial
	if _, err := cli(t, "enqueue", "--data", dir, serial, "--type", "LOCK"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if trace, _ := cli(t, "trace", "--data", dir, serial); strings.Contains(trace, "LOCK done") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the staying device did not run the LOCK")
		}
	}
	interrupt()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a staying sim, interrupted, returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sim did not end when interrupted")
	}
	if !regexp.MustCompile(`stayed \S+: 1 commands answered, 0 wakes by push, \d+ interval check-ins, 0 failed`).MatchString(out.String()) {
		t.Errorf("report lacks the stay:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "link (ENROLLMENT push)") {
		t.Errorf("report lacks the links' enrolment:\n%s", out.String())
	}
}

// The sim's fake cannot be reached by the server: binding fails, and the
// sim says so and exits non-zero before any phase. Without a server to
// drive, it says what to give.
func TestSimAndroidUnreachableFake(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0")
	defer func(f func() *zerotouchtest.Server) { newGoogleFake = f }(newGoogleFake)
	newGoogleFake = func() *zerotouchtest.Server {
		f := zerotouchtest.New()
		f.Close()
		return f
	}
	out, err := cli(t, "sim", "android", "--data", dir, "--devices", "2")
	if err == nil {
		t.Fatalf("sim with an unreachable fake exited 0:\n%s", out)
	}
	for _, want := range []string{"binding the server's Android enterprise to the sim's fake of Google at http://127.0.0.1:", "could not be reached"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(out, "enrol:") {
		t.Errorf("the sim ran phases without a binding:\n%s", out)
	}

	t.Chdir(t.TempDir())
	for _, v := range []string{"CUSTODY_SERVER", "CUSTODY_TOKEN", "CUSTODY_DATA"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	_, err = cli(t, "sim", "android")
	if err == nil || !strings.Contains(err.Error(), "give a custody server: --server URL --token T, or --data DIR") {
		t.Errorf("sim android without a server: %v", err)
	}
	_, err = cli(t, "sim", "android", "--data", filepath.Join(dir, "nothing"), "--stay")
	if err == nil || !strings.Contains(err.Error(), "--stay needs --poll-interval") {
		t.Errorf("--stay without --poll-interval: %v", err)
	}
}
