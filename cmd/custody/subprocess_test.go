package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMain lets tests run the real binary: the test executable re-executes
// itself as `custody` when CUSTODY_TEST_AS_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("CUSTODY_TEST_AS_MAIN") == "1" {
		os.Args = append([]string{"custody"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveProcess starts `custody serve` as a separate process and returns its
// URL once healthy. Cleanup kills it. Extra flags go after the defaults (a
// --listen there wins).
func serveProcess(t testing.TB, dir string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(dir + "/" + fileServerInfo)
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), "CUSTODY_TEST_AS_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info, err := readServerInfo(dir)
		if err != nil {
			continue
		}
		resp, err := http.Get(info.URL + "/healthz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return cmd, info.URL
		}
	}
	t.Fatalf("custody serve did not become healthy:\n%s", stderr.String())
	return nil, ""
}
