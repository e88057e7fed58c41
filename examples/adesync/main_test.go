package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/dep/deptest"
)

func TestMain(m *testing.M) {
	if os.Getenv("ADESYNC_RUN_MAIN") == "1" {
		os.Args = append([]string{"adesync"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ADESYNC_RUN_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("adesync %v: %v\n%s", args, err, errOut.String())
	}
	return out.String(), errOut.String()
}

// The example fetches every device, and on its next run only the changes.
func TestExampleSyncs(t *testing.T) {
	fake := deptest.New()
	defer fake.Close()
	a := fake.AddAccount("Example")
	a.AddDevices(deptest.Devices("EX", 250)...)
	dir := t.TempDir()
	token, _ := json.Marshal(a.Tokens)
	os.WriteFile(filepath.Join(dir, "token.json"), token, 0o600)
	args := []string{"-token", filepath.Join(dir, "token.json"), "-base-url", fake.URL, "-cursor", filepath.Join(dir, "cursor")}

	out, errOut := run(t, args...)
	if n := strings.Count(out, "\n"); n != 250 || !strings.Contains(errOut, "250 fetched") {
		t.Fatalf("first run printed %d devices:\n%s", n, errOut)
	}
	a.AddDevices(deptest.Devices("NEW", 3)...)
	a.DeleteDevices("EX00000001")
	out, errOut = run(t, args...)
	if !strings.Contains(errOut, "3 added, 0 modified, 1 deleted") {
		t.Fatalf("second run: %s", errOut)
	}
	var d dep.Device
	json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &d)
	if d.SerialNumber != "NEW00000001" || d.OpType != dep.OpAdded {
		t.Errorf("first synced device %+v", d)
	}
}
