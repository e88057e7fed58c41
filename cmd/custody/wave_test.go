package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/zerotouch"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

// raceEnabled is set by race_test.go under the race detector, where the
// wave is smaller.
var raceEnabled bool

// A wave is the migration of ../shared/seeds/hexnode-5000-user-migration.txt
// against a `custody serve` process: users imported by CSV in three
// rings, invited through the SMTP server, their simulated devices (Apple
// and Android) following the links in the mails.
type wave struct {
	t     testing.TB
	n     int
	dir   string
	proc  interface{ Kill() error }
	addr  string // where the server listens, the same across restarts (the links in the mails name it)
	url   string
	smtp  *campaigntest.Server
	fake  *zerotouchtest.Server
	push  string // the Android Pub/Sub push path and token
	users []waveUser
	keys  []*rsa.PrivateKey

	phases map[string]time.Duration
}

type waveUser struct {
	serial, email, ring string
	platform            enroll.Platform
	ownership           enroll.Ownership
	leftOut             bool // does not enrol: the reminders are for them
}

// ringOf puts 10 % of users in ring-1, 30 % in ring-2, 60 % in ring-3.
func ringOf(i, n int) string {
	switch {
	case i < n/10:
		return "ring-1"
	case i < n*4/10:
		return "ring-2"
	}
	return "ring-3"
}

func newWave(t testing.TB, n int) *wave {
	w := &wave{t: t, n: n, dir: t.TempDir(), smtp: campaigntest.Start(t), fake: zerotouchtest.New(), phases: map[string]time.Duration{}}
	t.Cleanup(w.fake.Close)
	for range 8 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		w.keys = append(w.keys, k)
	}
	for i := range n {
		u := waveUser{serial: fmt.Sprintf("WAVE%05d", i), email: fmt.Sprintf("user%05d@example.com", i), ring: ringOf(i, n),
			platform:  []enroll.Platform{enroll.PlatformIOS, enroll.PlatformMacOS, enroll.PlatformAndroid, enroll.PlatformIOS, enroll.PlatformAndroid}[i%5],
			ownership: enroll.OwnershipCorporate, leftOut: i%50 == 7}
		if i%10 == 4 {
			u.ownership = enroll.OwnershipPersonal // Android, with a work profile
		}
		w.users = append(w.users, u)
	}
	return w
}

func (w *wave) timed(phase string, fn func()) {
	start := time.Now()
	fn()
	w.phases[phase] += time.Since(start)
}

func (w *wave) cli(args ...string) string {
	w.t.Helper()
	out, err := runCLI(append(args, "--data", w.dir)...)
	if err != nil {
		w.t.Fatalf("custody %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runCLI runs the custody CLI in-process.
func runCLI(args ...string) (string, error) {
	var out, errOut strings.Builder
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// start starts (or restarts) the server process and points the fake
// Android service's push at it.
func (w *wave) start() {
	if w.addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			w.t.Fatal(err)
		}
		w.addr = ln.Addr().String()
		ln.Close()
	}
	proc, url := serveProcess(w.t, w.dir, "--listen", w.addr)
	w.proc, w.url = proc.Process, url
	if w.push != "" {
		w.fake.PushURL = w.url + w.push
	}
}

// setUp imports the users, binds Android, sets the mail server and makes
// the rings: ring-1 and ring-3 from their groups, ring-2 from the CSV's
// ring column.
func (w *wave) setUp() {
	w.start()
	out := w.cli("android", "bind", "--enterprise", w.fake.AddEnterprise("Wave"), "--endpoint", w.fake.URL, "--customer", w.fake.Customer())
	m := regexp.MustCompile(`Pub/Sub push URL: \S+?(/android/pubsub\S*)`).FindStringSubmatch(out)
	if m == nil {
		w.t.Fatalf("android bind printed no push URL:\n%s", out)
	}
	w.push = m[1]
	w.fake.PushURL = w.url + w.push
	w.cli("mail", "set", "--host", "127.0.0.1", "--port", fmt.Sprint(w.smtp.Port), "--tls", "starttls", "--user", w.smtp.User,
		"--password-file", writeFileTB(w.t, "smtp-pass", []byte(w.smtp.Pass)), "--from", "it-support@example.com",
		"--from-name", "IT Support", "--ca-file", writeFileTB(w.t, "smtp-ca.pem", w.smtp.CAPEM))

	var b strings.Builder
	cw := csv.NewWriter(&b)
	cw.Write([]string{"Name", "Email", "Ownership", "Serial Number", "Platform", "Groups", "ring"})
	for i, u := range w.users {
		cw.Write([]string{fmt.Sprintf("User %d", i), u.email, string(u.ownership), u.serial, string(u.platform), "wave-" + u.ring, strings.TrimPrefix(u.ring, "ring-")})
	}
	cw.Flush()
	file := writeFileTB(w.t, "wave.csv", []byte(b.String()))
	w.timed("import", func() {
		w.cli("preenroll", "import", file)
		w.cli("rings", "create", "ring-1", "--group", "wave-ring-1", "--deadline", "+72h", "--help-desk", "IT desk, ext. 4242")
		w.cli("rings", "create", "ring-2", "--csv", file, "--where", "ring=2", "--deadline", "+96h")
		w.cli("rings", "create", "ring-3", "--group", "wave-ring-3", "--deadline", "+120h")
	})
}

// ringJSON fetches a ring through the API.
func (w *wave) ring(name string) ringJSON {
	w.t.Helper()
	var r ringJSON
	out := w.cli("rings", "show", name, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		w.t.Fatalf("rings show %s: %v\n%s", name, err, out)
	}
	return r
}

// expect checks each ring's counts against what the users did.
func (w *wave) expect(step string, invited, enrolled bool) {
	w.t.Helper()
	for _, name := range []string{"ring-1", "ring-2", "ring-3"} {
		var size, left int
		for _, u := range w.users {
			if u.ring == name {
				size++
				if u.leftOut {
					left++
				}
			}
		}
		want := campaign.Counts{Targets: size, PreApproved: size}
		if invited {
			want.PreApproved, want.Invited, want.Delivered = 0, size, size
		}
		if enrolled {
			want.Invited, want.Enrolled = left, size-left
		}
		got := w.ring(name).Counts
		got.Duplicates, got.Reminded = 0, 0
		if got != want {
			w.t.Errorf("%s: %s counts %+v, want %+v", step, name, got, want)
		}
	}
}

var waveLinkRE = regexp.MustCompile(`https?://\S+/enroll/\S+|https://enterprise\.google\.com/android/enroll\?et=\S+`)

// mails returns each recipient's links, in the order received.
func (w *wave) mails(from int) map[string][]string {
	w.t.Helper()
	out := map[string][]string{}
	for _, m := range w.smtp.Messages()[from:] {
		p, err := m.Parse()
		if err != nil {
			w.t.Fatal(err)
		}
		link := waveLinkRE.FindString(p.Text)
		if link == "" {
			w.t.Fatalf("no link in the mail to %v:\n%s", m.To, p.Text)
		}
		out[m.To[0]] = append(out[m.To[0]], link)
	}
	return out
}

func (w *wave) invite(ring string, extra ...string) {
	w.t.Helper()
	w.timed("dispatch", func() { w.cli(append([]string{"invite", "--ring", ring}, extra...)...) })
}

// enrol has every user's device, except those left out, follow the link
// in their invitation: Apple devices enrol by the profile at the link,
// Android ones scan the QR code (company-owned) or open the link
// (personal). Then each Apple device checks in once.
func (w *wave) enrol(links map[string][]string) {
	w.t.Helper()
	roots := caPool(w.t, w.dir)
	var mu sync.Mutex
	var apple []*mdmtest.Device
	jobs := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, w.n)
	w.timed("enrolment", func() {
		for range 8 {
			wg.Go(func() {
				for i := range jobs {
					u := w.users[i]
					link := links[u.email][0]
					if u.platform != enroll.PlatformAndroid {
						d, err := mdmtest.Enroll(context.Background(), link, mdmtest.EnrollOptions{Roots: roots,
							SerialNumber: u.serial, Key: w.keys[i%len(w.keys)]})
						if err != nil {
							errs <- fmt.Errorf("%s: %w", u.serial, err)
							continue
						}
						mu.Lock()
						apple = append(apple, d)
						mu.Unlock()
						continue
					}
					token, _ := strings.CutPrefix(link, zerotouch.EnrollmentLink(""))
					info := zerotouchtest.DeviceInfo{Serial: u.serial}
					var err error
					if u.ownership == enroll.OwnershipCorporate {
						_, err = w.fake.ScanQR(zerotouch.QRPayload(token), info)
					} else {
						_, err = w.fake.OpenLink(link, info)
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", u.serial, err)
					}
				}
			})
		}
		for i, u := range w.users {
			if !u.leftOut {
				jobs <- i
			}
		}
		close(jobs)
		wg.Wait()
	})
	close(errs)
	for err := range errs {
		w.t.Errorf("enrolment: %v", err)
	}
	w.timed("check-in", func() {
		work := make(chan *mdmtest.Device)
		for range 8 {
			wg.Go(func() {
				for d := range work {
					if _, err := d.Poll(context.Background()); err != nil {
						w.t.Errorf("%s check-in: %v", d.SerialNumber, err)
					}
				}
			})
		}
		for _, d := range apple {
			work <- d
		}
		close(work)
		wg.Wait()
	})
}

func writeFileTB(t testing.TB, name string, data []byte) string {
	path := t.TempDir() + "/" + name
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The migration wave: 5,000 users in three rings imported by CSV, ring
// by ring invited through the SMTP server (ring-3's dispatch killed with
// SIGKILL halfway and resumed by the restarted server), their devices
// enrolling by the links in the mails, reminders to exactly those left
// out, the ring counts exact at every step.
func TestMigrationWave(t *testing.T) {
	n := 5000
	if testing.Short() || raceEnabled {
		n = 500
	}
	w := newWave(t, n)
	w.setUp()
	w.expect("after import", false, false)
	if out := w.cli("invite", "--ring", "ring-1", "--dry-run"); !strings.Contains(out, fmt.Sprintf("dry run: %d invitations would be sent to ring ring-1", n/10)) ||
		strings.Count(out, "record:WAVE") != n/10 || len(w.smtp.Messages()) != 0 {
		t.Errorf("dry run:\n%s", out)
	}

	// The QR code of an Apple invitation holds its link; of a
	// company-owned Android device's, the provisioning JSON of its token.
	w.invite("ring-1")
	sample := map[enroll.Platform]bool{}
	for _, m := range w.smtp.Messages() {
		p, _ := m.Parse()
		u := w.users[slices.IndexFunc(w.users, func(u waveUser) bool { return u.email == m.To[0] })]
		if sample[u.platform] || u.ownership != enroll.OwnershipCorporate {
			continue
		}
		sample[u.platform] = true
		qr := decodeQRBytes(t, p.Inline[campaign.QRName])
		link := waveLinkRE.FindString(p.Text)
		want := link
		if u.platform == enroll.PlatformAndroid {
			want = string(zerotouch.QRPayload(strings.TrimPrefix(link, zerotouch.EnrollmentLink(""))))
		}
		if qr != want || !strings.Contains(p.Text, "IT desk, ext. 4242") || !strings.HasPrefix(p.Subject, "Enrol your device in Custody by ") {
			t.Errorf("%s invitation: QR %q, want %q; subject %q", u.platform, qr, want, p.Subject)
		}
	}
	if len(sample) != 3 {
		t.Errorf("sampled QR codes of %v", sample)
	}

	// ring-3, killed with SIGKILL mid-dispatch; the restarted server
	// resumes the job.
	size3 := 0
	for _, u := range w.users {
		if u.ring == "ring-3" {
			size3++
		}
	}
	before := len(w.smtp.Messages())
	w.timed("dispatch", func() {
		w.cli("invite", "--ring", "ring-3", "--detach")
		for len(w.smtp.Messages())-before < size3/3 {
			time.Sleep(time.Millisecond)
		}
		if err := w.proc.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
	})
	killedAt := len(w.smtp.Messages()) - before
	time.Sleep(50 * time.Millisecond)
	w.timed("dispatch", func() {
		w.start()
		for {
			r := w.ring("ring-3")
			if r.LastJob != nil && r.LastJob.Job.State == campaign.JobDone {
				break
			}
			if r.LastJob != nil && r.LastJob.Job.State == campaign.JobFailed {
				t.Fatalf("resumed job failed: %s", r.LastJob.Job.Error)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	r3 := w.ring("ring-3")
	got := w.mails(before)
	twice := 0
	for _, u := range w.users {
		if u.ring != "ring-3" {
			continue
		}
		switch len(got[u.email]) {
		case 1:
		case 2:
			twice++
		default:
			t.Errorf("%s got %d invitations", u.email, len(got[u.email]))
		}
	}
	// At most the one message in flight at the kill went twice, and if it
	// did, the job says so (it may say so when the server had not taken
	// it: the job cannot know).
	if r3.LastJob.Duplicates > 1 || twice > r3.LastJob.Duplicates || r3.Counts.Duplicates != r3.LastJob.Duplicates {
		t.Errorf("killed after %d of %d mails: %d users got two, the job reports %d possible duplicates", killedAt, size3, twice, r3.LastJob.Duplicates)
	}
	t.Logf("ring-3 dispatch killed after %d of %d mails and resumed: %d users got two, %d possible duplicate reported",
		killedAt, size3, twice, r3.LastJob.Duplicates)

	w.invite("ring-2")
	w.expect("after invitations", true, false)
	if out := w.cli("invite", "--ring", "ring-2"); !strings.Contains(out, "nothing to send") {
		t.Errorf("inviting ring-2 again: %s", out)
	}

	// Each user's latest link (a resumed ring-3 user may have two; both
	// work, each once).
	links := w.mails(0)
	for email, l := range links {
		links[email] = l[len(l)-1:]
	}
	w.enrol(links)
	w.expect("after enrolment", true, true)

	// Reminders reach exactly the users left out, in the ring asked for.
	before = len(w.smtp.Messages())
	w.timed("reminders", func() { w.cli("remind", "--ring", "ring-3", "--only-not-enrolled") })
	reminded := w.mails(before)
	for _, u := range w.users {
		want := u.ring == "ring-3" && u.leftOut
		if (len(reminded[u.email]) == 1) != want || len(reminded[u.email]) > 1 {
			t.Errorf("%s (%s, left out %v) got %d reminders", u.email, u.ring, u.leftOut, len(reminded[u.email]))
		}
	}
	if r := w.ring("ring-3"); r.Counts.Reminded != len(reminded) || len(reminded) == 0 {
		t.Errorf("ring-3 reminded %d, %d mails", r.Counts.Reminded, len(reminded))
	}
	w.expect("after reminders", true, true)
	if out := w.cli("rings", "status", "ring-3"); !strings.Contains(out, fmt.Sprintf("reminded:     %d", len(reminded))) {
		t.Errorf("rings status:\n%s", out)
	}
	if out := w.cli("rings", "list"); strings.Count(out, "invitation ") != 2 || strings.Count(out, "reminder ") != 1 {
		t.Errorf("rings list:\n%s", out)
	}

	// The export lists the same users.
	rows, err := csv.NewReader(strings.NewReader(w.cli("rings", "export", "ring-3", "--targets", "not-enrolled"))).ReadAll()
	if err != nil || len(rows)-1 != len(reminded) {
		t.Errorf("export of ring-3's not enrolled: %d rows, %v", len(rows)-1, err)
	}
	for _, row := range rows[1:] {
		if len(reminded[row[1]]) != 1 || row[7] != campaign.StateInvited || row[12] != "1" {
			t.Errorf("export row %v", row)
		}
	}
	t.Logf("%d users: import %v, dispatch %v (with a SIGKILL and restart), enrolment %v, check-in %v, reminders %v",
		n, w.phases["import"].Round(time.Millisecond), w.phases["dispatch"].Round(time.Millisecond),
		w.phases["enrolment"].Round(time.Millisecond), w.phases["check-in"].Round(time.Millisecond), w.phases["reminders"].Round(time.Millisecond))
}

// BenchmarkMigrationWave is the whole wave of TestMigrationWave without
// the kill, end to end against a `custody serve` process on this
// machine: import, dispatch of the three rings, enrolment of every
// device but those left out, one check-in each, reminders.
//
//	go test ./cmd/custody -run '^$' -bench MigrationWave -benchtime 1x -count 3
func BenchmarkMigrationWave(b *testing.B) {
	for b.Loop() {
		w := newWave(b, 5000)
		start := time.Now()
		w.setUp()
		for _, ring := range []string{"ring-1", "ring-2", "ring-3"} {
			w.invite(ring)
		}
		links := w.mails(0)
		w.enrol(links)
		w.timed("reminders", func() { w.cli("remind", "--ring", "ring-3", "--only-not-enrolled") })
		total := time.Since(start)
		b.ReportMetric(total.Seconds(), "s/wave")
		for _, phase := range []string{"import", "dispatch", "enrolment", "check-in", "reminders"} {
			b.ReportMetric(w.phases[phase].Seconds(), "s/"+phase)
		}
	}
}
