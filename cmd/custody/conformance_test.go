package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/internal/peertest"
	"github.com/custodymdm/custody/mdm"
)

// Conformance with an MDM server nobody here wrote: the simulated fleet
// enrols into NanoMDM through micromdm's scepserver (the pinned releases,
// built by .ci/run), makes idle check-ins, stays, and answers commands
// queued through NanoMDM's own API; a second run reconnects the same fleet.

// simProcess runs `custody sim` as its own process, so that it can be
// interrupted as a user interrupts it.
type simProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr
	done chan error
}

func (p *simProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *simProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startSim(t *testing.T, args ...string) *simProcess {
	t.Helper()
	p := &simProcess{done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], append([]string{"sim", "apple"}, args...)...)
	p.cmd.Env = append(os.Environ(), "CUSTODY_TEST_AS_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done; p.done <- nil })
	return p
}

// wait waits for the process to exit and returns how it ended.
func (p *simProcess) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("custody sim did not exit within %s:\n%s", d, p.output())
		return nil
	}
}

func waitOutput(t *testing.T, p *simProcess, want string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(p.output(), want) {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("custody sim exited (%v) before printing %q:\n%s", err, want, p.output())
		default:
		}
	}
	t.Fatalf("custody sim did not print %q within %s:\n%s", want, d, p.output())
}

func countEvents(events []peertest.NanoEvent, topic, status string) map[string]int {
	n := map[string]int{}
	for _, e := range events {
		if e.Topic == topic && (status == "" || e.Status == status) {
			n[e.UDID]++
		}
	}
	return n
}

func TestSimAgainstNanoMDM(t *testing.T) {
	const challenge = "nanomdm-conformance"
	scepURL, caPEM := peertest.StartScepServer(t, peertest.ScepServer230.Need(t), challenge, 2048, "-allowrenew", "0")
	nano := peertest.StartNanoMDM(t, caPEM)
	profile := peertest.EnrollmentProfile(scepURL, challenge, nano.URL+"/mdm", "com.apple.mgmt.External.custody-conformance")
	profiles := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-apple-aspen-config")
		w.Write(profile)
	}))
	defer profiles.Close()

	const devices = 20
	state := t.TempDir()
	sim := startSim(t, "--enroll-url", profiles.URL, "--devices", "20", "--concurrency", "8", "--checkins", "2",
		"--keys", "4", "--state", state, "--stay", "--poll-interval", "300ms", "--server-pid", strconv.Itoa(nano.PID()))
	waitOutput(t, sim, "devices staying", 2*time.Minute)

	events := nano.Events()
	auth, tokens, idle := countEvents(events, "mdm.Authenticate", ""), countEvents(events, "mdm.TokenUpdate", ""),
		countEvents(events, "mdm.Connect", mdm.StatusIdle)
	if len(auth) != devices || len(tokens) != devices || len(idle) != devices {
		t.Fatalf("NanoMDM saw %d devices authenticate, %d send TokenUpdate, %d check in idle; want %d each:\n%s\n%s",
			len(auth), len(tokens), len(idle), devices, sim.output(), nano.LogTail(30))
	}
	for udid, n := range idle {
		if n < 2 {
			t.Errorf("NanoMDM saw %d idle check-ins from %s, want at least the 2 of the phase", n, udid)
		}
	}
	// What NanoMDM received is what an iPhone sends.
	for _, e := range events {
		if e.Topic != "mdm.Authenticate" {
			continue
		}
		var m map[string]any
		if err := plist.Unmarshal(e.RawPayload, &m); err != nil {
			t.Fatalf("Authenticate as NanoMDM got it: %v", err)
		}
		if m["SerialNumber"] == "" || m["ProductName"] != "iPhone15,2" || m["Model"] != nil {
			t.Errorf("Authenticate of an iPhone: %v", m)
		}
		break
	}

	// A command queued through NanoMDM's API reaches every device of the
	// staying fleet, and every result is in NanoMDM.
	udids := make([]string, 0, devices)
	for u := range auth {
		udids = append(udids, u)
	}
	cmdUUID := uuid.NewString()
	command, err := mdm.MarshalCommand(cmdUUID, &mdm.DeviceInformation{Queries: []string{"UDID", "SerialNumber", "OSVersion", "ProductName"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := nano.Enqueue(ctx, command, udids...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	err = nano.WaitEvents(ctx, func(ev []peertest.NanoEvent) bool {
		n := 0
		for _, e := range ev {
			if e.Topic == "mdm.Connect" && e.CommandUUID == cmdUUID {
				n++
			}
		}
		return n >= devices
	})
	if err != nil {
		t.Fatalf("results of the queued DeviceInformation: %v\n%s", err, sim.output())
	}
	for _, e := range nano.Events() {
		if e.CommandUUID != cmdUUID {
			continue
		}
		resp, err := mdm.DecodeResponse(e.RawPayload, "DeviceInformation")
		if err != nil || e.Status != mdm.StatusAcknowledged {
			t.Fatalf("result from %s: %s, %v", e.UDID, e.Status, err)
		}
		q := resp.Typed.(*mdm.DeviceInformationResponse).QueryResponses
		if q.UDID != e.UDID || q.SerialNumber == "" || q.ProductName != "iPhone15,2" {
			t.Errorf("DeviceInformation from %s: %+v", e.UDID, q)
		}
	}

	// ^C ends a staying fleet cleanly, with what it did.
	sim.cmd.Process.Signal(syscall.SIGINT)
	if err := sim.wait(t, 30*time.Second); err != nil {
		t.Fatalf("custody sim after ^C: %v\n%s", err, sim.output())
	}
	out := sim.output()
	for _, want := range []string{"enrol: 20 in", "idle check-ins: 40 in", "server CPU", "stayed", "20 commands answered"} {
		if !strings.Contains(out, want) {
			t.Errorf("sim report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "error") || !strings.Contains(out, " 0 failed") {
		t.Errorf("sim reported errors:\n%s", out)
	}
	t.Logf("first run:\n%s", out)
	kept, _ := filepath.Glob(filepath.Join(state, "devices", "*.json"))
	if len(kept) != devices {
		t.Fatalf("--state kept %d devices, want %d", len(kept), devices)
	}

	// A second run reconnects the same fleet: no enrolment, check-ins only.
	before := len(countEvents(nano.Events(), "mdm.Authenticate", ""))
	again := startSim(t, "--enroll-url", profiles.URL, "--devices", "20", "--checkins", "1", "--state", state)
	if err := again.wait(t, time.Minute); err != nil {
		t.Fatalf("second run: %v\n%s", err, again.output())
	}
	if out := again.output(); !strings.Contains(out, "reconnecting 20 devices") || strings.Contains(out, "enrol:") ||
		!strings.Contains(out, "idle check-ins: 20 in") {
		t.Errorf("second run did not reconnect the fleet:\n%s", out)
	}
	if after := len(countEvents(nano.Events(), "mdm.Authenticate", "")); after != before {
		t.Errorf("the reconnected fleet authenticated again: %d devices before, %d after", before, after)
	}
	var st struct{ UDID string }
	data, _ := os.ReadFile(kept[0])
	if json.Unmarshal(data, &st); auth[st.UDID] == 0 {
		t.Errorf("the kept device %s is not one NanoMDM enrolled", st.UDID)
	}
}
