package dep_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/dep/deptest"
	"github.com/custodymdm/custody/storage/bolt"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// inventory is a DeviceHandler that keeps devices by serial, as a server
// keeps records: idempotent, so a page delivered twice changes nothing.
type inventory struct {
	mu         sync.Mutex
	devices    map[string]dep.Device
	deliveries int // devices handed over, duplicates included
	onPage     func(page int)
	pages      int
}

func newInventory() *inventory { return &inventory{devices: map[string]dep.Device{}} }

func (inv *inventory) handle(_ context.Context, _ string, devices []dep.Device) error {
	inv.mu.Lock()
	inv.pages++
	page := inv.pages
	for _, d := range devices {
		inv.deliveries++
		if d.OpType == dep.OpDeleted {
			delete(inv.devices, d.SerialNumber)
		} else {
			inv.devices[d.SerialNumber] = d
		}
	}
	inv.mu.Unlock()
	if inv.onPage != nil {
		inv.onPage(page)
	}
	return nil
}

type fixture struct {
	fake    *deptest.Server
	account *deptest.Account
	client  *dep.Client
	store   dep.Store
	inv     *inventory
	syncer  *dep.Syncer
}

func newFixture(t *testing.T, devices int) *fixture {
	t.Helper()
	fake := deptest.New()
	t.Cleanup(fake.Close)
	a := fake.AddAccount("Custody test")
	a.AddDevices(deptest.Devices("C0", devices)...)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{fake: fake, account: a, store: db.DEP(), inv: newInventory()}
	f.client = dep.NewClient(a.Tokens, dep.Options{BaseURL: fake.URL, Logger: quiet, BaseDelay: time.Millisecond, MaxDelay: 3 * time.Second})
	f.syncer = &dep.Syncer{Name: "abm", Client: f.client, Cursors: f.store, Handle: f.inv.handle, Logger: quiet}
	return f
}

// check compares the inventory with the fake's devices.
func (f *fixture) check(t *testing.T, want int) {
	t.Helper()
	if len(f.inv.devices) != want {
		t.Fatalf("inventory holds %d devices, want %d", len(f.inv.devices), want)
	}
	for sn := range f.inv.devices {
		if f.account.Device(sn) == nil {
			t.Fatalf("inventory holds %s, which the service does not", sn)
		}
	}
}

func TestFullFetch25000(t *testing.T) {
	f := newFixture(t, 25_000)
	st, err := f.syncer.Sync(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, 25_000)
	if !st.Full || st.Fetched != 25_000 || f.inv.deliveries != 25_000 || st.Pages != 25 {
		t.Errorf("stats %+v, %d deliveries; want 25 pages of 1000, each device once", st, f.inv.deliveries)
	}
	cur, _ := f.store.Cursor(context.Background(), "abm")
	if !cur.Fetched || cur.Cursor == "" || cur.FetchedUntil.IsZero() {
		t.Errorf("cursor after the fetch: %+v", cur)
	}
	// The next round syncs: nothing changed.
	st, err = f.syncer.Sync(context.Background(), false)
	if err != nil || st.Full || st.Added+st.Modified+st.Deleted+st.Fetched != 0 {
		t.Errorf("second round: %+v, %v", st, err)
	}
	if n := f.fake.Calls("/session"); n != 1 {
		t.Errorf("%d sessions for 27 calls, want 1", n)
	}
}

func TestSyncChanges(t *testing.T) {
	f := newFixture(t, 100)
	ctx := context.Background()
	if _, err := f.syncer.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.account.AddDevices(deptest.Devices("NEW", 10)...)
	for _, sn := range []string{"C000000001", "C000000002", "C000000003", "C000000004", "C000000005"} {
		f.account.ModifyDevice(sn, func(d *dep.Device) { d.AssetTag = "TAG-" + sn })
	}
	f.account.DeleteDevices("C000000010", "C000000011", "C000000012")
	st, err := f.syncer.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Full || st.Added != 10 || st.Modified != 5 || st.Deleted != 3 {
		t.Errorf("sync stats %+v, want 10 added, 5 modified, 3 deleted", st)
	}
	f.check(t, 107)
	if d := f.inv.devices["C000000003"]; d.AssetTag != "TAG-C000000003" || d.OpType != dep.OpModified {
		t.Errorf("modified device %+v", d)
	}
}

// Storms of 429 (with Retry-After) and 503 in the middle of a fetch and a
// sync: the round completes, Retry-After is respected, and every device is
// delivered exactly once.
func TestRetryStorm(t *testing.T) {
	f := newFixture(t, 3000)
	ctx := context.Background()
	f.fake.Inject(deptest.Fault{Path: "/server/devices", Times: 2, Status: 429, RetryAfter: 1})
	f.fake.Inject(deptest.Fault{Path: "/server/devices", Times: 3, Status: 503})
	start := time.Now()
	if _, err := f.syncer.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("fetch through two 429s with Retry-After: 1 took %v", took)
	}
	f.account.AddDevices(deptest.Devices("NEW", 1500)...)
	f.fake.Inject(deptest.Fault{Path: "/devices/sync", Times: 4, Status: 500})
	f.fake.Inject(deptest.Fault{Path: "/devices/sync", Times: 1, Status: 429, RetryAfter: 1})
	st, err := f.syncer.Sync(ctx, false)
	if err != nil || st.Added != 1500 {
		t.Fatalf("sync through 5xx and 429: %+v, %v", st, err)
	}
	f.check(t, 4500)
	if f.inv.deliveries != 4500 {
		t.Errorf("%d deliveries for 4500 devices: a page was delivered twice or missed", f.inv.deliveries)
	}
	if v := f.fake.RetryAfterViolations(); v != 0 {
		t.Errorf("%d requests came before their Retry-After", v)
	}
	// Past MaxAttempts the error surfaces, typed.
	f.fake.Inject(deptest.Fault{Path: "/devices/sync", Times: 10, Status: 503})
	if _, err := f.syncer.Sync(ctx, false); err == nil {
		t.Error("a sync through 10 straight 503s succeeded")
	} else if e := (*dep.Error)(nil); !errors.As(err, &e) || e.StatusCode != 503 {
		t.Errorf("error after a 503 storm: %v", err)
	}
}

// A server that keeps echoing the cursor with more_to_follow does not make
// the syncer spin: it stops after MaxEchoes and carries on at the next
// round.
func TestEchoedCursor(t *testing.T) {
	f := newFixture(t, 50)
	ctx := context.Background()
	if _, err := f.syncer.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.fake.EchoCursor(1000)
	before := f.fake.Calls("/devices/sync")
	st, err := f.syncer.Sync(ctx, false)
	if !errors.Is(err, dep.ErrEchoedCursor) || !st.Echoed {
		t.Fatalf("endless echo: %+v, %v; want ErrEchoedCursor", st, err)
	}
	if n := f.fake.Calls("/devices/sync") - before; n != dep.DefaultMaxEchoes {
		t.Errorf("%d sync calls against an echoing server, want %d", n, dep.DefaultMaxEchoes)
	}
	// One or two echoes are tolerated within a round.
	f.fake.EchoCursor(2)
	f.account.AddDevices(deptest.Devices("NEW", 5)...)
	if st, err := f.syncer.Sync(ctx, false); err != nil || st.Added != 5 {
		t.Errorf("sync with two echoes: %+v, %v", st, err)
	}
	f.check(t, 55)
}

func TestExpiredCursor(t *testing.T) {
	f := newFixture(t, 2500)
	ctx := context.Background()
	if _, err := f.syncer.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.fake.ExpireCursors()
	f.account.DeleteDevices("C000000001")
	st, err := f.syncer.Sync(ctx, false)
	if err != nil || !st.Restarted || !st.Full || st.Fetched != 2499 {
		t.Fatalf("sync with an expired cursor: %+v, %v; want a full fetch", st, err)
	}
	// The inventory keeps what the fetch did not mention; a full fetch
	// restates everything else.
	if len(f.inv.devices) != 2500 || f.inv.devices["C000000002"].SerialNumber == "" {
		t.Errorf("inventory after the refetch: %d devices", len(f.inv.devices))
	}
	// An invalid cursor does the same.
	f.store.PutCursor(ctx, "abm", &dep.Cursor{Cursor: "not-a-cursor", Fetched: true})
	if st, err := f.syncer.Sync(ctx, false); err != nil || !st.Restarted {
		t.Errorf("sync with an invalid cursor: %+v, %v", st, err)
	}
}

// The session expires in the middle of a fetch: the client authenticates
// again and the fetch goes on.
func TestSessionExpiryMidSync(t *testing.T) {
	f := newFixture(t, 5000)
	f.inv.onPage = func(page int) {
		if page == 2 {
			f.fake.ExpireSessions()
		}
	}
	if _, err := f.syncer.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	f.check(t, 5000)
	if n := f.fake.Calls("/session"); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}

// A refreshed X-ADM-Auth-Session in a response is adopted: the old token
// is refused by then, and no new OAuth session is needed.
func TestSessionRotation(t *testing.T) {
	f := newFixture(t, 5000)
	f.fake.RotateEvery = 2
	if _, err := f.syncer.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	f.check(t, 5000)
	if n := f.fake.Calls("/session"); n != 1 {
		t.Errorf("%d sessions, want 1: rotated session tokens were not adopted", n)
	}
}

// failingCursors fails one PutCursor: a crash between storing a page's
// devices and storing its cursor.
type failingCursors struct {
	dep.Store
	failAt, puts int
}

func (s *failingCursors) PutCursor(ctx context.Context, name string, c *dep.Cursor) error {
	if s.puts++; s.puts == s.failAt {
		return errors.New("power cut")
	}
	return s.Store.PutCursor(ctx, name, c)
}

func TestCrashBetweenDevicesAndCursor(t *testing.T) {
	f := newFixture(t, 5000)
	ctx := context.Background()
	f.syncer.Cursors = &failingCursors{Store: f.store, failAt: 3}
	if _, err := f.syncer.Sync(ctx, false); err == nil {
		t.Fatal("sync went on past a failed cursor write")
	}
	if f.inv.deliveries != 3000 {
		t.Fatalf("%d devices handled before the crash, want 3 pages", f.inv.deliveries)
	}
	// After the restart, the third page comes again (the handler is
	// idempotent) and the fetch completes: nothing missed.
	f.syncer.Cursors = f.store
	st, err := f.syncer.Sync(ctx, false)
	if err != nil || st.Fetched != 3000 {
		t.Fatalf("resumed fetch: %+v, %v; want pages 3 to 5", st, err)
	}
	f.check(t, 5000)
}

func TestClientCalls(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	acct, err := f.client.Account(ctx)
	if err != nil || acct.ServerName != "Custody test" || acct.ServerUUID == "" {
		t.Fatalf("Account = %+v, %v", acct, err)
	}
	res, err := f.client.DefineProfile(ctx, &dep.Profile{ProfileName: "Corporate", URL: "https://mdm.example.com/ade",
		IsSupervised: true, IsMandatory: true, Devices: []string{"C000000001", "NOPE"}})
	if err != nil || res.ProfileUUID == "" || res.Devices["C000000001"] != dep.ResultSuccess || res.Devices["NOPE"] != dep.ResultNotAccessible {
		t.Fatalf("DefineProfile = %+v, %v", res, err)
	}
	p, err := f.client.Profile(ctx, res.ProfileUUID)
	if err != nil || p.ProfileName != "Corporate" || !p.IsSupervised || p.URL != "https://mdm.example.com/ade" {
		t.Errorf("Profile = %+v, %v", p, err)
	}
	if _, err := f.client.Profile(ctx, "NOPE"); !isCode(err, dep.CodeProfileNotFound) {
		t.Errorf("Profile(unknown): %v", err)
	}
	as, err := f.client.AssignProfile(ctx, res.ProfileUUID, []string{"C000000002", "C000000003"})
	if err != nil || as.Devices["C000000002"] != dep.ResultSuccess {
		t.Errorf("AssignProfile = %+v, %v", as, err)
	}
	details, err := f.client.DeviceDetails(ctx, []string{"C000000002", "NOPE"})
	if err != nil || details["C000000002"].ProfileUUID != res.ProfileUUID || details["C000000002"].ProfileStatus != dep.ProfileAssigned ||
		details["NOPE"].ResponseStatus != dep.ResultNotAccessible {
		t.Errorf("DeviceDetails = %+v, %v", details, err)
	}
	rm, err := f.client.RemoveProfile(ctx, []string{"C000000003"})
	if err != nil || rm["C000000003"] != dep.ResultSuccess || f.account.Device("C000000003").ProfileUUID != "" {
		t.Errorf("RemoveProfile = %+v, %v", rm, err)
	}
	dis, err := f.client.DisownDevices(ctx, []string{"C000000004"})
	if err != nil || dis["C000000004"] != dep.ResultSuccess || !f.account.Disowned("C000000004") {
		t.Errorf("DisownDevices = %+v, %v", dis, err)
	}
	if _, err := f.client.SyncDevices(ctx, "", 10); !errors.Is(err, dep.ErrCursorRequired) {
		t.Errorf("sync without a cursor: %v, want ErrCursorRequired", err)
	}
	if _, err := f.client.SyncDevices(ctx, "garbage", 10); !errors.Is(err, dep.ErrInvalidCursor) {
		t.Errorf("sync with a garbage cursor: %v, want ErrInvalidCursor", err)
	}
	// 403 FORBIDDEN refuses the session: the client authenticates again.
	sessions := f.fake.Calls("/session")
	f.fake.Inject(deptest.Fault{Path: "/account", Times: 1, Status: 403, Code: dep.CodeForbidden})
	if _, err := f.client.Account(ctx); err != nil || f.fake.Calls("/session") != sessions+1 {
		t.Errorf("Account through a 403 FORBIDDEN: %v, %d new sessions", err, f.fake.Calls("/session")-sessions)
	}
	f.fake.Inject(deptest.Fault{Path: "/account", Times: 1, Status: 403, Code: dep.CodeTermsNotSigned})
	if _, err := f.client.Account(ctx); !errors.Is(err, dep.ErrTermsNotSigned) {
		t.Errorf("403 T_C_NOT_SIGNED: %v", err)
	}
	// A wrong secret is refused at the session.
	bad := f.account.Tokens
	bad.AccessSecret = "AS_wrong"
	c := dep.NewClient(bad, dep.Options{BaseURL: f.fake.URL, Logger: quiet})
	if _, err := c.Account(ctx); !errors.Is(err, dep.ErrBadToken) {
		t.Errorf("a wrong access secret: %v, want ErrBadToken", err)
	}
}

func isCode(err error, code string) bool {
	var e *dep.Error
	return errors.As(err, &e) && e.Code == code
}
