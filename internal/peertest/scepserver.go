package peertest

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ScepServer starts Debian's scepserver (micromdm scep 2.1.0) with a fresh CA
// in a temporary depot, requiring challenge (none if empty), and stops it when
// the test ends. It returns the server's URL, http://127.0.0.1:PORT/scep, and
// its CA certificate in PEM; the server's log goes to a file, not to the test
// output.
func ScepServer(t testing.TB, challenge string) (url string, caPEM []byte) {
	t.Helper()
	// A 2048-bit CA key: the default of 4096 bits takes seconds to generate.
	return ScepServerKeySize(t, challenge, 2048)
}

// ScepServerKeySize is ScepServer with a CA key of the given size; 4096 is
// what `scepserver ca -init` makes by default.
func ScepServerKeySize(t testing.TB, challenge string, bits int) (url string, caPEM []byte) {
	t.Helper()
	return StartScepServer(t, Need(t, "scepserver", "scep"), challenge, bits)
}

// StartScepServer is ScepServerKeySize with the scepserver binary at bin:
// Debian's, or a pinned release built by [GoProgram.Need] such as
// ScepServer230, and extra flags (such as "-allowrenew", "0", which lets
// many devices enrol with one subject, as they do from a shared profile).
func StartScepServer(t testing.TB, bin, challenge string, bits int, extra ...string) (url string, caPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	depot := filepath.Join(dir, "depot")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if out, err := run(ctx, cleanEnv(), dir, bin, "ca", "-init", "-depot", depot,
		"-keySize", strconv.Itoa(bits), "-organization", "peertest", "-years", "1"); err != nil {
		t.Fatalf("peertest: scepserver ca -init: %v\n%s", err, out)
	}
	caPEM, err := os.ReadFile(filepath.Join(depot, "ca.pem"))
	if err != nil {
		t.Fatalf("peertest: scepserver CA: %v", err)
	}
	if b, _ := pem.Decode(caPEM); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("peertest: scepserver wrote no PEM certificate to %s", filepath.Join(depot, "ca.pem"))
	}
	url, err = startScepServer(ctx, t, bin, dir, depot, challenge, extra...)
	if err != nil {
		t.Fatalf("peertest: %v", err)
	}
	return url, caPEM
}

// startScepServer runs scepserver on an existing depot on a free port and
// waits until it answers GetCACaps. The process is stopped by t.Cleanup.
func startScepServer(ctx context.Context, t testing.TB, bin, dir, depot, challenge string, extra ...string) (string, error) {
	var lastErr error
	// The port is free when we pick it but scepserver binds it later, so
	// another process may take it in between: try a few ports.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		args := []string{"-depot", depot, "-port", port}
		if challenge != "" {
			args = append(args, "-challenge", challenge)
		}
		args = append(args, extra...)
		logPath := filepath.Join(dir, fmt.Sprintf("scepserver-%d.log", attempt))
		d, err := startDaemon(cleanEnv(), dir, logPath, bin, args...)
		if err != nil {
			return "", fmt.Errorf("start scepserver: %w", err)
		}
		t.Cleanup(d.stop)
		url := "http://127.0.0.1:" + port + "/scep"
		err = waitFor(ctx, 20*time.Millisecond, func() (bool, error) {
			if err := d.exitErr(); err != nil {
				return false, err
			}
			return getCACaps(ctx, url) == nil, nil
		})
		if err == nil {
			return url, nil
		}
		d.stop()
		lastErr = fmt.Errorf("scepserver %s did not answer GetCACaps on %s: %w\n%s",
			strings.Join(args, " "), url, err, d.logTail(20))
		if ctx.Err() != nil {
			break
		}
	}
	return "", lastErr
}

func getCACaps(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?operation=GetCACaps", nil)
	if err != nil {
		return err
	}
	// No proxy, no kept-alive connections left behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GetCACaps: %s", resp.Status)
	}
	return nil
}

// freePort returns a TCP port that is free on 127.0.0.1 at the time of the
// call.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
