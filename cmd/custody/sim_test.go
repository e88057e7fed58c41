package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A server that refuses every device: the sim says so and exits non-zero.
func TestSimAgainstARefusingServer(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no enrolment here", http.StatusForbidden)
	}))
	defer refusing.Close()
	out, err := cli(t, "sim", "apple", "--enroll-url", refusing.URL, "--devices", "3", "--concurrency", "2")
	if err == nil {
		t.Fatalf("sim against a server that refuses everything exited 0:\n%s", out)
	}
	for _, want := range []string{"enrol: 0 in", "0 of 3 planned done, 3 failed", "server answered 403: no enrolment here"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// ^C during enrolment reports the devices that really enrolled, keeps
// them in --state, and exits non-zero.
func TestSimInterruptedDuringEnrolment(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	// The first five devices get a link's profile; the others wait, so
	// that the interruption lands mid-phase.
	var n atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 5 {
			<-r.Context().Done()
			return
		}
		var link enrollmentResponse
		apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{}, &link)
		resp, err := http.Get(link.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		io.Copy(w, resp.Body)
	}))
	defer slow.Close()
	state := filepath.Join(t.TempDir(), "fleet")
	sim := startSim(t, "--enroll-url", slow.URL, "--devices", "20", "--concurrency", "4", "--keys", "2",
		"--ca", filepath.Join(dir, fileCACert), "--state", state)
	kept := func() int { k, _ := filepath.Glob(filepath.Join(state, "devices", "*.json")); return len(k) }
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && (kept() < 5 || n.Load() < 9); {
		time.Sleep(20 * time.Millisecond)
	}
	sim.cmd.Process.Signal(syscall.SIGINT)
	err := sim.wait(t, 30*time.Second)
	out := sim.output()
	if err == nil {
		t.Errorf("an interrupted sim exited 0:\n%s", out)
	}
	if !regexp.MustCompile(`enrol: 5 in .*; 5 of 20 planned done, 0 failed, interrupted`).MatchString(out) {
		t.Errorf("report does not count the 5 devices that enrolled:\n%s", out)
	}
	if strings.Contains(out, "idle check-ins") {
		t.Errorf("the sim went on after the interruption:\n%s", out)
	}
	if k := kept(); k != 5 {
		t.Errorf("--state kept %d devices, want the 5 enrolled", k)
	}
}

// A staying fleet woken by pushes: custody serve pushes to the sim's fake
// APNs, and the woken device answers within seconds a command queued
// after the phases.
func TestSimStayWokenByPush(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// The fake APNs's certificate is made once in --state, before the
	// server that trusts it starts.
	fl, err := openFleet(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fl.apnsCert(addr); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--apns-host", "https://"+addr, "--apns-ca", filepath.Join(state, "apns.pem"))

	sim := startSim(t, "--data", dir, "--devices", "3", "--checkins", "1", "--commands", "0", "--keys", "1",
		"--ca", filepath.Join(dir, fileCACert), "--state", state, "--stay", "--apns-listen", addr)
	waitOutput(t, sim, "3 devices staying", time.Minute)

	var devices struct {
		Devices []deviceJSON `json:"devices"`
	}
	apiCall(t, dir, http.MethodGet, "/api/v1/devices", nil, &devices)
	list := devices.Devices
	if len(list) != 3 {
		t.Fatalf("%d devices enrolled, want 3", len(list))
	}
	var queued commandResponse
	apiCall(t, dir, http.MethodPost, "/api/v1/commands", commandRequest{Devices: []string{list[0].ID}, RequestType: "ProfileList"}, &queued)
	var answered bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !answered; time.Sleep(50 * time.Millisecond) {
		var cmds struct {
			Results []resultJSON `json:"results"`
		}
		apiCall(t, dir, http.MethodGet, "/api/v1/devices/"+list[0].ID+"/commands", nil, &cmds)
		for _, r := range cmds.Results {
			answered = answered || r.CommandUUID == queued.CommandUUID && r.Status == "Acknowledged"
		}
	}
	if !answered {
		t.Fatalf("the pushed device did not answer ProfileList within 10 s:\n%s", sim.output())
	}
	sim.cmd.Process.Signal(syscall.SIGINT)
	if err := sim.wait(t, 30*time.Second); err != nil {
		t.Fatalf("custody sim after ^C: %v\n%s", err, sim.output())
	}
	if out := sim.output(); !strings.Contains(out, "1 commands answered, 1 wakes by push") {
		t.Errorf("report of the stay:\n%s", out)
	}
}

// Devices take the serial numbers of a file and enrol through links bound
// to their records, so the pre-enrolled-only restriction admits them; a
// serial with no record is refused and counted.
func TestSimSerialsAndLinks(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	csv := "name,email,ownership,serial,platform\nAna,ana@example.com,corporate,SIMA0001,ios\nBen,ben@example.com,corporate,SIMA0002,ios\n"
	if out, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "records.csv", []byte(csv))); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := cli(t, "settings", "set", "enrollment.preenrolled-only", "true", "--data", dir); err != nil {
		t.Fatalf("settings: %v\n%s", err, out)
	}
	serials := filepath.Join(t.TempDir(), "serials.txt")
	os.WriteFile(serials, []byte("serial\nSIMA0001\nSIMA0002\n"), 0o644)
	out, err := cli(t, "sim", "apple", "--data", dir, "--serials", serials, "--links", "--checkins", "1", "--commands", "1",
		"--ca", filepath.Join(dir, fileCACert))
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	if !strings.Contains(out, "enrol: 2 in") {
		t.Errorf("report:\n%s", out)
	}
	for _, serial := range []string{"SIMA0001", "SIMA0002"} {
		show, err := cli(t, "devices", "show", serial, "--data", dir)
		if err != nil || !strings.Contains(show, "enrolled") {
			t.Errorf("devices show %s: %v\n%s", serial, err, show)
		}
	}

	// The records of a ring that have not enrolled, each through its link.
	csv = "name,email,ownership,serial,platform\nCy,cy@example.com,corporate,SIMR0001,ios\nDi,di@example.com,corporate,SIMR0002,macos\n"
	if out, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "ring.csv", []byte(csv))); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	apiCall(t, dir, http.MethodPost, "/api/v1/rings", map[string]any{"name": "wave-1",
		"members": []string{"record:SIMR0001", "record:SIMR0002", "record:SIMA0001"}}, nil)
	out, err = cli(t, "sim", "apple", "--data", dir, "--ring", "wave-1", "--checkins", "0", "--commands", "0",
		"--ca", filepath.Join(dir, fileCACert))
	if err != nil || !strings.Contains(out, "enrol: 2 in") {
		t.Fatalf("sim --ring: %v\n%s", err, out)
	}
	var ring ringJSON
	apiCall(t, dir, http.MethodGet, "/api/v1/rings/wave-1", nil, &ring)
	if ring.Counts.Enrolled != 3 {
		t.Errorf("ring wave-1 counts %+v, want its 3 records enrolled", ring.Counts)
	}
	if show, _ := cli(t, "devices", "show", "SIMR0002", "--data", dir); !strings.Contains(show, "Mac14,2") {
		t.Errorf("the ring's Mac enrolled as another device:\n%s", show)
	}

	// A serial without a record: its link cannot be minted.
	os.WriteFile(serials, []byte("SIMA0003\n"), 0o644)
	out, err = cli(t, "sim", "apple", "--data", dir, "--serials", serials, "--links", "--ca", filepath.Join(dir, fileCACert))
	if err == nil || !strings.Contains(out, "0 of 1 planned done, 1 failed") || !strings.Contains(out, "SIMA0003") {
		t.Errorf("sim with an unknown serial: %v\n%s", err, out)
	}
}
