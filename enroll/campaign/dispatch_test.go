package campaign_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/storage/bolt"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	t     testing.TB
	db    *bolt.DB
	life  *enroll.Lifecycle
	c     *campaign.Campaigns
	smtp  *campaigntest.Server
	mail  campaign.MailSettings
	links atomic.Int64
	hook  func(campaign.Target) // called as each link is minted
}

// newFixture has a campaign runner over bbolt, sending through the
// in-process SMTP server, with links that name their target.
func newFixture(t testing.TB) *fixture {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{t: t, db: db, smtp: campaigntest.Start(t)}
	f.life = &enroll.Lifecycle{Records: db.Records(), Assignments: db.Assignments(), Settings: db.Settings(),
		Tokens: db.Enroll(), Certs: db.SCEP(), MDM: db.MDM(), Logger: quiet}
	f.mail = campaign.MailSettings{Host: "127.0.0.1", Port: f.smtp.Port, TLS: campaign.TLSStartTLS,
		Username: f.smtp.User, Password: f.smtp.Pass, From: "it@example.com", FromName: "IT",
		CAPEM: f.smtp.CAPEM, Timeout: 5 * time.Second, PerConnection: 10}
	invitation, _ := campaign.NewRenderer(campaign.DefaultTemplates)
	f.c = &campaign.Campaigns{
		Store: db.Campaigns(), Lifecycle: f.life, Logger: quiet,
		Retry: campaign.Retry{Attempts: 3, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		Link: func(ctx context.Context, tg *campaign.Target, ttl time.Duration) (*campaign.Link, error) {
			if f.hook != nil {
				f.hook(*tg)
			}
			n := f.links.Add(1)
			return &campaign.Link{URL: fmt.Sprintf("https://mdm.example.com/enroll/%s/%d", tg.Ref, n), Token: fmt.Sprint(n)}, nil
		},
		Open: func(ctx context.Context, channel string) (campaign.Sender, error) {
			return campaign.NewMailer(f.mail)
		},
		Content: func(ctx context.Context) (*campaign.Content, error) {
			return &campaign.Content{Invitation: invitation}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

// importRing imports n devices (one user each) in a group.
func (f *fixture) importRing(group string, n int, email func(i int) string) {
	f.t.Helper()
	var recs []*enroll.Record
	var users []*enroll.User
	for i := range n {
		e := email(i)
		recs = append(recs, &enroll.Record{Serial: fmt.Sprintf("%s-%04d", strings.ToUpper(group), i), Platform: enroll.PlatformIOS,
			Ownership: enroll.OwnershipCorporate, UserEmail: e, UserName: fmt.Sprintf("User %d", i), Groups: []string{group},
			Status: enroll.StatusPreApproved, Source: enroll.SourceCSV})
		users = append(users, &enroll.User{Email: e, Name: fmt.Sprintf("User %d", i)})
	}
	if _, err := f.life.Records.Import(context.Background(), recs, users, time.Now().UTC()); err != nil {
		f.t.Fatal(err)
	}
}

// wait waits for a job to stop running and returns its progress.
func (f *fixture) wait(ring string, id int) *campaign.JobProgress {
	f.t.Helper()
	poll := 5 * time.Millisecond
	if _, bench := f.t.(*testing.B); bench {
		poll = 100 * time.Millisecond // as a watching CLI would, not to weigh on the figures
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := f.c.Progress(context.Background(), ring, id)
		if err != nil {
			f.t.Fatal(err)
		}
		if p.Job.State != campaign.JobQueued && p.Job.State != campaign.JobRunning {
			return p
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("job %s/%d still %s: %+v", ring, id, p.Job.State, p)
		}
		time.Sleep(poll)
	}
}

func (f *fixture) progress(ring string) *campaign.Progress {
	f.t.Helper()
	r, err := f.c.Store.Ring(context.Background(), ring)
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := campaign.RingProgress(context.Background(), f.c.Store, f.life.Records, r, time.Now().UTC())
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

var linkRE = regexp.MustCompile(`https://mdm\.example\.com/enroll/(\S+)/(\d+)`)

// received maps each recipient to the refs of the links they were sent.
func (f *fixture) received() map[string][]string {
	f.t.Helper()
	out := map[string][]string{}
	for _, m := range f.smtp.Messages() {
		p, err := m.Parse()
		if err != nil {
			f.t.Fatal(err)
		}
		l := linkRE.FindStringSubmatch(p.Text)
		if l == nil {
			f.t.Fatalf("no link in mail to %v:\n%s", m.To, p.Text)
		}
		out[m.To[0]] = append(out[m.To[0]], l[1])
	}
	return out
}

// A ring is invited through the SMTP server over reused sessions: one
// mail per device with that device's link, greylisting retried, a
// refused address marked failed with the server's reply, the records
// marked invited; counts are exact; then reminders reach only those not
// enrolled.
func TestDispatchInvitesRing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.importRing("wave-1", 40, func(i int) string {
		switch i {
		case 7:
			return "nobody@blocked.example"
		}
		return fmt.Sprintf("user%02d@example.com", i)
	})
	// A user without a device, in the ring by name; one with two devices.
	f.life.Records.Import(ctx, []*enroll.Record{{Serial: "WAVE-1-EXTRA", Platform: enroll.PlatformMacOS, Ownership: enroll.OwnershipCorporate,
		UserEmail: "user01@example.com", Groups: []string{"wave-1"}, Status: enroll.StatusPreApproved, Source: enroll.SourceCSV}},
		[]*enroll.User{{Email: "solo@example.com", Name: "Solo"}}, time.Now().UTC())
	f.smtp.Defer("user03@example.com", 2)
	err := f.c.CreateRing(ctx, &campaign.Ring{Name: "wave-1", Group: "wave-1", Members: []string{"user:solo@example.com"},
		Deadline: time.Now().Add(72 * time.Hour), HelpDesk: "IT desk, ext. 4242"})
	if err != nil {
		t.Fatal(err)
	}
	if p := f.progress("wave-1"); p.Counts != (campaign.Counts{Targets: 42, PreApproved: 42}) {
		t.Fatalf("before: %+v", p.Counts)
	}
	j, err := f.c.Start(ctx, "wave-1", campaign.KindInvitation, campaign.Options{})
	if err != nil || j.ID != 1 || j.Total != 42 {
		t.Fatalf("Start: %+v, %v", j, err)
	}
	jp := f.wait("wave-1", 1)
	if jp.Job.State != campaign.JobDone || jp.Sent != 41 || jp.Failed != 1 || jp.Pending != 0 || jp.Duplicates != 0 {
		t.Fatalf("job: %+v %+v", jp, jp.Job)
	}
	got := f.received()
	if len(got) != 40 || len(f.smtp.Messages()) != 41 {
		t.Fatalf("%d recipients, %d mails", len(got), len(f.smtp.Messages()))
	}
	for to, refs := range got {
		want := 1
		if to == "user01@example.com" {
			want = 2
		}
		if len(refs) != want {
			t.Errorf("%s got %d mails (%v), want %d", to, len(refs), refs, want)
		}
	}
	if fmt.Sprint(got["user01@example.com"]) != "[record:WAVE-1-0001 record:WAVE-1-EXTRA]" || fmt.Sprint(got["solo@example.com"]) != "[user:solo@example.com]" {
		t.Errorf("links: user01 %v, solo %v", got["user01@example.com"], got["solo@example.com"])
	}
	if s := f.smtp.Sessions(); s > 10 {
		t.Errorf("%d SMTP sessions for 41 mails at 10 per session", s)
	}
	var failed, greylisted *campaign.Delivery
	f.c.Store.Deliveries(ctx, "wave-1", 1, func(d *campaign.Delivery) bool {
		switch d.Target.Email {
		case "nobody@blocked.example":
			failed = d
		case "user03@example.com":
			greylisted = d
		}
		return true
	})
	if failed.State != campaign.DeliveryFailed || failed.Code != 550 || !strings.Contains(failed.Error, "Relaying denied") || failed.Sends != 1 {
		t.Errorf("refused delivery: %+v", failed)
	}
	if greylisted.State != campaign.DeliverySent || greylisted.Attempts != 3 || greylisted.Sends != 1 {
		t.Errorf("greylisted delivery: %+v", greylisted)
	}
	rec, _ := f.life.Records.Record(ctx, "WAVE-1-0002")
	if rec.Status != enroll.StatusInvited || rec.History[len(rec.History)-1].Step != enroll.StepInvited ||
		!strings.Contains(rec.History[len(rec.History)-1].Note, "user02@example.com, ring wave-1") {
		t.Errorf("record after invitation: %s %+v", rec.Status, rec.History)
	}
	if rec, _ := f.life.Records.Record(ctx, "WAVE-1-0007"); rec.Status != enroll.StatusPreApproved {
		t.Errorf("the record whose mail failed is %s", rec.Status)
	}
	p := f.progress("wave-1")
	if p.Counts != (campaign.Counts{Targets: 42, Invited: 41, Failed: 1, Delivered: 41}) {
		t.Errorf("after invitations: %+v", p.Counts)
	}
	for _, ts := range p.Targets {
		if ts.Email == "nobody@blocked.example" && (ts.State != campaign.StateFailed || !strings.Contains(ts.Error, "550")) {
			t.Errorf("failed target: %+v", ts)
		}
	}
	// Nothing left to invite.
	if j, err := f.c.Start(ctx, "wave-1", campaign.KindInvitation, campaign.Options{}); err != nil || j.ID != 0 || j.Total != 0 {
		t.Errorf("second invitation: %+v, %v", j, err)
	}

	// Ten devices enrol (the protocols set their records), and solo
	// enrols a device through their own link.
	for i := 10; i < 20; i++ {
		f.life.Records.UpdateRecord(ctx, fmt.Sprintf("WAVE-1-%04d", i), func(r *enroll.Record) (*enroll.Record, error) {
			r.Status, r.EnrolledAt = enroll.StatusEnrolled, time.Now().UTC()
			return r, nil
		})
	}
	f.life.Records.Import(ctx, []*enroll.Record{{Serial: "SOLO-PHONE", Platform: enroll.PlatformIOS, UserEmail: "solo@example.com",
		Status: enroll.StatusEnrolled, Source: enroll.SourceEnrollment, EnrolledAt: time.Now().UTC()}}, nil, time.Now().UTC())
	p = f.progress("wave-1")
	if p.Counts != (campaign.Counts{Targets: 42, Invited: 30, Failed: 1, Enrolled: 11, Delivered: 41}) {
		t.Errorf("after enrolment: %+v", p.Counts)
	}
	before := len(f.smtp.Messages())
	j, err = f.c.Start(ctx, "wave-1", campaign.KindReminder, campaign.Options{OnlyNotEnrolled: true})
	if err != nil || j.Total != 31 {
		t.Fatalf("reminder: %+v, %v", j, err)
	}
	jp = f.wait("wave-1", j.ID)
	if jp.Sent != 30 || jp.Failed != 1 {
		t.Errorf("reminder job: %+v", jp)
	}
	for _, m := range f.smtp.Messages()[before:] {
		pm, _ := m.Parse()
		l := linkRE.FindStringSubmatch(pm.Text)
		if !strings.HasPrefix(pm.Subject, "Reminder: ") {
			t.Errorf("reminder subject %q", pm.Subject)
		}
		for i := 10; i < 20; i++ {
			if l[1] == fmt.Sprintf("record:WAVE-1-%04d", i) {
				t.Errorf("enrolled device %s reminded", l[1])
			}
		}
		if l[1] == "user:solo@example.com" {
			t.Errorf("solo, enrolled through their own link, reminded")
		}
	}
	p = f.progress("wave-1")
	if p.Counts.Reminded != 30 || p.Counts.Enrolled != 11 || p.Counts.Invited != 30 {
		t.Errorf("after reminders: %+v", p.Counts)
	}
	if len(p.Timeline) == 0 || p.Timeline[len(p.Timeline)-1].Invited != 41 || p.Timeline[len(p.Timeline)-1].Enrolled != 11 {
		t.Errorf("timeline ends %+v", p.Timeline[len(p.Timeline)-1])
	}
}

// A paused job stops after the message under way and resumes where it
// stopped; a job found mid-message after a crash sends that message again
// and counts it as a possible duplicate; nobody else gets two.
func TestDispatchPauseResumeCrash(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.importRing("r", 60, func(i int) string { return fmt.Sprintf("u%02d@example.com", i) })
	if err := f.c.CreateRing(ctx, &campaign.Ring{Name: "r", Group: "r"}); err != nil {
		t.Fatal(err)
	}
	f.smtp.SetDelay(5 * time.Millisecond)
	var minted atomic.Int64
	paused := make(chan struct{})
	f.hook = func(campaign.Target) {
		if minted.Add(1) == 20 {
			close(paused)
		}
	}
	j, err := f.c.Start(ctx, "r", campaign.KindInvitation, campaign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	<-paused
	if _, err := f.c.Pause(ctx, "r", j.ID); err != nil {
		t.Fatal(err)
	}
	jp := f.wait("r", j.ID)
	n := len(f.smtp.Messages())
	if jp.Job.State != campaign.JobPaused || jp.Sent != n || n == 0 || n >= 60 || jp.Pending != 60-n {
		t.Fatalf("paused after %d mails: %+v %+v", n, jp, jp.Job)
	}
	time.Sleep(50 * time.Millisecond)
	if len(f.smtp.Messages()) != n {
		t.Fatalf("a paused job went on sending")
	}
	f.hook = nil
	// Starting the same kind again resumes it.
	if j2, err := f.c.Start(ctx, "r", campaign.KindInvitation, campaign.Options{}); err != nil || j2.ID != j.ID {
		t.Fatalf("resume: %+v, %v", j2, err)
	}
	if _, err := f.c.Start(ctx, "r", campaign.KindReminder, campaign.Options{}); err == nil {
		t.Errorf("a reminder started while the invitation runs")
	}
	jp = f.wait("r", j.ID)
	if jp.Job.State != campaign.JobDone || jp.Sent != 60 || jp.Duplicates != 0 {
		t.Fatalf("resumed: %+v", jp)
	}
	for to, refs := range f.received() {
		if len(refs) != 1 {
			t.Errorf("%s got %d invitations", to, len(refs))
		}
	}

	// A crash: the process stopped after writing "sending" for the third
	// reminder (the server may or may not have taken it). Resumed, the
	// job sends it again, says so, and sends everything else once.
	f.smtp.SetDelay(0)
	j, err = f.c.Store.CreateJob(ctx, &campaign.Job{Ring: "r", Kind: campaign.KindReminder, Channel: campaign.ChannelEmail,
		State: campaign.JobRunning, Created: time.Now()}, mustTargets(t, f, "r"))
	if err != nil {
		t.Fatal(err)
	}
	var ds []*campaign.Delivery
	f.c.Store.Deliveries(ctx, "r", j.ID, func(d *campaign.Delivery) bool { ds = append(ds, d); return len(ds) < 3 })
	ds[0].State, ds[0].Sends, ds[1].State, ds[1].Sends, ds[2].State, ds[2].Sends =
		campaign.DeliverySent, 1, campaign.DeliverySent, 1, campaign.DeliverySending, 1
	f.c.Store.PutDeliveries(ctx, ds...)
	before := len(f.smtp.Messages())
	f.c.Resume(ctx, "r", j.ID) // wakes the runner, which resumes running jobs as at a process start
	jp = f.wait("r", j.ID)
	if jp.Job.State != campaign.JobDone || jp.Sent != 60 || jp.Duplicates != 1 {
		t.Fatalf("after the crash: %+v", jp)
	}
	if sent := len(f.smtp.Messages()) - before; sent != 58 {
		t.Errorf("resumed job sent %d reminders, want 58 (the one in doubt again, not the two before it)", sent)
	}
	if p := f.progress("r"); p.Counts.Duplicates != 1 {
		t.Errorf("ring duplicates %d", p.Counts.Duplicates)
	}
}

func mustTargets(t *testing.T, f *fixture, ring string) []campaign.Target {
	r, _ := f.c.Store.Ring(context.Background(), ring)
	ts, err := campaign.Targets(context.Background(), f.life.Records, r)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// Messages go out no faster than the configured rate.
func TestDispatchRate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.importRing("r", 12, func(i int) string { return fmt.Sprintf("u%02d@example.com", i) })
	f.c.CreateRing(ctx, &campaign.Ring{Name: "r", Group: "r"})
	f.mail.Rate = 40
	start := time.Now()
	j, _ := f.c.Start(ctx, "r", campaign.KindInvitation, campaign.Options{})
	jp := f.wait("r", j.ID)
	if took := time.Since(start); jp.Sent != 12 || took < 11*time.Second/40 {
		t.Errorf("12 mails at 40/s took %v (%+v)", took, jp)
	}
}

// The webhook channel posts signed JSON for a bridge (SMS, Teams, Slack);
// 429 and 5xx are retried, other refusals fail that message.
func TestDispatchWebhook(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.importRing("sms", 5, func(i int) string { return fmt.Sprintf("u%d@example.com", i) })
	f.life.Records.UpdateRecords(ctx, []string{"SMS-0000", "SMS-0001", "SMS-0002", "SMS-0003", "SMS-0004"},
		func(s string, r *enroll.Record) (*enroll.Record, error) {
			r.Mobile = "+4479460000" + s[len(s)-2:]
			return r, nil
		})
	var mu sync.Mutex
	var got []campaign.WebhookMessage
	calls := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(campaign.SignatureHeader) != campaign.Sign("hush", body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m campaign.WebhookMessage
		json.Unmarshal(body, &m)
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch {
		case calls == 2:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case m.Mobile == "+447946000003":
			http.Error(w, "not a mobile number", http.StatusBadRequest)
		default:
			got = append(got, m)
		}
	}))
	defer hook.Close()
	f.c.Open = func(ctx context.Context, channel string) (campaign.Sender, error) {
		if channel != campaign.ChannelWebhook {
			t.Errorf("channel %q", channel)
		}
		return campaign.NewWebhook(campaign.WebhookSettings{URL: hook.URL, Secret: "hush"}, nil)
	}
	f.c.CreateRing(ctx, &campaign.Ring{Name: "sms", Group: "sms", Channel: campaign.ChannelWebhook})
	j, _ := f.c.Start(ctx, "sms", campaign.KindInvitation, campaign.Options{})
	jp := f.wait("sms", j.ID)
	if jp.Sent != 4 || jp.Failed != 1 || len(got) != 4 {
		t.Fatalf("webhook job %+v, %d posted", jp, len(got))
	}
	for _, m := range got {
		if !strings.HasPrefix(m.Mobile, "+4479460000") || !strings.Contains(m.Text, m.Link) || m.Ring != "sms" || m.Kind != "invitation" {
			t.Errorf("posted %+v", m)
		}
	}
	p := f.progress("sms")
	for _, ts := range p.Targets {
		if ts.Mobile == "+447946000003" && (ts.State != campaign.StateFailed || !strings.Contains(ts.Error, "400")) {
			t.Errorf("refused target %+v", ts)
		}
	}
}

// Once the deadline has passed, the members not enrolled join the
// overdue group and get a final reminder, once.
func TestDeadlineActions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.importRing("late", 6, func(i int) string { return fmt.Sprintf("u%d@example.com", i) })
	f.life.Records.UpdateRecord(ctx, "LATE-0000", func(r *enroll.Record) (*enroll.Record, error) {
		r.Status = enroll.StatusEnrolled
		return r, nil
	})
	err := f.c.CreateRing(ctx, &campaign.Ring{Name: "late", Group: "late", NotBefore: time.Now().Add(-72 * time.Hour),
		Deadline: time.Now().Add(-time.Hour), OverdueGroup: "non-compliant", RemindOverdue: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.ActOnDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	var inGroup []string
	f.life.Records.Records(ctx, func(r *enroll.Record) bool {
		if r.InGroup("non-compliant", nil) {
			inGroup = append(inGroup, r.Serial)
		}
		return true
	})
	if len(inGroup) != 5 || inGroup[0] != "LATE-0001" {
		t.Errorf("overdue group: %v", inGroup)
	}
	jp := f.wait("late", 1)
	if jp.Job.Kind != campaign.KindReminder || jp.Sent != 5 {
		t.Fatalf("final reminder: %+v %+v", jp, jp.Job)
	}
	for _, m := range f.smtp.Messages() {
		p, _ := m.Parse()
		if !strings.HasPrefix(p.Subject, "Final reminder: ") || !strings.Contains(p.Text, "has passed") {
			t.Errorf("final reminder reads %q / %q", p.Subject, p.Text)
		}
	}
	if p := f.progress("late"); p.Counts.Overdue != 5 || p.Counts.Enrolled != 1 {
		t.Errorf("counts %+v", p.Counts)
	}
	f.c.ActOnDeadlines(ctx)
	if n := len(f.smtp.Messages()); n != 5 {
		t.Errorf("deadline acted on twice: %d mails", n)
	}
}

// Rings refuse names, members and schedules that cannot work.
func TestRingChecks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, r := range map[string]*campaign.Ring{
		"bad name":        {Name: "ring one", Group: "g"},
		"no members":      {Name: "empty"},
		"bad member":      {Name: "m", Members: []string{"device:X"}},
		"bad channel":     {Name: "c", Group: "g", Channel: "pigeon"},
		"deadline before": {Name: "d", Group: "g", NotBefore: time.Now(), Deadline: time.Now().Add(-time.Hour)},
	} {
		if err := f.c.CreateRing(ctx, r); err == nil || !strings.Contains(err.Error(), "invalid input") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.c.Start(ctx, "nope", campaign.KindInvitation, campaign.Options{}); err == nil {
		t.Errorf("a job for a missing ring")
	}
}

// BenchmarkDispatch sends a ring of 1,000 invitations, each with a link
// minted by the lifecycle (a bbolt token and record write) and its QR
// code, through the in-process SMTP server (STARTTLS, AUTH) over reused
// sessions: the server's whole cost per message, and the SMTP server's.
func BenchmarkDispatch(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b)
		f.importRing("r", n, func(i int) string { return fmt.Sprintf("u%04d@example.com", i) })
		f.c.CreateRing(context.Background(), &campaign.Ring{Name: "r", Group: "r"})
		f.mail.PerConnection = 100
		f.c.Link = func(ctx context.Context, t *campaign.Target, ttl time.Duration) (*campaign.Link, error) {
			serial, email := enroll.ParseRef(t.Ref)
			tok, secret, err := f.life.MintLink(ctx, serial, email, ttl, "campaign")
			if err != nil {
				return nil, err
			}
			return &campaign.Link{URL: "https://mdm.example.com/enroll/" + secret, Token: tok.ID}, nil
		}
		b.StartTimer()
		j, err := f.c.Start(context.Background(), "r", campaign.KindInvitation, campaign.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if p := f.wait("r", j.ID); p.Sent != n {
			b.Fatalf("%+v", p)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/message")
}
