package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/storage/dump"
)

// A Backend is an open, empty database: its stores, and its export and
// import.
type Backend struct {
	storage.Stores
	storage.Portable
}

// RunPortable runs the conformance tests of a backend's storage.Portable.
// open must return a fresh, empty database each time it is called.
func RunPortable(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t), open(t)) })
	t.Run("ImportRefusesData", func(t *testing.T) { testImportRefusesData(t, open(t), open(t)) })
	t.Run("ImportAllOrNothing", func(t *testing.T) { testImportAllOrNothing(t, open(t), open(t)) })
}

// Filled is what Fill stored, for CheckFilled to look for.
type Filled struct {
	UnusedSecret, UsedSecret []byte // challenges' secrets
	UsedChallengeID          string
	RevokedCert              string // fingerprint
	Serial                   string // of an issued certificate
	Device, UserChannel      string // enrollment IDs
	DeviceCert               string // the fingerprint bound to Device
	Queue                    string // Device's queue, as queueUUIDs gives it
	Results                  int    // Device's results
	TokenID                  string
	Ring                     string
	Jobs                     int // of Ring
	SCIMKey                  string
	Audit                    uint64 // the last audit entry's number
}

// Fill stores at least one record of every kind of storage.Kinds in st,
// with the cases a move between backends must carry: a used and an unused
// challenge, a revoked certificate, a device with a user channel, a queue
// holding a command its device answered NotNow, results with their plists,
// a campaign's jobs and deliveries, SCIM resources with and without unique
// keys, and the directory's links, offboardings and audit log.
func Fill(t *testing.T, st storage.Stores) *Filled {
	t.Helper()
	ctx := context.Background()
	f := &Filled{Device: "UDID-" + randomHex(4), Ring: "ring-1", SCIMKey: "ana@example.com"}
	f.UserChannel = f.Device + ":501"
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("Fill: %s: %v", what, err)
		}
	}

	unused, used := []byte(randomHex(16)), []byte(randomHex(16))
	f.UnusedSecret, f.UsedSecret = unused, used
	for _, secret := range [][]byte{unused, used} {
		sum := sha256.Sum256(secret)
		c := &scep.Challenge{ID: randomHex(8), Hash: sum[:], CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour), Note: "portable <&>", For: "rec-1"}
		must("PutChallenge", st.SCEP.PutChallenge(ctx, c))
		if bytes.Equal(secret, used) {
			f.UsedChallengeID = c.ID
			cert := newCert("0a" + randomHex(8))
			cert.ChallengeID, cert.For = c.ID, c.For
			must("ConsumeChallenge", st.SCEP.ConsumeChallenge(ctx, c.Hash, t0.Add(time.Minute), cert))
			f.DeviceCert, f.Serial = cert.Fingerprint, cert.Serial
		}
	}
	revoked := newCert("0b" + randomHex(8))
	must("PutCert", st.SCEP.PutCert(ctx, revoked))
	must("RevokeCert", st.SCEP.RevokeCert(ctx, revoked.Fingerprint, t0.Add(time.Hour)))
	f.RevokedCert = revoked.Fingerprint

	authenticate(t, st.MDM, f.Device, f.DeviceCert)
	tokenUpdate(t, st.MDM, f.Device, f.Device)
	tokenUpdate(t, st.MDM, f.UserChannel, f.Device)
	for _, uuid := range []string{"cmd-3", "cmd-1", "cmd-2", "cmd-4"} {
		enqueue(t, st.MDM, uuid, f.Device)
	}
	enqueue(t, st.MDM, "cmd-u", f.UserChannel)
	must("StoreResult", st.MDM.StoreResult(ctx, result(f.Device, "cmd-3", mdm.StatusAcknowledged), nil))
	must("StoreResult", st.MDM.StoreResult(ctx, result(f.Device, "cmd-1", mdm.StatusNotNow), nil))
	noRaw := result(f.Device, "cmd-2", mdm.StatusError)
	noRaw.Raw = nil
	must("StoreResult", st.MDM.StoreResult(ctx, noRaw, nil))
	f.Queue, f.Results = "cmd-1(NotNow) cmd-4 ", 3

	tok, _, err := enroll.NewToken(ctx, st.Enroll, time.Hour, "portable", "rec-1")
	must("NewToken", err)
	f.TokenID = tok.ID
	_, err = st.Records.Import(ctx, []*enroll.Record{
		{Serial: "C02PORT1", Platform: enroll.PlatformMacOS, Ownership: enroll.OwnershipCorporate, UserEmail: "ana@example.com",
			Groups: []string{"ring-1"}, Status: enroll.StatusInvited, Source: "csv"},
		{Serial: "C02PORT2", Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate, Status: enroll.StatusPreApproved, Source: "csv"},
	}, []*enroll.User{{Email: "ana@example.com", Name: "Ana Ñúñez", Groups: []string{"ring-1"}}}, t0)
	must("Import", err)
	must("PutAssignment", st.Assignments.PutAssignment(ctx, &enroll.Assignment{ID: "a1", Group: "ring-1", Kind: enroll.AssignProfile,
		Name: "com.example.wifi", Payload: []byte("<plist/>"), CreatedAt: t0}))
	_, err = st.Settings.UpdateSettings(ctx, func(s *enroll.Settings) error { s.PreEnrolledOnly = true; return nil })
	must("UpdateSettings", err)

	must("PutToken", st.DEP.PutToken(ctx, &dep.Token{Name: "abm", OAuth: dep.OAuth1Tokens{ConsumerKey: "CK", ConsumerSecret: "CS",
		AccessToken: "AT", AccessSecret: "AS"}, CreatedAt: t0, UpdatedAt: t0}))
	must("PutCursor", st.DEP.PutCursor(ctx, "abm", &dep.Cursor{Cursor: "MTIz", Fetched: true, FetchedUntil: t0, UpdatedAt: t0}))

	must("CreateRing", st.Campaigns.CreateRing(ctx, &campaign.Ring{Name: f.Ring, Group: "ring-1", Deadline: t0.Add(72 * time.Hour), CreatedAt: t0}))
	for range 2 {
		j, err := st.Campaigns.CreateJob(ctx, &campaign.Job{Ring: f.Ring, Kind: "invite", Channel: "email", State: "done", Created: t0},
			[]campaign.Target{{Email: "ana@example.com", Name: "Ana"}, {Email: "bo@example.com"}})
		must("CreateJob", err)
		f.Jobs = j.ID
	}

	must("PutToken", st.SCIM.PutToken(ctx, &scim.Token{ID: "okta", Name: "Okta", Hash: []byte("0123456789abcdef"), Created: t0}))
	must("Create", st.SCIM.Create(ctx, &scim.Stored{Type: "User", ID: "u1", Key: f.SCIMKey, Version: 2, Created: t0, Modified: t0,
		Attrs: scim.Resource{"userName": f.SCIMKey, "active": true, "x-count": json.Number("12345678901234567890")}}))
	must("Create", st.SCIM.Create(ctx, &scim.Stored{Type: "Group", ID: "g1", Version: 1, Created: t0, Modified: t0,
		Attrs: scim.Resource{"displayName": "Ring 1", "members": []any{map[string]any{"value": "u1"}}}}))

	must("PutSettings", st.Directory.PutSettings(ctx, &directory.Settings{Scope: []string{"Sales"}, Grace: directory.Duration(time.Hour)}))
	must("PutGroup", st.Directory.PutGroup(ctx, &directory.GroupRecord{Key: "scim:g1", Source: "scim", ID: "g1", Name: "Ring 1", UpdatedAt: t0}))
	must("SetLinks", st.Directory.SetLinks(ctx, map[string]string{"scim:u1": "ana@example.com", "google:9": "bo@example.com"}))
	must("PutOffboarding", st.Directory.PutOffboarding(ctx, &directory.Offboarding{ID: "off-1", Email: "bo@example.com",
		Directory: "google:9", Event: "deleted", State: directory.OffboardingPending, CreatedAt: t0, DueAt: t0.Add(time.Hour), UpdatedAt: t0}))
	entries := []*directory.AuditEntry{
		{At: t0, Actor: "scim token okta", Action: "user-created", Subject: "ana@example.com"},
		{At: t0, Actor: "admin", Action: "offboarding-started", Subject: "off-1", Detail: "grace 1h"},
	}
	must("Audit", st.Directory.Audit(ctx, entries...))
	f.Audit = entries[1].Seq
	return f
}

// CheckFilled checks that st, into which a database Fill filled was
// imported, holds what Fill stored and goes on from there: the used
// challenge stays used, the queue's order and NotNow are kept, the
// indexes (challenge IDs, serial numbers, unique keys) are rebuilt, and
// numbers (jobs, audit entries) follow on from the imported ones.
func CheckFilled(t *testing.T, st storage.Stores, f *Filled) {
	t.Helper()
	ctx := context.Background()
	usedHash, unusedHash := sha256.Sum256(f.UsedSecret), sha256.Sum256(f.UnusedSecret)
	if c, err := st.SCEP.ChallengeByID(ctx, f.UsedChallengeID); err != nil || !c.Used() || c.CertFingerprint != f.DeviceCert {
		t.Errorf("used challenge by ID: %+v, %v", c, err)
	}
	cert := newCert(f.Serial)
	if err := st.SCEP.ConsumeChallenge(ctx, usedHash[:], t0.Add(2*time.Minute), cert); !errors.Is(err, scep.ErrChallengeUsed) {
		t.Errorf("consuming the used challenge: %v, want ErrChallengeUsed", err)
	}
	if err := st.SCEP.ConsumeChallenge(ctx, unusedHash[:], t0.Add(2*time.Minute), cert); !errors.Is(err, scep.ErrDuplicateSerial) {
		t.Errorf("a certificate with an imported serial: %v, want ErrDuplicateSerial", err)
	}
	if err := st.SCEP.ConsumeChallenge(ctx, unusedHash[:], t0.Add(2*time.Minute), newCert("0c"+randomHex(8))); err != nil {
		t.Errorf("consuming the unused challenge: %v", err)
	}
	if r, err := st.SCEP.Revoked(ctx, f.RevokedCert); err != nil || !r {
		t.Errorf("Revoked(revoked cert) = %v, %v", r, err)
	}
	if r, err := st.SCEP.Revoked(ctx, f.DeviceCert); err != nil || r {
		t.Errorf("Revoked(device cert) = %v, %v", r, err)
	}

	if id, err := st.MDM.EnrollmentForCert(ctx, f.DeviceCert); err != nil || id != f.Device {
		t.Errorf("EnrollmentForCert = %q, %v; want %s", id, err, f.Device)
	}
	if e, err := st.MDM.Enrollment(ctx, f.UserChannel); err != nil || !e.Enabled || e.DeviceID != f.Device {
		t.Errorf("user channel: %+v, %v", e, err)
	}
	if q := queueUUIDs(t, st.MDM, f.Device); q != f.Queue {
		t.Errorf("queue %q, want %q", q, f.Queue)
	}
	if next, err := st.MDM.NextCommand(ctx, f.Device, true); err != nil || next == nil || next.UUID != "cmd-4" || string(next.Payload) != "<plist>cmd-4</plist>" {
		t.Errorf("NextCommand skipping NotNow: %+v, %v", next, err)
	}
	res, err := st.MDM.Results(ctx, f.Device)
	if err != nil || len(res) != f.Results || res[0].CommandUUID != "cmd-3" || string(res[0].Raw) != "<plist>Acknowledged</plist>" || res[2].Raw != nil {
		t.Errorf("results: %v, %v", res, err)
	}
	if err := st.MDM.StoreResult(ctx, result(f.Device, "cmd-4", mdm.StatusAcknowledged), nil); err != nil {
		t.Errorf("StoreResult of an imported queue's command: %v", err)
	}
	enqueue(t, st.MDM, "cmd-5", f.Device)
	if q := queueUUIDs(t, st.MDM, f.Device); q != "cmd-1(NotNow) cmd-5 " {
		t.Errorf("queue after a result and an enqueue: %q", q)
	}
	if res, _ := st.MDM.Results(ctx, f.Device); len(res) != f.Results+1 || res[f.Results].CommandUUID != "cmd-4" {
		t.Errorf("results after a new one: %v", res)
	}

	if tok, err := st.Enroll.Token(ctx, f.TokenID); err != nil || tok.Note != "portable" {
		t.Errorf("Token(%s) = %+v, %v", f.TokenID, tok, err)
	}
	if u, err := st.Records.User(ctx, "ana@example.com"); err != nil || u.Name != "Ana Ñúñez" {
		t.Errorf("user: %+v, %v", u, err)
	}
	if s, err := st.Settings.Settings(ctx); err != nil || !s.PreEnrolledOnly {
		t.Errorf("enroll settings: %+v, %v", s, err)
	}
	if c, err := st.DEP.Cursor(ctx, "abm"); err != nil || c.Cursor != "MTIz" {
		t.Errorf("DEP cursor: %+v, %v", c, err)
	}

	j, err := st.Campaigns.CreateJob(ctx, &campaign.Job{Ring: f.Ring, Kind: "remind", Channel: "email", State: "queued", Created: t0}, nil)
	if err != nil || j.ID != f.Jobs+1 {
		t.Errorf("a new job: %+v, %v; want number %d", j, err, f.Jobs+1)
	}
	n := 0
	st.Campaigns.Deliveries(ctx, f.Ring, 0, func(*campaign.Delivery) bool { n++; return true })
	if n != 2*f.Jobs {
		t.Errorf("%d deliveries, want %d", n, 2*f.Jobs)
	}

	if err := st.SCIM.Create(ctx, &scim.Stored{Type: "User", ID: "u2", Key: f.SCIMKey, Version: 1}); !errors.Is(err, scim.ErrUniqueness) {
		t.Errorf("a SCIM user with an imported user's key: %v, want ErrUniqueness", err)
	}
	if u, err := st.SCIM.Get(ctx, "User", "u1"); err != nil || fmt.Sprint(u.Attrs["x-count"]) != "12345678901234567890" {
		t.Errorf("SCIM user: %+v, %v; want its number's digits kept", u, err)
	}

	if email, err := st.Directory.Link(ctx, "google:9"); err != nil || email != "bo@example.com" {
		t.Errorf("Link = %q, %v", email, err)
	}
	if s, err := st.Directory.Settings(ctx); err != nil || s.Grace != directory.Duration(time.Hour) {
		t.Errorf("directory settings: %+v, %v", s, err)
	}
	e := &directory.AuditEntry{At: t0, Actor: "admin", Action: "settings-changed", Subject: "grace"}
	if err := st.Directory.Audit(ctx, e); err != nil || e.Seq != f.Audit+1 {
		t.Errorf("a new audit entry: seq %d, %v; want %d", e.Seq, err, f.Audit+1)
	}
}

// Move exports src and imports it into dst through a dump file, and
// returns the file's summary, failing t if the move is not exact.
func Move(t *testing.T, src, dst storage.Portable) *dump.Summary {
	t.Helper()
	ctx := context.Background()
	var file bytes.Buffer
	wrote, err := dump.Write(ctx, &file, src, nil)
	if err != nil {
		t.Fatalf("dump.Write: %v", err)
	}
	read, err := dump.Import(ctx, &file, dst, nil)
	if err != nil {
		t.Fatalf("dump.Import: %v", err)
	}
	if !read.Equal(wrote) {
		t.Fatalf("imported %v, exported %v", read, wrote)
	}
	return wrote
}

func testRoundTrip(t *testing.T, src, dst Backend) {
	f := Fill(t, src.Stores)
	sum := Move(t, src, dst)
	for _, kind := range storage.Kinds() {
		if sum.Counts[kind] == 0 {
			t.Errorf("no %s record moved: Fill or the export misses a kind", kind)
		}
	}
	CheckFilled(t, dst.Stores, f)
}

func testImportRefusesData(t *testing.T, src, dst Backend) {
	ctx := context.Background()
	Fill(t, src.Stores)
	var file bytes.Buffer
	if _, err := dump.Write(ctx, &file, src, nil); err != nil {
		t.Fatal(err)
	}
	if err := dst.Directory.SetLinks(ctx, map[string]string{"scim:x": "x@example.com"}); err != nil {
		t.Fatal(err)
	}
	_, err := dump.Import(ctx, &file, dst, nil)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("import into a database holding data: %v, want a refusal", err)
	}
	if sum, err := dump.Sum(ctx, dst); err != nil || sum.Records != 1 {
		t.Errorf("after the refusal the database holds %+v, %v; want its one record", sum, err)
	}
}

func testImportAllOrNothing(t *testing.T, src, dst Backend) {
	ctx := context.Background()
	Fill(t, src.Stores)
	var file bytes.Buffer
	if _, err := dump.Write(ctx, &file, src, nil); err != nil {
		t.Fatal(err)
	}
	// A record changed after the export: its line no longer matches the
	// summary's checksum, which Import learns at the end of the file.
	tampered := bytes.Replace(file.Bytes(), []byte("Ana Ñúñez"), []byte("Ana Nunez"), 1)
	_, err := dump.Import(ctx, bytes.NewReader(tampered), dst, nil)
	if !errors.Is(err, dump.ErrMismatch) {
		t.Fatalf("import of a tampered file: %v, want ErrMismatch", err)
	}
	// A file cut short.
	cut := file.Bytes()[:file.Len()*2/3]
	if _, err := dump.Import(ctx, bytes.NewReader(cut), dst, nil); err == nil {
		t.Fatal("import of a truncated file succeeded")
	}
	if sum, err := dump.Sum(ctx, dst); err != nil || sum.Records != 0 {
		t.Errorf("after failed imports the database holds %+v, %v; want nothing", sum, err)
	}
}
