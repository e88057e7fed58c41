package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/storage/postgres/pgtest"
)

// balancer sends each request to a replica chosen at random, and to
// another when the one chosen does not answer, as a load balancer in front
// of several custody servers does.
type balancer struct {
	*httptest.Server
	mu       sync.Mutex
	replicas []string
	hits     map[string]int
}

func newBalancer(t *testing.T) *balancer {
	b := &balancer{hits: map[string]int{}}
	b.Server = httptest.NewServer(b)
	t.Cleanup(b.Close)
	return b
}

func (b *balancer) set(replicas ...string) {
	b.mu.Lock()
	b.replicas = replicas
	b.mu.Unlock()
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	b.mu.Lock()
	order := slices.Clone(b.replicas)
	b.mu.Unlock()
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, replica := range order {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, replica+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			continue // a dead replica: try the next
		}
		b.mu.Lock()
		b.hits[replica]++
		b.mu.Unlock()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no replica answered", http.StatusBadGateway)
}

// Two `custody serve` processes on one PostgreSQL database, behind a
// balancer that spreads every request at random: commands enqueued through
// either reach each device exactly once, with every result recorded, and
// each push is sent once. Then the replica running the campaign job is
// killed mid-dispatch: the other takes over its lease and finishes the
// job, and finishes delivering commands.
func TestPostgresReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	fake := mdmtest.NewAPNs()
	t.Cleanup(fake.Close)
	caFile := filepath.Join(t.TempDir(), "apns-ca.pem")
	os.WriteFile(caFile, pemCert(fake.Certificate()), 0o644)
	smtp := campaigntest.Start(t)
	lb := newBalancer(t)
	flags := []string{"--storage", "postgres", "--dsn", dsn, "--base-url", lb.URL,
		"--apns-host", fake.URL, "--apns-ca", caFile, "--lease-ttl", "1s"}
	procA, urlA := serveProcess(t, dir, flags...)
	procB, urlB := serveProcess(t, dir, flags...)
	lb.set(urlA, urlB)
	replicas := map[string]interface{ Kill() error }{urlA: procA.Process, urlB: procB.Process}
	via := func(url string, args ...string) string {
		t.Helper()
		out, err := runCLI(append(args, "--data", dir, "--server", url)...)
		if err != nil {
			t.Fatalf("custody %s (via %s): %v\n%s", strings.Join(args, " "), url, err, out)
		}
		return out
	}

	const n = 20
	devices := make([]*mdmtest.Device, n)
	ids := make([]string, n)
	for i := range devices {
		var link enrollmentResponse
		apiCall(t, dir, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{For: fmt.Sprint("record-", i)}, &link)
		d, err := mdmtest.Enroll(context.Background(), link.URL, mdmtest.EnrollOptions{Roots: caPool(t, dir)})
		if err != nil {
			t.Fatalf("enrol through the balancer: %v", err)
		}
		fake.Register(d)
		devices[i], ids[i] = d, d.UDID
	}

	// A round: five commands enqueued to every device, alternately through
	// each replica, then one push each; every device runs exactly its
	// five, in order, and every result is recorded.
	executed := map[string][]string{} // device → command UUIDs it ran
	enqueued := map[string][]string{}
	round := func(name string, urls ...string) {
		t.Helper()
		pushesBefore := len(fake.Pushes())
		for i := range 5 {
			url := urls[i%len(urls)]
			out := via(url, append([]string{"enqueue", "--type", "ProfileList", "--no-push"}, ids...)...)
			uuid := strings.TrimSpace(out)
			for _, id := range ids {
				enqueued[id] = append(enqueued[id], uuid)
			}
		}
		via(urls[0], append([]string{"push"}, ids...)...)
		for range n {
			select {
			case w := <-fake.Wakes:
				if w.Err != nil {
					t.Fatalf("%s: %s: %v", name, w.Device.UDID, w.Err)
				}
				for _, c := range w.Commands {
					executed[w.Device.UDID] = append(executed[w.Device.UDID], c.CommandUUID)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: not every device was woken", name)
			}
		}
		if p := len(fake.Pushes()) - pushesBefore; p != n {
			t.Errorf("%s: %d pushes for %d devices, want one each", name, p, n)
		}
		for _, id := range ids {
			if !slices.Equal(executed[id], enqueued[id]) {
				t.Errorf("%s: %s ran %v, want each of %v once, in order", name, id, executed[id], enqueued[id])
			}
			var cmds struct {
				Queue   []any        `json:"queue"`
				Results []resultJSON `json:"results"`
			}
			apiCall(t, dir, http.MethodGet, "/api/v1/devices/"+id+"/commands", nil, &cmds)
			var got []string
			for _, r := range cmds.Results {
				if r.Status != "Acknowledged" {
					t.Errorf("%s: %s result %+v", name, id, r)
				}
				got = append(got, r.CommandUUID)
			}
			if !slices.Equal(got, enqueued[id]) || len(cmds.Queue) != 0 {
				t.Errorf("%s: %s results %v (queue %d left), want %v", name, id, got, len(cmds.Queue), enqueued[id])
			}
		}
	}
	round("both replicas", urlA, urlB)
	lb.mu.Lock()
	hitsA, hitsB := lb.hits[urlA], lb.hits[urlB]
	lb.mu.Unlock()
	if hitsA < 20 || hitsB < 20 {
		t.Errorf("device requests were not spread: %d to one replica, %d to the other", hitsA, hitsB)
	}

	// A campaign of 300 invitations, mailed slowly; the replica holding
	// the campaigns lease is killed a third of the way through.
	var b strings.Builder
	cw := csv.NewWriter(&b)
	cw.Write([]string{"Name", "Email", "Ownership", "Serial Number", "Platform", "Groups"})
	const users = 300
	for i := range users {
		cw.Write([]string{fmt.Sprint("User ", i), fmt.Sprintf("user%03d@example.com", i), "corporate", fmt.Sprintf("REPL%04d", i), "ios", "staff"})
	}
	cw.Flush()
	via(urlA, "preenroll", "import", writeFileTB(t, "users.csv", []byte(b.String())))
	via(urlB, "mail", "set", "--host", "127.0.0.1", "--port", fmt.Sprint(smtp.Port), "--tls", "starttls", "--user", smtp.User,
		"--password-file", writeFileTB(t, "smtp-pass", []byte(smtp.Pass)), "--from", "it@example.com",
		"--ca-file", writeFileTB(t, "smtp-ca.pem", smtp.CAPEM))
	via(urlA, "rings", "create", "staff", "--group", "staff")
	smtp.SetDelay(10 * time.Millisecond)
	via(urlB, "invite", "--ring", "staff", "--detach")
	for len(smtp.Messages()) < users/3 {
		time.Sleep(time.Millisecond)
	}
	holder := campaignsHolder(t, urlA, urlB)
	if err := replicas[holder].Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killedAt := len(smtp.Messages())
	survivor := urlA
	if holder == urlA {
		survivor = urlB
	}
	lb.set(survivor)

	// The survivor delivers new commands alone, and finishes the job.
	round("after the kill", survivor)
	deadline := time.Now().Add(60 * time.Second)
	var ring ringJSON
	for {
		if err := json.Unmarshal([]byte(via(survivor, "rings", "show", "staff", "--json")), &ring); err != nil {
			t.Fatal(err)
		}
		if ring.LastJob != nil && ring.LastJob.Job.State == campaign.JobDone {
			break
		}
		if ring.LastJob != nil && ring.LastJob.Job.State == campaign.JobFailed {
			t.Fatalf("the job failed on the survivor: %s", ring.LastJob.Job.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the survivor did not finish the job: %+v", ring.LastJob)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := map[string]int{}
	for _, m := range smtp.Messages() {
		got[m.To[0]]++
	}
	twice := 0
	for i := range users {
		switch got[fmt.Sprintf("user%03d@example.com", i)] {
		case 1:
		case 2:
			twice++
		default:
			t.Errorf("user%03d got %d invitations", i, got[fmt.Sprintf("user%03d@example.com", i)])
		}
	}
	if twice > 1 || twice > ring.LastJob.Duplicates {
		t.Errorf("%d users got two invitations; the job reports %d possible duplicates", twice, ring.LastJob.Duplicates)
	}
	t.Logf("device requests: %d and %d; campaign holder killed after %d of %d mails; the survivor finished (%d sent twice)",
		hitsA, hitsB, killedAt, users, twice)
}

// campaignsHolder returns the URL of the replica that has taken the
// campaigns lease (and not lost it), from its metrics.
func campaignsHolder(t *testing.T, urls ...string) string {
	t.Helper()
	re := regexp.MustCompile(`custody_lease_events_total\{event="(taken|lost)",job="campaigns"\} (\d+)`)
	var holders []string
	for _, url := range urls {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		count := map[string]int{}
		for _, m := range re.FindAllStringSubmatch(string(body), -1) {
			count[m[1]], _ = strconv.Atoi(m[2])
		}
		if count["taken"] > count["lost"] {
			holders = append(holders, url)
		}
	}
	if len(holders) != 1 {
		t.Fatalf("replicas holding the campaigns lease: %v, want one", holders)
	}
	return holders[0]
}

// custody migrate applies the schema once and reports the version; the
// storage flags refuse what they cannot use.
func TestMigrateCommand(t *testing.T) {
	if out, err := runCLI("migrate", "--storage", "postgres"); err == nil || !strings.Contains(err.Error(), "needs --dsn") {
		t.Errorf("migrate without a DSN: %v\n%s", err, out)
	}
	if out, err := runCLI("migrate", "--storage", "mysql", "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), `--storage "mysql": want bolt or postgres`) {
		t.Errorf("migrate --storage mysql: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if out, err := runCLI("migrate", "--data", dir); err != nil || !strings.Contains(out, "bolt: "+filepath.Join(dir, fileDB)+" is up to date") {
		t.Errorf("migrate on bolt: %v\n%s", err, out)
	}
	dsn := pgtest.DSN(t)
	out, err := runCLI("migrate", "--storage", "postgres", "--dsn", dsn)
	if err != nil || !strings.Contains(out, "postgres: applied migration 1\n") || !strings.Contains(out, "schema at version 1 of 1") {
		t.Errorf("first migrate: %v\n%s", err, out)
	}
	out, err = runCLI("migrate", "--storage", "postgres", "--dsn", dsn)
	if err != nil || strings.Contains(out, "applied") || !strings.Contains(out, "schema at version 1 of 1") {
		t.Errorf("second migrate: %v\n%s", err, out)
	}
	if _, err := runCLI("migrate", "--storage", "postgres", "--dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"); err == nil || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Errorf("migrate against no server: %v", err)
	}
}
