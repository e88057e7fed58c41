package main

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

func TestMain(m *testing.M) {
	if os.Getenv("ANDROIDENROLL_RUN_MAIN") == "1" {
		os.Args = append([]string{"androidenroll"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// The example prints a QR payload; a simulated device scans it and the
// example reports the enrolled device.
func TestExampleEnrolsADevice(t *testing.T) {
	fake := zerotouchtest.New()
	defer fake.Close()
	ent := fake.AddEnterprise("Example")
	cmd := exec.Command(os.Args[0], "-enterprise", ent, "-endpoint", fake.URL, "-wait", "30s")
	cmd.Env = append(os.Environ(), "ANDROIDENROLL_RUN_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	var out []string
	for lines.Scan() {
		line := lines.Text()
		out = append(out, line)
		if qr, ok := strings.CutPrefix(line, "QR payload: "); ok {
			if _, err := fake.ScanQR([]byte(qr), zerotouchtest.DeviceInfo{Serial: "EX1"}); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(line, "enrolled: ") {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("example: %v\n%s", err, strings.Join(out, "\n"))
	}
	last := out[len(out)-1]
	if !strings.Contains(last, "serial EX1") || !strings.Contains(last, "COMPANY_OWNED") || !strings.Contains(last, "/policies/example") {
		t.Errorf("example printed %q", last)
	}
}
