package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

// The server is killed (SIGKILL, no shutdown) while devices are enrolling.
// Afterwards every challenge is either unused, or used and bound to a
// certificate that is stored; every certificate a device received is stored;
// and every device that lost its reply enrols on retry, getting the very
// certificate it was issued if the server had recorded one.
func TestCrashDuringIssuance(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server")
	}
	dir := t.TempDir()
	proc, url := serveProcess(t, dir)

	const devices = 24
	type device struct {
		key       *rsa.PrivateKey
		challenge string
		cert      *x509.Certificate
		err       error
	}
	devs := make([]*device, devices)
	var wg sync.WaitGroup
	for i := range devs {
		devs[i] = &device{challenge: mintChallenge(t, dir)}
		wg.Go(func() { devs[i].key, _ = rsa.GenerateKey(rand.Reader, 2048) })
	}
	wg.Wait()

	enrol := func(url string, d *device) (*x509.Certificate, error) {
		csr, err := scep.NewCSR(d.key, pkix.Name{CommonName: "crash-device"}, d.challenge)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return (&scep.Client{URL: url + "/scep"}).Enroll(ctx, d.key, csr)
	}
	var issued atomic.Int32
	killed := make(chan struct{})
	go func() {
		for issued.Load() < devices/4 {
			time.Sleep(time.Millisecond)
		}
		proc.Process.Kill()
		close(killed)
	}()
	for _, d := range devs {
		wg.Go(func() {
			d.cert, d.err = enrol(url, d)
			if d.err == nil {
				issued.Add(1)
			}
		})
	}
	wg.Wait()
	<-killed
	proc.Wait()

	db, err := bolt.Open(filepath.Join(dir, fileDB), bolt.Options{})
	if err != nil {
		t.Fatalf("database after SIGKILL: %v", err)
	}
	store := db.SCEP()
	ctx := context.Background()
	lost, bound := 0, 0
	for i, d := range devs {
		sum := sha256.Sum256([]byte(d.challenge))
		ch, err := store.Challenge(ctx, sum[:])
		if err != nil {
			t.Fatalf("device %d: challenge lost: %v", i, err)
		}
		if ch.Used() {
			bound++
			if _, err := store.Cert(ctx, ch.CertFingerprint); err != nil {
				t.Errorf("device %d: challenge bound to %s, which is not stored: %v", i, ch.CertFingerprint, err)
			}
		}
		if d.err == nil {
			if ch.CertFingerprint != scep.Fingerprint(d.cert) {
				t.Errorf("device %d received %s but its challenge is bound to %q", i, scep.Fingerprint(d.cert), ch.CertFingerprint)
			}
		} else {
			lost++
		}
	}
	db.Close()
	t.Logf("%d devices enrolled before the kill, %d challenges bound, %d replies lost", devices-lost, bound, lost)
	if lost == 0 {
		t.Fatal("the kill came after every enrolment; the test proved nothing")
	}

	_, url = serveProcess(t, dir)
	for i, d := range devs {
		if d.err == nil {
			continue
		}
		cert, err := enrol(url, d)
		if err != nil {
			t.Errorf("device %d: retry after the crash: %v", i, err)
			continue
		}
		d.cert = cert
	}
	seen := map[string]bool{}
	for i, d := range devs {
		if d.cert == nil {
			continue
		}
		fp := scep.Fingerprint(d.cert)
		if seen[fp] {
			t.Errorf("device %d: certificate %s issued to two devices", i, fp)
		}
		seen[fp] = true
	}
	out, err := cli(t, "certs", "list", "--data", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	for fp := range seen {
		if !strings.Contains(out, fp) {
			t.Errorf("certificate %s held by a device is not listed", fp)
		}
	}
	if n := strings.Count(out, `"fingerprint"`); n != devices {
		t.Errorf("%d certificates stored, want exactly %d (one per challenge)", n, devices)
	}
}

// countRecords opens a stopped server's database and counts its records.
func countRecords(t *testing.T, dir string) int {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, fileDB), bolt.Options{})
	if err != nil {
		t.Fatalf("database after SIGKILL: %v", err)
	}
	defer db.Close()
	n := 0
	if err := db.Records().Records(context.Background(), func(*enroll.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// postImport uploads a CSV file to the records import of the server whose
// data dir is dir.
func postImport(dir string, body io.Reader) (*http.Response, error) {
	info, err := readServerInfo(dir)
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(dir, fileAdminToken))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, info.URL+"/api/v1/records/import", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	return http.DefaultClient.Do(req)
}

// The server is killed (SIGKILL) during CSV imports: mid-file, while the
// upload is still arriving, and at moments spread over the import's
// parsing and its transaction. Each time the database opens and holds
// either none of the file or all of it.
func TestCrashDuringImport(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server")
	}
	const rows = 50_000
	var csvData bytes.Buffer
	if err := enroll.WriteSampleCSV(&csvData, rows); err != nil {
		t.Fatal(err)
	}

	// Mid-file: half the file sent, then the server dies.
	dir := t.TempDir()
	proc, _ := serveProcess(t, dir)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(csvData.Bytes()[:csvData.Len()/2])
		time.Sleep(300 * time.Millisecond)
		proc.Process.Kill()
		pw.CloseWithError(errors.New("server killed"))
	}()
	if resp, err := postImport(dir, pr); err == nil {
		resp.Body.Close()
		t.Fatalf("import answered %d though the server was killed mid-file", resp.StatusCode)
	}
	proc.Wait()
	if n := countRecords(t, dir); n != 0 {
		t.Fatalf("%d records after a kill mid-file, want 0", n)
	}

	// The whole file, with the server killed at moments spread over the
	// import; the first run, not killed, measures how long an import
	// takes.
	var full time.Duration
	outcomes := map[int]int{}
	for _, frac := range []float64{0, 0.2, 0.4, 0.6, 0.8, 0.95} {
		dir := t.TempDir()
		proc, _ := serveProcess(t, dir)
		if frac > 0 {
			time.AfterFunc(time.Duration(frac*float64(full)), func() { proc.Process.Kill() })
		}
		start := time.Now()
		resp, err := postImport(dir, bytes.NewReader(csvData.Bytes()))
		if resp != nil {
			resp.Body.Close()
		}
		if frac == 0 {
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("import without a kill: %v %v", resp, err)
			}
			full = time.Since(start)
			proc.Process.Kill()
		}
		proc.Wait()
		n := countRecords(t, dir)
		if n != 0 && n != rows {
			t.Fatalf("%d records after a kill at %.0f%% of the import, want 0 or %d", n, frac*100, rows)
		}
		outcomes[n]++
		t.Logf("killed at %.0f%% of %v: %d records", frac*100, full, n)
	}
	if outcomes[0] == 0 {
		t.Logf("no kill landed before the import committed (import took %v)", full)
	}
}
