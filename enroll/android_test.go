package enroll_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/storage/bolt"
	"github.com/custodymdm/custody/zerotouch"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

type androidFixture struct {
	pushURL string
	fake    *zerotouchtest.Server
	db      *bolt.DB
	life    *enroll.Lifecycle
	android *enroll.Android
}

func newAndroidFixture(t *testing.T) *androidFixture {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fake := zerotouchtest.New()
	t.Cleanup(fake.Close)
	ctx := context.Background()
	opts := []option.ClientOption{option.WithEndpoint(fake.URL + "/"), option.WithoutAuthentication()}
	m, err := zerotouch.NewManagement(ctx, fake.AddEnterprise("Example"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := zerotouch.NewProvisioning(ctx, fake.Customer(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	life := &enroll.Lifecycle{Records: db.Records(), Assignments: db.Assignments(), Settings: db.Settings(),
		Tokens: db.Enroll(), Certs: db.SCEP(), MDM: db.MDM(), Logger: quiet}
	f := &androidFixture{fake: fake, db: db, life: life,
		android: &enroll.Android{Lifecycle: life, Management: m, Provisioning: p, Logger: quiet}}
	push := httptest.NewServer(&zerotouch.PushHandler{Secret: "s", Handle: f.android.HandlePush, Logger: quiet})
	t.Cleanup(push.Close)
	fake.PushURL = push.URL + "/?token=s"
	f.pushURL = fake.PushURL
	return f
}

func (f *androidFixture) record(t *testing.T, serial string) *enroll.Record {
	t.Helper()
	r, err := f.db.Records().Record(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func steps(r *enroll.Record) string {
	var s []string
	for _, e := range r.History {
		s = append(s, string(e.Step))
	}
	return strings.Join(s, " ")
}

// Android records from a CSV get tokens bound to them; devices that scan
// the QR code enrol and are matched back; a device with another record's
// token is deleted; commands and wipe reach the device and the record
// follows.
func TestAndroidLifecycle(t *testing.T) {
	f := newAndroidFixture(t)
	ctx := context.Background()
	csv := "name,email,ownership,serial,platform,imei,groups\n" +
		"Ana,ana@example.com,corporate,A1,android,490154203237518,field\n" +
		"Bo,bo@example.com,personal,A2,android,,\n" +
		"Cy,cy@example.com,corporate,A3,android,,\n" +
		"Di,di@example.com,corporate,Z1,android,356938035643809,field\n"
	res, err := enroll.Import(ctx, f.db.Records(), strings.NewReader(csv), enroll.ImportOptions{CSVOptions: enroll.CSVOptions{Required: enroll.RecordFields}}, time.Now())
	if err != nil || !res.Written || len(res.Errors) != 0 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	if r := f.record(t, "A1"); r.IMEI != "490154203237518" {
		t.Fatalf("IMEI not imported: %+v", r)
	}
	pol, err := enroll.NewAndroidPolicyAssignment("field", []byte(`{"cameraDisabled":true,"passwordRequirements":{"passwordMinimumLength":6,"passwordQuality":"NUMERIC"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.life.Assign(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.NewAndroidPolicyAssignment("field", []byte(`{"cameraDisabledd":true}`)); !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("a policy with an unknown field: %v", err)
	}
	if n, err := f.android.SyncPolicies(ctx); err != nil || n != 2 {
		t.Fatalf("SyncPolicies = %d, %v", n, err)
	}
	if p := f.fake.Policy(f.android.Management.PolicyName("group-field")); p == nil || !p.CameraDisabled {
		t.Fatalf("group policy at Google: %+v", p)
	}

	// A1 enrols by QR into its group's policy.
	tok, err := f.android.Token(ctx, "A1", "", time.Hour)
	if err != nil || tok.Policy != "group-field" || tok.For != "record:A1" {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
	if gt := f.fake.Token(tok.Value); gt == nil || gt.AllowPersonalUsage != zerotouch.PersonalUsageDisallowed || !gt.OneTimeOnly || gt.AdditionalData != "record:A1" {
		t.Errorf("token at Google %+v", gt)
	}
	d1, err := f.fake.ScanQR(tok.QR, zerotouchtest.DeviceInfo{Serial: "A1", IMEI: "490154203237518"})
	if err != nil {
		t.Fatal(err)
	}
	r1 := f.record(t, "A1")
	if r1.Status != enroll.StatusEnrolled || r1.EnrollmentID != d1.Name || r1.TokenID != tok.Name || steps(r1) != "created link-minted enrolled" {
		t.Fatalf("A1 after enrolling: %+v (%s)", r1, steps(r1))
	}
	// A3's token on another device: refused and deleted.
	tok3, _ := f.android.Token(ctx, "A3", "", time.Hour)
	bad, err := f.fake.ScanQR(tok3.QR, zerotouchtest.DeviceInfo{Serial: "STRANGER"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !bad.Wiped() {
		t.Errorf("mismatched device: %v, wiped %v", err, bad.Wiped())
	}
	if r3 := f.record(t, "A3"); r3.Status != enroll.StatusPreApproved || !strings.Contains(steps(r3), "refused") {
		t.Errorf("A3 after a stranger used its token: %+v (%s)", r3, steps(r3))
	}
	// A personal user's link: a work profile, matched to the user.
	f.db.Records().Import(ctx, nil, []*enroll.User{{Email: "eve@example.com", Name: "Eve", Ownership: enroll.OwnershipPersonal}}, time.Now())
	ut, err := f.android.Token(ctx, "", "eve@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.fake.OpenLink(ut.Link, zerotouchtest.DeviceInfo{Serial: "EVE1"}); err != nil {
		t.Fatal(err)
	}
	if r := f.record(t, "EVE1"); r.UserEmail != "eve@example.com" || r.Ownership != enroll.OwnershipPersonal || r.Status != enroll.StatusEnrolled {
		t.Errorf("record of a personal device %+v", r)
	}
	// With the restriction on, an unknown device is refused.
	f.db.Settings().UpdateSettings(ctx, func(s *enroll.Settings) error { s.PreEnrolledOnly = true; return nil })
	ut2, _ := f.android.Token(ctx, "", "eve@example.com", time.Hour)
	stranger, _ := f.fake.OpenLink(ut2.Link, zerotouchtest.DeviceInfo{Serial: "EVE2"})
	if _, err := stranger.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !stranger.WorkProfileRemoved() {
		t.Errorf("unknown device under the restriction: %v", err)
	}
	if _, err := f.db.Records().Record(ctx, "EVE2"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("a refused device got a record: %v", err)
	}

	// LOCK reaches the device; its result comes back on the record.
	if _, err := f.android.Command(ctx, "A1", &am.Command{Type: "LOCK"}); err != nil {
		t.Fatal(err)
	}
	if ran, err := d1.Poll(); err != nil || len(ran) != 1 || !d1.Locked() {
		t.Fatalf("Poll: %v, %v", ran, err)
	}
	r1 = f.record(t, "A1")
	last := r1.History[len(r1.History)-1]
	if last.Step != enroll.StepCommandResult || last.Note != "LOCK done" {
		t.Errorf("A1's last event %+v", last)
	}
	// Without a push, a sync asks Google for the operation.
	f.fake.PushURL = ""
	if _, err := f.android.Command(ctx, "A1", &am.Command{Type: "REBOOT"}); err != nil {
		t.Fatal(err)
	}
	d1.Poll()
	if _, _, err := f.android.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r1 = f.record(t, "A1")
	if last := r1.History[len(r1.History)-1]; last.Step != enroll.StepCommandResult || last.Note != "REBOOT done" {
		t.Errorf("A1's last event after a sync %+v", last)
	}
	f.fake.PushURL = f.pushURL
	// Wipe.
	if err := f.android.Wipe(ctx, "A1", "lost on the train"); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !d1.Wiped() {
		t.Errorf("wiped device: %v", err)
	}
	if r := f.record(t, "A1"); r.Status != enroll.StatusWiped || !strings.HasSuffix(steps(r), "wipe-requested wiped") {
		t.Errorf("A1 after the wipe: %s (%s)", r.Status, steps(r))
	}

	// Zero-touch: Z1 is claimed, configured and enrols at first boot,
	// matched by its IMEI.
	zt, err := f.android.Management.CreateToken(ctx, zerotouch.TokenSpec{PolicyID: "default", Duration: 30 * 24 * time.Hour,
		PersonalUsage: zerotouch.PersonalUsageDisallowed})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.android.Provisioning.CreateConfiguration(ctx, zerotouch.ConfigSpec{Name: "Fleet", Company: "Example", TokenValue: zt.Value})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.ClaimDevice(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "Z1-HW"})
	if err := f.android.Provisioning.Apply(ctx, cfg.Name, zerotouch.DeviceID{IMEI: "356938035643809"}); err != nil {
		t.Fatal(err)
	}
	zd, err := f.fake.Boot(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "Z1-HW"})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.record(t, "Z1"); r.Status != enroll.StatusEnrolled || r.EnrollmentID != zd.Name {
		t.Errorf("zero-touch record %+v", r)
	}
	// A sync binds nothing twice.
	before := len(f.record(t, "Z1").History)
	if seen, refused, err := f.android.Sync(ctx); err != nil || seen != 2 || refused != 0 {
		t.Errorf("Sync = %d, %d, %v", seen, refused, err)
	}
	if after := len(f.record(t, "Z1").History); after != before {
		t.Errorf("a sync rewrote a bound record's history (%d → %d events)", before, after)
	}
	// Claimed devices become records, like ADE's.
	f.fake.ClaimDevice(zerotouchtest.DeviceInfo{IMEI: "352099001761481", Serial: "zt-new"})
	if n, err := f.android.SyncZeroTouch(ctx, "zero-touch"); err != nil || n != 2 {
		t.Fatalf("SyncZeroTouch = %d, %v", n, err)
	}
	if r := f.record(t, "ZT-NEW"); r.Source != enroll.SourceZeroTouch || r.IMEI != "352099001761481" || r.Platform != enroll.PlatformAndroid ||
		r.Groups[0] != "zero-touch" || r.Status != enroll.StatusPreApproved {
		t.Errorf("zero-touch record %+v", r)
	}
}
