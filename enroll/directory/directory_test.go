package directory_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/storage/bolt"
)

type fixture struct {
	db  *bolt.DB
	dir *directory.Directory

	mu  sync.Mutex
	now time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	life := &enroll.Lifecycle{Records: db.Records(), Assignments: db.Assignments(), Settings: db.Settings(), Tokens: db.Enroll(), Certs: db.SCEP(), MDM: db.MDM(), Now: f.clock}
	f.dir = &directory.Directory{Lifecycle: life, Store: db.Directory(), Now: f.clock}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) user(t *testing.T, email string) *enroll.User {
	t.Helper()
	u, err := f.db.Records().User(context.Background(), email)
	if err != nil {
		t.Fatalf("user %s: %v", email, err)
	}
	return u
}

func (f *fixture) offboardings(t *testing.T) []*directory.Offboarding {
	t.Helper()
	var out []*directory.Offboarding
	if err := f.db.Directory().Offboardings(context.Background(), func(o *directory.Offboarding) bool { out = append(out, o); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// With a scope, only the members of the selected groups are mirrored, and
// only those groups; a member who leaves them is unlinked, not offboarded.
func TestScope(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.db.Directory().PutSettings(ctx, &directory.Settings{Scope: []string{"sales"}, Grace: directory.DefaultGrace})
	if err := f.dir.PutGroups(ctx, "scim", []directory.Group{{ID: "g1", Name: "Sales"}, {ID: "g2", Name: "Engineering"}}, "test"); err != nil {
		t.Fatal(err)
	}
	var keys []string
	f.db.Directory().Groups(ctx, func(g *directory.GroupRecord) bool { keys = append(keys, g.Key); return true })
	if fmt.Sprint(keys) != "[scim:g1]" {
		t.Fatalf("groups mirrored: %v, want only Sales", keys)
	}
	people := []*directory.Person{
		{ID: "a", Email: "A@example.com", Name: "A", Active: true, Groups: []string{"g1"}},
		{ID: "b", Email: "b@example.com", Active: true, Groups: []string{"g2"}},
		{ID: "c", Email: "c@example.com", Active: true, Groups: []string{"g2", "g1"}},
		{ID: "d", Email: "not an address", Active: true, Groups: []string{"g1"}},
	}
	st, err := f.dir.Apply(ctx, "scim", people, "test")
	if err != nil || st.Created != 2 || st.Skipped != 2 {
		t.Fatalf("apply: %+v, %v; want 2 created, 2 skipped", st, err)
	}
	if u := f.user(t, "a@example.com"); fmt.Sprint(u.Groups) != "[scim:g1]" || u.Directory != "scim:a" || u.Name != "A" {
		t.Errorf("a: %+v", u)
	}
	if u := f.user(t, "c@example.com"); fmt.Sprint(u.Groups) != "[scim:g1]" {
		t.Errorf("c's groups: %v, want only the one in scope", u.Groups)
	}
	if _, err := f.db.Records().User(ctx, "b@example.com"); err == nil {
		t.Error("b, outside the scope, was mirrored")
	}
	// a leaves Sales; a's own (non-directory) group stays.
	f.dir.Lifecycle.AddToGroup(ctx, "vip", nil, []string{"a@example.com"})
	people[0].Groups = nil
	if st, err := f.dir.Apply(ctx, "scim", people[:1], "test"); err != nil || st.Unlinked != 1 {
		t.Fatalf("a out of scope: %+v, %v", st, err)
	}
	if u := f.user(t, "a@example.com"); fmt.Sprint(u.Groups) != "[vip]" || u.Directory != "" {
		t.Errorf("a after leaving the scope: %+v", u)
	}
	if len(f.offboardings(t)) != 0 {
		t.Error("leaving the scope started an offboarding")
	}
}

// A changed email moves the user's devices to the new address; the old
// user keeps none of the provider's groups.
func TestEmailChange(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := &directory.Person{ID: "u1", Email: "ana@old.example", Name: "Ana", Active: true, Groups: []string{"g"}}
	if _, err := f.dir.Apply(ctx, "google", []*directory.Person{p}, "test"); err != nil {
		t.Fatal(err)
	}
	_, err := f.db.Records().Import(ctx, []*enroll.Record{{Serial: "S1", Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate,
		UserEmail: "ana@old.example", Status: enroll.StatusPreApproved, Source: enroll.SourceCSV}}, nil, f.clock())
	if err != nil {
		t.Fatal(err)
	}
	p.Email = "ana@new.example"
	if _, err := f.dir.Apply(ctx, "google", []*directory.Person{p}, "test"); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.db.Records().Record(ctx, "S1"); r.UserEmail != "ana@new.example" {
		t.Errorf("S1 belongs to %s, want the new address", r.UserEmail)
	}
	if u := f.user(t, "ana@new.example"); fmt.Sprint(u.Groups) != "[google:g]" || u.Directory != "google:u1" || u.Name != "Ana" {
		t.Errorf("new user: %+v", u)
	}
	if u := f.user(t, "ana@old.example"); len(u.Groups) != 0 || u.Directory != "" {
		t.Errorf("old user: %+v", u)
	}
}

// The grace period holds an offboarding back until it ends; an
// offboarding of a user with a device not yet enrolled completes with
// nothing to do.
func TestGracePeriod(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.db.Directory().PutSettings(ctx, &directory.Settings{Grace: directory.Duration(2 * time.Hour)})
	f.db.Records().Import(ctx, []*enroll.Record{{Serial: "S1", Platform: enroll.PlatformMacOS, Ownership: enroll.OwnershipCorporate,
		UserEmail: "bo@example.com", Status: enroll.StatusInvited, Source: enroll.SourceCSV}}, nil, f.clock())
	p := &directory.Person{ID: "bo", Email: "bo@example.com", Active: true}
	f.dir.Apply(ctx, "scim", []*directory.Person{p}, "test")
	p.Active = false
	if st, err := f.dir.Apply(ctx, "scim", []*directory.Person{p}, "test"); err != nil || st.Deactivated != 1 {
		t.Fatalf("deactivate: %+v, %v", st, err)
	}
	// Deactivated again (a sync repeating itself): still one offboarding.
	f.dir.Apply(ctx, "scim", []*directory.Person{p}, "test")
	f.advance(time.Hour)
	if n, err := f.dir.RunDue(ctx); err != nil || n != 0 {
		t.Fatalf("RunDue within the grace period: %d, %v", n, err)
	}
	f.advance(time.Hour)
	if n, err := f.dir.RunDue(ctx); err != nil || n != 1 {
		t.Fatalf("RunDue after the grace period: %d, %v", n, err)
	}
	obs := f.offboardings(t)
	if len(obs) != 1 || obs[0].State != directory.OffboardingDone || obs[0].Devices[0].Action != directory.ActionNone {
		t.Fatalf("offboardings: %+v", obs)
	}
	if _, err := f.dir.Cancel(ctx, obs[0].ID, "admin", ""); err == nil || !strings.Contains(err.Error(), "not pending") {
		t.Errorf("cancelling a done offboarding: %v", err)
	}
	if u := f.user(t, "bo@example.com"); !u.Deactivated.Equal(f.clock().Add(-2 * time.Hour)) {
		t.Errorf("bo deactivated at %v", u.Deactivated)
	}
	r, _ := f.db.Records().Record(ctx, "S1")
	if i := slices.IndexFunc(r.History, func(e enroll.Event) bool { return e.Step == enroll.StepOffboarding }); i < 0 || !strings.Contains(r.History[i].Note, "scim: bo@example.com deactivated") {
		t.Errorf("S1's history lacks the offboarding: %+v", r.History)
	}
}

// SyncSCIM repairs what a server that stopped between storing a SCIM
// change and mirroring it missed: users and groups created, a user
// deleted.
func TestSyncSCIMRepairs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	store := f.db.SCIM()
	now := f.clock()
	for _, id := range []string{"u1", "u2"} {
		err := store.Create(ctx, &scim.Stored{Type: "User", ID: id, Key: id + "@example.com", Version: 1, Created: now, Modified: now,
			Attrs: scim.Resource{"userName": id + "@example.com", "active": true, "name": map[string]any{"formatted": "User " + id}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	store.Create(ctx, &scim.Stored{Type: "Group", ID: "g", Version: 1, Attrs: scim.Resource{"displayName": "Field", "members": []any{map[string]any{"value": "u2"}}}})
	st, err := f.dir.SyncSCIM(ctx, store, "start-up")
	if err != nil || st.Created != 2 {
		t.Fatalf("SyncSCIM: %+v, %v", st, err)
	}
	if u := f.user(t, "u2@example.com"); fmt.Sprint(u.Groups) != "[scim:g]" || u.Name != "User u2" {
		t.Errorf("u2: %+v", u)
	}
	if st, err := f.dir.SyncSCIM(ctx, store, "start-up"); err != nil || st.Unchanged != 2 || st.Created+st.Updated != 0 {
		t.Errorf("SyncSCIM again: %+v, %v; want nothing changed", st, err)
	}
	store.Delete(ctx, "User", "u1")
	if _, err := f.dir.SyncSCIM(ctx, store, "start-up"); err != nil {
		t.Fatal(err)
	}
	if u := f.user(t, "u1@example.com"); u.Deactivated.IsZero() || u.Directory != "" {
		t.Errorf("u1, deleted from the SCIM store: %+v", u)
	}
	if obs := f.offboardings(t); len(obs) != 1 || obs[0].Email != "u1@example.com" || !strings.Contains(obs[0].Event, "deleted") {
		t.Errorf("offboardings: %+v", obs)
	}
}

// people returns n active people in groups g0…g4.
func people(n int) []*directory.Person {
	out := make([]*directory.Person, n)
	for i := range out {
		out[i] = &directory.Person{ID: fmt.Sprintf("id%05d", i), Email: fmt.Sprintf("p%05d@example.com", i), Name: fmt.Sprint("P ", i),
			Active: true, Groups: []string{fmt.Sprintf("g%d", i%5)}}
	}
	return out
}

// BenchmarkSync measures a Google-style sync of 5,000 people: the first
// (everyone created) and then one where nothing changed.
func BenchmarkSync(b *testing.B) {
	groups := []directory.Group{{ID: "g0", Name: "G0"}, {ID: "g1", Name: "G1"}, {ID: "g2", Name: "G2"}, {ID: "g3", Name: "G3"}, {ID: "g4", Name: "G4"}}
	ps := people(5000)
	for _, phase := range []string{"first", "unchanged"} {
		b.Run(phase, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				f := newFixture(b)
				ctx := context.Background()
				if phase == "unchanged" {
					if _, err := f.dir.Sync(ctx, "google", ps, groups, false, "bench"); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				st, err := f.dir.Sync(ctx, "google", ps, groups, false, "bench")
				if err != nil || st.Created+st.Unchanged != len(ps) {
					b.Fatalf("%+v %v", st, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(ps)), "µs/person")
		})
	}
}

// BenchmarkSCIMProvision measures what an identity provider's first push
// costs: 1,000 users created over HTTP by four connections, each mirrored
// into a Custody user as it is stored.
func BenchmarkSCIMProvision(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b)
		ctx := context.Background()
		srv := &scim.Server{Store: f.db.SCIM(), Changed: f.dir.SCIMChanged(f.db.SCIM()), Logger: slog.New(slog.DiscardHandler)}
		_, token, err := scim.NewToken(ctx, f.db.SCIM(), "bench", f.clock())
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		work := make(chan int)
		var wg sync.WaitGroup
		b.StartTimer()
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u%d@example.com","active":true,"emails":[{"value":"u%d@example.com","primary":true}]}`, i, i)
					req, _ := http.NewRequest("POST", hs.URL+"/Users", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+token)
					req.Header.Set("Content-Type", "application/scim+json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil || resp.StatusCode != 201 {
						b.Errorf("create %d: %v %v", i, err, resp)
						return
					}
					resp.Body.Close()
				}
			}()
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		b.StopTimer()
		hs.Close()
		var users int
		f.db.Records().Users(ctx, func(*enroll.User) bool { users++; return true })
		if users != n {
			b.Fatalf("%d users mirrored, want %d", users, n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/user")
}
