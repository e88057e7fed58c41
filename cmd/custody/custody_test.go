package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/scep"
)

// startServe runs `custody serve` in-process on a free port and returns the
// server's URL once it answers. Stopping it is cancelling ctx.
func startServe(t *testing.T, ctx context.Context, dir string, extra ...string) (string, <-chan error) {
	t.Helper()
	os.Remove(filepath.Join(dir, fileServerInfo))
	done := make(chan error, 1)
	var stderr bytes.Buffer
	args := append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, extra...)
	go func() { done <- run(ctx, args, &bytes.Buffer{}, &stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, stderr.String())
		default:
		}
		if info, err := readServerInfo(dir); err == nil {
			if resp, err := http.Get(info.URL + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return info.URL, done
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server did not become healthy")
	return "", nil
}

func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

// An administrator's first day: start the server, mint a challenge, watch a
// device enrol, list and revoke its certificate, restart.
func TestServeChallengeCertsRevoke(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	url, done := startServe(t, ctx, dir)

	for _, name := range []string{fileCACert, fileCAKey, fileRACert, fileRAKey, fileProfileCert, fileProfileKey, fileAdminToken, fileDB} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("data dir lacks %s: %v", name, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, fileAdminToken)); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode = %v, want 0600", st.Mode().Perm())
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, fileCACert))
	tokenBefore, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))

	secret, err := cli(t, "challenge", "--data", dir, "--ttl", "10m", "--note", "ana's laptop", "--for", "record-7")
	if err != nil {
		t.Fatalf("custody challenge: %v", err)
	}
	secret = strings.TrimSpace(secret)
	if len(secret) != 32 {
		t.Fatalf("challenge %q, want 32 characters", secret)
	}

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(key, pkix.Name{CommonName: "ana-laptop"}, secret)
	client := &scep.Client{URL: url + "/scep"}
	cert, err := client.Enroll(context.Background(), key, csr)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	fp := scep.Fingerprint(cert)

	out, err := cli(t, "certs", "list", "--data", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []certJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("certs list --json: %v\n%s", err, out)
	}
	if len(listed) != 1 || listed[0].Fingerprint != fp || listed[0].For != "record-7" || listed[0].ChallengeID == "" || listed[0].Revoked {
		t.Fatalf("certs list = %+v, want the one cert for record-7", listed)
	}
	out, _ = cli(t, "certs", "list", "--data", dir)
	if !strings.Contains(out, fp) || !strings.Contains(out, "CN=ana-laptop") {
		t.Errorf("certs list table lacks the cert:\n%s", out)
	}

	// Revoke by the colon form openssl prints.
	colon := strings.ToUpper(strings.Join(splitPairs(fp), ":"))
	if out, err := cli(t, "certs", "revoke", "--data", dir, colon); err != nil || !strings.Contains(out, "revoked "+fp) {
		t.Fatalf("certs revoke: %q, %v", out, err)
	}
	if _, err := cli(t, "certs", "revoke", "--data", dir, fp); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Errorf("second revoke error = %v, want already revoked", err)
	}
	if _, err := cli(t, "certs", "revoke", "--data", dir, "abc"); err == nil {
		t.Error("revoke of a malformed fingerprint succeeded")
	}
	// A revoked certificate cannot renew.
	csr2, _ := scep.NewCSR(key, pkix.Name{CommonName: "ana-laptop"}, "")
	var fe *scep.FailureError
	if _, err := client.Renew(context.Background(), cert, key, csr2); !errors.As(err, &fe) {
		t.Errorf("renewal with a revoked cert: %v, want a SCEP failure", err)
	}

	// A second server on the same data dir is refused, clearly.
	if err := run(context.Background(), []string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "another custody process is using "+dir) || !strings.Contains(err.Error(), "--storage postgres") {
		t.Errorf("second serve error = %v, want another custody process is using %s", err, dir)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not shut down")
	}

	// The restart reuses the CA, the token and the database.
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	startServe(t, ctx2, dir)
	caAfter, _ := os.ReadFile(filepath.Join(dir, fileCACert))
	tokenAfter, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))
	if !bytes.Equal(caBefore, caAfter) || !bytes.Equal(tokenBefore, tokenAfter) {
		t.Error("restart replaced the CA or the admin token")
	}
	out, _ = cli(t, "certs", "list", "--data", dir, "--json")
	if !strings.Contains(out, fp) {
		t.Error("restart lost the issued certificate")
	}
}

func splitPairs(s string) []string {
	var out []string
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

func TestAdminAPIRefusals(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir)
	token, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))

	for _, tc := range []struct {
		name, method, path, auth, body string
		code                           int
		errPart                        string
	}{
		{"no token", "GET", "/api/v1/certs", "", "", 401, "missing Authorization"},
		{"wrong token", "GET", "/api/v1/certs", "Bearer nope", "", 401, "invalid admin token"},
		{"basic auth", "GET", "/api/v1/certs", "Basic YTpi", "", 401, "invalid admin token"},
		{"bad ttl", "POST", "/api/v1/challenges", "good", `{"ttl":"forever"}`, 400, "ttl"},
		{"negative ttl", "POST", "/api/v1/challenges", "good", `{"ttl":"-1h"}`, 400, "ttl"},
		{"unknown field", "POST", "/api/v1/challenges", "good", `{"color":"red"}`, 400, "unknown field"},
		{"not json", "POST", "/api/v1/challenges", "good", `{`, 400, "request body"},
		{"huge body", "POST", "/api/v1/challenges", "good", `{"note":"` + strings.Repeat("x", 2<<20) + `"}`, 400, "larger than"},
		{"bad fingerprint", "GET", "/api/v1/certs/xyz", "good", "", 400, "fingerprint"},
		{"unknown cert", "GET", "/api/v1/certs/" + strings.Repeat("ab", 32), "good", "", 404, "no certificate"},
		{"revoke unknown", "POST", "/api/v1/certs/" + strings.Repeat("ab", 32) + "/revoke", "good", "", 404, "no certificate"},
		{"unknown endpoint", "GET", "/api/v1/nothing", "good", "", 404, "no API endpoint"},
		{"import: empty file", "POST", "/api/v1/records/import", "good", "", 400, "the file is empty"},
		{"import: missing column", "POST", "/api/v1/records/import", "good", "name,email\n", 400, "serial"},
		{"import: bad map", "POST", "/api/v1/records/import?map=nocolumn", "good", "", 400, "COLUMN=FIELD"},
		{"import: map to unknown field", "POST", "/api/v1/records/import?map=Tag=colour", "good", "", 400, "unknown field"},
		{"import: bad dry_run", "POST", "/api/v1/records/import?dry_run=maybe", "good", "", 400, "dry_run"},
		{"import: bad group", "POST", "/api/v1/records/import?group=a%3Bb", "good", "", 400, "group"},
		{"import: bad rows", "POST", "/api/v1/records/import", "good", "name,email,ownership,serial,platform\nA,a@b,corporate,S1,ios\n", 422, ""},
		{"users import: bad rows", "POST", "/api/v1/users/import", "good", "name,email,ownership\nA,a@b.c,leased\n", 422, ""},
		{"inventory: bad status", "GET", "/api/v1/inventory?status=lost", "good", "", 400, "unknown status"},
		{"inventory: unknown", "GET", "/api/v1/inventory/NOPE", "good", "", 404, "no device or record"},
		{"settings: unknown", "PATCH", "/api/v1/settings", "good", `{"colour":"red"}`, 400, "unknown setting"},
		{"settings: bad value", "PATCH", "/api/v1/settings", "good", `{"enrollment.preenrolled-only":"maybe"}`, 400, "not a boolean"},
		{"settings: not json", "PATCH", "/api/v1/settings", "good", `[1]`, 400, "request body"},
		{"link: neither", "POST", "/api/v1/links", "good", `{}`, 400, "serial number or an email"},
		{"link: both", "POST", "/api/v1/links", "good", `{"serial":"A1","email":"a@b.c"}`, 400, "not both"},
		{"link: bad serial", "POST", "/api/v1/links", "good", `{"serial":"A 1!"}`, 400, "bad serial"},
		{"link: unknown serial", "POST", "/api/v1/links", "good", `{"serial":"A1"}`, 404, "no record"},
		{"members: none", "POST", "/api/v1/groups/g/members", "good", `{}`, 400, "serials or emails"},
		{"members: unknown", "POST", "/api/v1/groups/g/members", "good", `{"serials":["A1"]}`, 404, "A1"},
		{"members: bad email", "POST", "/api/v1/groups/g/members", "good", `{"emails":["nobody"]}`, 400, "bad email"},
		{"members: bad group", "POST", "/api/v1/groups/a;b/members", "good", `{"serials":["A1"]}`, 400, "bad group name"},
		{"assignment: nothing", "POST", "/api/v1/assignments", "good", `{"group":"g"}`, 400, "give a profile"},
		{"assignment: not a profile", "POST", "/api/v1/assignments", "good", `{"group":"g","profile":"aGVsbG8="}`, 400, "neither a plist"},
		{"assignment: no group", "POST", "/api/v1/assignments", "good", `{"request_type":"DeviceLock"}`, 400, "bad group name"},
		{"assignment: both", "POST", "/api/v1/assignments", "good", `{"group":"g","profile":"aGVsbG8=","request_type":"DeviceLock"}`, 400, "not both"},
		{"assignment: bad key", "POST", "/api/v1/assignments", "good", `{"group":"g","request_type":"DeviceLock","keys":{"Colour":1}}`, 400, "Colour"},
		{"assignment: delete unknown", "DELETE", "/api/v1/assignments/nope", "good", "", 404, "nope"},
		{"trace: unknown", "GET", "/api/v1/trace/NOPE", "good", "", 404, "no record or device"},
		{"ring: bad name", "POST", "/api/v1/rings", "good", `{"name":"a b","group":"g"}`, 400, "ring name"},
		{"ring: no members", "POST", "/api/v1/rings", "good", `{"name":"r0"}`, 400, "no members"},
		{"ring: bad member", "POST", "/api/v1/rings", "good", `{"name":"r0","members":["device:X"]}`, 400, "neither record:SERIAL nor user:EMAIL"},
		{"ring: unknown member", "POST", "/api/v1/rings", "good", `{"name":"r0","members":["record:NOPE","user:x@y.z"]}`, 400, "2 members have no record or user"},
		{"ring: bad channel", "POST", "/api/v1/rings", "good", `{"name":"r0","group":"g","channel":"pigeon"}`, 400, "channel"},
		{"ring: deadline first", "POST", "/api/v1/rings", "good", `{"name":"r0","group":"g","not_before":"2026-12-02T00:00:00Z","deadline":"2026-12-01T00:00:00Z"}`, 400, "before its start"},
		{"ring: bad time", "POST", "/api/v1/rings", "good", `{"name":"r0","group":"g","deadline":"soon"}`, 400, "request body"},
		{"ring: bad overdue group", "POST", "/api/v1/rings", "good", `{"name":"r0","group":"g","overdue_group":"a;b"}`, 400, "overdue group"},
		{"ring: created", "POST", "/api/v1/rings", "good", `{"name":"r1","group":"g"}`, 201, ""},
		{"ring: taken", "POST", "/api/v1/rings", "good", `{"name":"r1","group":"h"}`, 409, "already exists"},
		{"ring: unknown", "GET", "/api/v1/rings/nope", "good", "", 404, "nope"},
		{"ring: bad filter", "GET", "/api/v1/rings/r1?targets=some", "good", "", 400, "targets"},
		{"ring: export bad filter", "GET", "/api/v1/rings/r1/export?targets=some", "good", "", 400, "targets"},
		{"ring: delete unknown", "DELETE", "/api/v1/rings/nope", "good", "", 404, "nope"},
		{"job: bad kind", "POST", "/api/v1/rings/r1/jobs", "good", `{"kind":"spam"}`, 400, "job kind"},
		{"job: unknown ring", "POST", "/api/v1/rings/nope/jobs", "good", `{"kind":"invitation"}`, 404, "nope"},
		{"job: bad number", "GET", "/api/v1/rings/r1/jobs/abc", "good", "", 400, "job number"},
		{"job: unknown", "GET", "/api/v1/rings/r1/jobs/9", "good", "", 404, "no job 9"},
		{"job: pause unknown", "POST", "/api/v1/rings/r1/jobs/9/pause", "good", "", 404, "no job 9"},
		{"job: resume unknown", "POST", "/api/v1/rings/r1/jobs/9/resume", "good", "", 404, "no job 9"},
		{"scim token: no name", "POST", "/api/v1/scim/tokens", "good", `{}`, 400, "give the token a name"},
		{"scim token: revoke unknown", "DELETE", "/api/v1/scim/tokens/nope", "good", "", 404, "no SCIM token nope"},
		{"directory: bad grace", "PATCH", "/api/v1/directory/settings", "good", `{"grace":"soon"}`, 400, "bad duration"},
		{"directory: grace too long", "PATCH", "/api/v1/directory/settings", "good", `{"grace":"9000h"}`, 400, "at most 90 days"},
		{"directory: bad audit seq", "GET", "/api/v1/directory/audit?after=x", "good", "", 400, "not a sequence number"},
		{"offboarding: unknown", "GET", "/api/v1/offboardings/nope", "good", "", 404, "no offboarding nope"},
		{"offboarding: cancel unknown", "POST", "/api/v1/offboardings/nope/cancel", "good", `{}`, 404, "nope"},
		{"google: no subject", "PUT", "/api/v1/google", "good", `{"credentials":"{}"}`, 400, "subject"},
		{"google: bad key", "PUT", "/api/v1/google", "good", `{"credentials":"{}","subject":"admin@example.com"}`, 400, "not a service account"},
		{"google: bad schedule", "PUT", "/api/v1/google", "good", `{"credentials":"{}","subject":"admin@example.com","every":"5s"}`, 400, "a minute or more"},
		{"google: bad org unit", "PUT", "/api/v1/google", "good", `{"credentials":"{}","subject":"admin@example.com","org_units":["Sales"]}`, 400, "path like /Sales"},
		{"google: sync unset", "POST", "/api/v1/google/sync", "good", "", 400, "not set up"},
		{"template: unknown kind", "GET", "/api/v1/templates/sms", "good", "", 404, "invitation or reminder"},
		{"template: bad syntax", "PUT", "/api/v1/templates/invitation", "good", `{"subject":"{{.Name","text":"x"}`, 400, "subject template"},
		{"template: unknown variable", "PUT", "/api/v1/templates/reminder", "good", `{"subject":"x","text":"{{.Nickname}}"}`, 400, "Nickname"},
		{"template: no text", "PUT", "/api/v1/templates/invitation", "good", `{"subject":"x"}`, 400, "text body"},
		{"webhook: bad url", "PUT", "/api/v1/webhook", "good", `{"url":"ftp://x"}`, 400, "http(s)"},
		{"webhook: none", "GET", "/api/v1/webhook", "good", "", 404, "custody webhook set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
			if tc.auth == "good" {
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
			} else if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e apiError
			if tc.code == http.StatusUnprocessableEntity {
				var res enroll.ImportResult
				json.NewDecoder(resp.Body).Decode(&res)
				if resp.StatusCode != tc.code || res.Written || len(res.Errors) != 1 || res.Errors[0].Line != 2 {
					t.Errorf("%s %s = %d %+v, want 422 naming line 2", tc.method, tc.path, resp.StatusCode, res)
				}
				return
			}
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.errPart) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, e.Error, tc.code, tc.errPart)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}

	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`custody_http_requests_total{code="401",route="api"}`, "go_goroutines"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestCertValidityFlag(t *testing.T) {
	dir := t.TempDir()
	err := run(context.Background(), []string{"serve", "--data", dir, "--cert-validity", "soon"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--cert-validity") {
		t.Fatalf("serve with a bad --cert-validity: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileCAKey)); err == nil {
		t.Error("a refused start initialised the data dir")
	}
	t.Setenv("CUSTODY_CERT_VALIDITY", "720h")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(key, pkix.Name{CommonName: "short-lived"}, mintChallenge(t, dir))
	cert, err := (&scep.Client{URL: url + "/scep"}).Enroll(context.Background(), key, csr)
	if err != nil {
		t.Fatal(err)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 719*time.Hour || d > 721*time.Hour {
		t.Errorf("validity %v, want 720h from CUSTODY_CERT_VALIDITY", d)
	}
}
