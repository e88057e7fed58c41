package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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
