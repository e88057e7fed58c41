package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admin "google.golang.org/api/admin/directory/v1"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/directory/googletest"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

// scimClient is an identity provider talking SCIM to the server.
type scimClient struct {
	t     testing.TB
	base  string // …/scim/v2
	token string
}

// do sends a SCIM request and returns the status and the decoded body.
func (c *scimClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// must is do, failing the test unless the status is want.
func (c *scimClient) must(want int, method, path string, body any) map[string]any {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("SCIM %s %s: %d %v, want %d", method, path, code, out, want)
	}
	return out
}

func scimPatch(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
}

func scimOp(op, path string, value any) map[string]any {
	m := map[string]any{"op": op, "value": value}
	if path != "" {
		m["path"] = path
	}
	return m
}

func memberList(ids ...string) []any {
	var out []any
	for _, id := range ids {
		out = append(out, map[string]any{"value": id})
	}
	return out
}

// offboardings lists the server's offboardings.
func offboardings(t *testing.T, dir string) []directory.Offboarding {
	t.Helper()
	if out, err := cli(t, "offboarding", "list", "--data", dir); err != nil {
		t.Fatalf("offboarding list: %v\n%s", err, out)
	}
	var list []directory.Offboarding
	apiCall(t, dir, "GET", "/api/v1/offboardings", nil, &list)
	return list
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordOf returns a record as the inventory has it.
func recordOf(t *testing.T, dir, serial string) enroll.Trace {
	t.Helper()
	out, err := cli(t, "trace", "--data", dir, serial, "--json")
	if err != nil {
		t.Fatalf("trace %s: %v", serial, err)
	}
	var tr enroll.Trace
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// Identity-provider-driven management end to end: an Okta-like client
// provisions 500 users and 5 groups over SCIM and pushes memberships;
// devices of some users enrol (Apple and Android, corporate and
// personal); a group's profile and Android policy reach its members'
// devices only and follow a user moved between groups; a renamed group
// keeps its assignments; offboarding is cancelled by an administrator, by
// reactivation, planned only in dry-run, and, with no grace period, erases
// a corporate iPhone (certificate revoked, chain traced to the SCIM event),
// deletes a corporate Android device, unmanages a personal iPhone (MDM
// profile removed, not erased) and removes a personal Android work profile.
func TestDirectoryEndToEnd(t *testing.T) {
	users := 500
	if testing.Short() || raceEnabled {
		users = 100
	}
	fake := zerotouchtest.New()
	defer fake.Close()
	enterprise := fake.AddEnterprise("Example")
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	base, _ := startServe(t, ctx, dir, "--dep-sync-interval", "0", "--offboarding-interval", "100ms")
	out, err := cli(t, "android", "bind", "--data", dir, "--enterprise", enterprise, "--endpoint", fake.URL, "--customer", fake.Customer())
	if err != nil {
		t.Fatalf("android bind: %v\n%s", err, out)
	}
	fake.PushURL = regexp.MustCompile(`Pub/Sub push URL: (\S+)`).FindStringSubmatch(out)[1]

	// Tokens: none, a wrong one and a revoked one are refused with SCIM
	// errors; the IdP's works.
	token, err := cli(t, "scim", "token", "new", "--data", dir, "--name", "okta")
	if err != nil || !strings.HasPrefix(token, "scim_") {
		t.Fatalf("scim token new: %v %q", err, token)
	}
	old, _ := cli(t, "scim", "token", "new", "--data", dir, "--name", "old-okta")
	if out, err := cli(t, "scim", "token", "revoke", "--data", dir, "old-okta"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	idp := &scimClient{t: t, base: base + "/scim/v2", token: strings.TrimSpace(token)}
	for name, tok := range map[string]string{"no token": "", "wrong token": "scim_wrong", "revoked token": strings.TrimSpace(old)} {
		code, body := (&scimClient{t: t, base: idp.base, token: tok}).do("GET", "/Users", nil)
		schemas, _ := body["schemas"].([]any)
		if code != 401 || len(schemas) != 1 || schemas[0] != "urn:ietf:params:scim:api:messages:2.0:Error" || body["status"] != "401" {
			t.Errorf("%s: %d %v, want 401 with a SCIM error", name, code, body)
		}
	}
	if out, _ := cli(t, "scim", "token", "list", "--data", dir); !strings.Contains(out, "okta") || strings.Contains(out, "old-okta") || strings.Contains(out, "scim_") {
		t.Errorf("token list:\n%s", out)
	}

	// 500 users, four connections at a time as Okta does.
	ids := make([]string, users)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				code, u := idp.do("POST", "/Users", map[string]any{
					"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
					"userName": fmt.Sprintf("user%03d@example.com", i), "active": true,
					"name":   map[string]any{"givenName": "User", "familyName": fmt.Sprint(i)},
					"emails": []any{map[string]any{"value": fmt.Sprintf("user%03d@example.com", i), "type": "work", "primary": true}},
				})
				if code != 201 {
					t.Errorf("create user %d: %d %v", i, code, u)
					continue
				}
				ids[i] = u["id"].(string)
			}
		}()
	}
	start := time.Now()
	for i := range users {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d users provisioned in %s", users, time.Since(start).Round(time.Millisecond))

	// Five groups; user i is in group i%5.
	groups := make([]string, 5)
	for g := range groups {
		groups[g] = idp.must(201, "POST", "/Groups", map[string]any{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": fmt.Sprintf("Team %d", g),
		})["id"].(string)
		var members []string
		for i := g; i < users; i += 5 {
			members = append(members, ids[i])
		}
		idp.must(200, "PATCH", "/Groups/"+groups[g], scimPatch(scimOp("add", "members", memberList(members...))))
	}
	key := func(g int) string { return "scim:" + groups[g] }
	if out, _ := cli(t, "directory", "groups", "--data", dir); strings.Count(out, "scim:") != 5 || !strings.Contains(out, "Team 3") {
		t.Fatalf("directory groups:\n%s", out)
	}
	var list struct {
		Groups []groupJSON `json:"groups"`
	}
	apiCall(t, dir, "GET", "/api/v1/groups", nil, &list)
	for _, g := range list.Groups {
		if strings.HasPrefix(g.Name, "scim:") && g.Users != users/5 {
			t.Errorf("group %s has %d users, want %d", g.Name, g.Users, users/5)
		}
	}

	// Profiles for groups 1 and 2, an Android policy for group 1.
	for _, g := range []int{1, 2} {
		if _, err := cli(t, "assignments", "add", "--data", dir, key(g), "--profile", writeFile(t, fmt.Sprintf("g%d.mobileconfig", g), mobileconfig(fmt.Sprintf("com.example.team%d", g)))); err != nil {
			t.Fatal(err)
		}
	}
	policy := writeFile(t, "g1.json", []byte(`{"cameraDisabled": true}`))
	if _, err := cli(t, "assignments", "add", "--data", dir, key(1), "--android-policy", policy); err != nil {
		t.Fatal(err)
	}

	// Devices: user000 (team 0) and user001, user006 (team 1) have
	// iPhones, user006's personal; user011 and user016 (team 1) Android
	// phones, user016's personal.
	csv := "serial,platform,ownership,name,email\n" +
		"IPH000,ios,corporate,User 0,user000@example.com\nIPH001,ios,corporate,User 1,user001@example.com\nIPH006,ios,personal,User 6,user006@example.com\n" +
		"AND011,android,corporate,User 11,user011@example.com\nAND016,android,personal,User 16,user016@example.com\n"
	if out, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "devices.csv", []byte(csv))); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	apple := map[string]*mdmtest.Device{}
	for _, serial := range []string{"IPH000", "IPH001", "IPH006"} {
		d, err := enrollSerial(t, dir, recordURL(t, dir, serial), serial)
		if err != nil {
			t.Fatalf("enrol %s: %v", serial, err)
		}
		poll(t, d)
		apple[serial] = d
	}
	android := map[string]*zerotouchtest.Device{}
	for _, serial := range []string{"AND011", "AND016"} {
		png := filepath.Join(t.TempDir(), serial+".png")
		out, err := cli(t, "android", "token", "--data", dir, "--serial", serial, "--png", png)
		if err != nil {
			t.Fatal(err)
		}
		var d *zerotouchtest.Device
		if serial == "AND016" { // a personal phone opens the link
			d, err = fake.OpenLink(regexp.MustCompile(`enrollment link: (\S+)`).FindStringSubmatch(out)[1], zerotouchtest.DeviceInfo{Serial: serial})
		} else {
			d, err = fake.ScanQR([]byte(decodeQR(t, png)), zerotouchtest.DeviceInfo{Serial: serial})
		}
		if err != nil {
			t.Fatalf("enrol %s: %v", serial, err)
		}
		android[serial] = d
	}
	profiles := func(serial string) string { return strings.Join(apple[serial].Profiles(), ",") }
	if profiles("IPH000") != "" || profiles("IPH001") != "com.example.team1" || profiles("IPH006") != "com.example.team1" {
		t.Fatalf("profiles after enrolment: IPH000 %q, IPH001 %q, IPH006 %q; want team 1's on team 1 only",
			profiles("IPH000"), profiles("IPH001"), profiles("IPH006"))
	}
	team1Policy := enterprise + "/policies/" + enroll.AndroidPolicyID(key(1))
	if p := android["AND011"].PolicyName(); p != team1Policy {
		t.Fatalf("AND011 applies %s, want %s", p, team1Policy)
	}

	// user001 moves from team 1 to team 2 (Okta removes by value path,
	// then adds); user011 leaves team 1 for team 0 (Entra removes by a
	// value list).
	idp.must(200, "PATCH", "/Groups/"+groups[1], scimPatch(scimOp("remove", fmt.Sprintf(`members[value eq "%s"]`, ids[1]), nil)))
	idp.must(200, "PATCH", "/Groups/"+groups[2], scimPatch(scimOp("add", "members", memberList(ids[1]))))
	idp.must(200, "PATCH", "/Groups/"+groups[1], scimPatch(scimOp("Remove", "members", memberList(ids[11]))))
	idp.must(200, "PATCH", "/Groups/"+groups[0], scimPatch(scimOp("Add", "members", memberList(ids[11]))))
	poll(t, apple["IPH001"])
	if got := profiles("IPH001"); got != "com.example.team2" {
		t.Errorf("IPH001 after the move: %q, want only team 2's profile", got)
	}
	if tr := recordOf(t, dir, "IPH001"); !hasStep(tr, enroll.StepUnassigned) {
		t.Errorf("IPH001's history lacks the unassignment")
	}
	if p := android["AND011"].PolicyName(); p != enterprise+"/policies/"+enroll.DefaultAndroidPolicy {
		t.Errorf("AND011 after leaving team 1 applies %s, want the default policy", p)
	}
	if got := profiles("IPH006"); got != "com.example.team1" {
		t.Errorf("IPH006 (stayed in team 1): %q", got)
	}

	// Renaming team 2 changes its name and nothing else.
	idp.must(200, "PATCH", "/Groups/"+groups[2], scimPatch(scimOp("replace", "", map[string]any{"id": groups[2], "displayName": "Team Two"})))
	if out, _ := cli(t, "directory", "groups", "--data", dir); !strings.Contains(out, key(2)+"  Team Two") {
		t.Errorf("after the rename:\n%s", out)
	}
	if n := poll(t, apple["IPH001"]); n != 0 || profiles("IPH001") != "com.example.team2" {
		t.Errorf("IPH001 after the rename: %d commands, profiles %q", n, profiles("IPH001"))
	}

	// With a grace period, deactivating user000 (Entra: "active": "False")
	// plans an erase that the administrator cancels.
	if _, err := cli(t, "directory", "settings", "--data", dir, "--grace", "1h"); err != nil {
		t.Fatal(err)
	}
	idp.must(200, "PATCH", "/Users/"+ids[0], scimPatch(scimOp("Replace", "active", "False")))
	obs := offboardings(t, dir)
	if len(obs) != 1 || obs[0].Email != "user000@example.com" || obs[0].State != directory.OffboardingPending ||
		len(obs[0].Devices) != 1 || obs[0].Devices[0].Action != directory.ActionErase || obs[0].DueAt.Sub(obs[0].CreatedAt) != time.Hour {
		t.Fatalf("offboardings after deactivating user000: %+v", obs)
	}
	if out, err := cli(t, "offboarding", "cancel", "--data", dir, obs[0].ID, "--reason", "rehired"); err != nil || !strings.Contains(out, "cancelled by admin: rehired") {
		t.Fatalf("cancel: %v %s", err, out)
	}
	if _, err := cli(t, "offboarding", "cancel", "--data", dir, obs[0].ID); err == nil || !strings.Contains(err.Error(), "only a pending offboarding") {
		t.Errorf("cancelling twice: %v", err)
	}
	if out, err := cli(t, "offboarding", "show", "--data", dir, obs[0].ID); err != nil || !strings.Contains(out, `"state": "cancelled"`) || !strings.Contains(out, "rehired") {
		t.Errorf("offboarding show: %v\n%s", err, out)
	}
	if n := poll(t, apple["IPH000"]); n != 0 || apple["IPH000"].Wiped() {
		t.Errorf("IPH000 after the cancelled offboarding: %d commands", n)
	}
	// Reactivating (Okta: no path) and deactivating again; then
	// reactivating before the grace period ends cancels it.
	idp.must(200, "PATCH", "/Users/"+ids[0], scimPatch(scimOp("replace", "", map[string]any{"active": true})))
	idp.must(200, "PATCH", "/Users/"+ids[0], scimPatch(scimOp("replace", "", map[string]any{"active": false})))
	idp.must(200, "PATCH", "/Users/"+ids[0], scimPatch(scimOp("replace", "", map[string]any{"active": true})))
	obs = offboardings(t, dir)
	if len(obs) != 2 || obs[1].State != directory.OffboardingCancelled || !strings.Contains(obs[1].Note, "reactivated in scim") {
		t.Fatalf("after reactivation: %+v", obs)
	}

	// Dry run: planned and recorded, nothing done.
	cli(t, "directory", "settings", "--data", dir, "--grace", "0s", "--dry-run=true")
	idp.must(200, "PATCH", "/Users/"+ids[0], scimPatch(scimOp("replace", "active", false)))
	obs = offboardings(t, dir)
	if last := obs[len(obs)-1]; last.State != directory.OffboardingDryRun || last.Devices[0].Action != directory.ActionErase {
		t.Fatalf("dry run: %+v", last)
	}
	time.Sleep(300 * time.Millisecond) // three runs of the offboarding loop
	if n := poll(t, apple["IPH000"]); n != 0 {
		t.Errorf("IPH000 got %d commands in a dry run", n)
	}
	if tr := recordOf(t, dir, "IPH000"); !strings.Contains(lastNote(tr, enroll.StepOffboarding), "(dry run)") {
		t.Errorf("IPH000's history lacks the dry run: %q", lastNote(tr, enroll.StepOffboarding))
	}

	// For real, no grace period: corporate iPhone erased, corporate
	// Android deleted, personal iPhone unmanaged, personal Android's
	// work profile removed.
	cli(t, "directory", "settings", "--data", dir, "--dry-run=false")
	idp.must(200, "PATCH", "/Users/"+ids[1], scimPatch(scimOp("replace", "", map[string]any{"active": false})))
	idp.must(200, "PATCH", "/Users/"+ids[11], scimPatch(scimOp("Replace", "active", "False")))
	idp.must(204, "DELETE", "/Users/"+ids[6], nil)
	idp.must(200, "PUT", "/Users/"+ids[16], map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "user016@example.com", "active": false,
		"emails": []any{map[string]any{"value": "user016@example.com", "type": "work", "primary": true}},
	})
	waitFor(t, "four offboardings done", func() bool {
		done := 0
		for _, o := range offboardings(t, dir) {
			if o.State == directory.OffboardingDone {
				done++
			}
		}
		return done == 4
	})
	if _, err := apple["IPH001"].Poll(context.Background()); err != nil || !apple["IPH001"].Wiped() {
		t.Errorf("IPH001: %v, wiped %v; want erased", err, apple["IPH001"].Wiped())
	}
	if _, err := apple["IPH006"].Poll(context.Background()); err != nil || apple["IPH006"].Wiped() || !apple["IPH006"].Unenrolled() || len(apple["IPH006"].Profiles()) != 0 {
		t.Errorf("IPH006: %v, wiped %v, unenrolled %v, profiles %v; want unmanaged, not erased",
			err, apple["IPH006"].Wiped(), apple["IPH006"].Unenrolled(), apple["IPH006"].Profiles())
	}
	if _, err := android["AND011"].Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !android["AND011"].Wiped() {
		t.Errorf("AND011: %v, want factory reset", err)
	}
	if _, err := android["AND016"].Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || android["AND016"].Wiped() || !android["AND016"].WorkProfileRemoved() {
		t.Errorf("AND016: %v, wiped %v; want only the work profile removed", err, android["AND016"].Wiped())
	}
	// The chain closes: statuses, revoked certificates, and the IdP event
	// in each trace.
	for serial, want := range map[string]enroll.Status{"IPH001": enroll.StatusWiped, "IPH006": enroll.StatusUnenrolled,
		"AND011": enroll.StatusWiped, "AND016": enroll.StatusUnenrolled} {
		var tr enroll.Trace
		waitFor(t, serial+" "+string(want), func() bool { tr = recordOf(t, dir, serial); return tr.Record.Status == want })
		note := lastNote(tr, enroll.StepOffboarding)
		if !strings.Contains(note, "scim: user0") || !strings.Contains(note, "(scim token okta)") {
			t.Errorf("%s: offboarding note %q lacks the SCIM event", serial, note)
		}
		if strings.HasPrefix(serial, "IPH") && (len(tr.Certs) == 0 || !tr.Certs[len(tr.Certs)-1].Revoked() || !hasStep(tr, enroll.StepCertRevoked)) {
			t.Errorf("%s: certificate not revoked: %+v", serial, tr.Certs)
		}
	}
	text, _ := cli(t, "trace", "--data", dir, "IPH001")
	for _, want := range []string{"offboarding", "deactivated (scim token okta)", "wipe-requested", "wiped", "cert-revoked"} {
		if !strings.Contains(text, want) {
			t.Errorf("trace of IPH001 lacks %q:\n%s", want, text)
		}
	}
	if tr := recordOf(t, dir, "IPH000"); tr.Record.Status != enroll.StatusEnrolled {
		t.Errorf("IPH000 (dry run, cancelled) is %s", tr.Record.Status)
	}

	// Everything is in the audit log.
	audit, _ := cli(t, "directory", "audit", "--data", dir)
	for _, want := range []string{"scim-token-revoked", "user-created", "group-renamed", "user-groups", "user-deactivated",
		"user-reactivated", "offboarding-started", "offboarding-cancelled", "offboarding-done", "user-deleted", "scim token okta"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if n := strings.Count(audit, "user-created"); n != users {
		t.Errorf("audit log has %d user-created entries, want %d", n, users)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{fmt.Sprintf(`custody_directory_events_total{action="user-created"} %d`, users), `custody_directory_events_total{action="offboarding-done"} 4`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func hasStep(tr enroll.Trace, step enroll.Step) bool {
	return slices.ContainsFunc(tr.Record.History, func(e enroll.Event) bool { return e.Step == step })
}

func lastNote(tr enroll.Trace, step enroll.Step) string {
	note := ""
	for _, e := range tr.Record.History {
		if e.Step == step {
			note = e.Note
		}
	}
	return note
}

// Google Workspace sync through custody google: the service account's
// key is stored sealed, the sync pages through a fake Directory API with
// the real JWT-bearer flow (domain-wide delegation to the admin), limited
// to a group's members; a suspended user is offboarded, a user who leaves
// the group leaves the scope, a renamed group keeps its key.
func TestGoogleSync(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowSubject("admin@example.com")
	staff := fake.AddGroup(admin.Group{Email: "staff@example.com", Name: "Staff"})
	fake.AddGroup(admin.Group{Email: "others@example.com", Name: "Others"})
	const n = 650 // two pages of users
	for i := range n {
		email := fmt.Sprintf("g%03d@example.com", i)
		fake.AddUser(admin.User{PrimaryEmail: email, Name: &admin.UserName{GivenName: "G", FamilyName: fmt.Sprint(i)}})
		group := "staff@example.com"
		if i%10 == 9 {
			group = "others@example.com"
		}
		if err := fake.AddMember(group, email, googletest.MemberUser); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir, "--dep-sync-interval", "0", "--offboarding-interval", "100ms")
	key := writeFile(t, "sa.json", fake.ServiceAccountJSON())
	if _, err := cli(t, "google", "set", "--data", dir, "--credentials", key, "--subject", "nobody@example.com", "--groups", "staff@example.com", "--every", "", "--endpoint", fake.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "google", "sync", "--data", dir); err == nil || !strings.Contains(err.Error(), "nobody@example.com") {
		t.Fatalf("sync as an administrator the key is not delegated for: %v", err)
	}
	if _, err := cli(t, "google", "set", "--data", dir, "--credentials", key, "--subject", "admin@example.com", "--groups", "staff@example.com", "--every", "", "--endpoint", fake.URL); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, fileGoogle)); bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Error("the service account key is stored in the clear")
	}
	out, err := cli(t, "google", "sync", "--data", dir)
	staffCount := n - n/10
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d users, 1 groups", staffCount)) || !strings.Contains(out, fmt.Sprintf("%d created", staffCount)) {
		t.Fatalf("google sync: %v\n%s", err, out)
	}
	pages := 0
	for _, r := range fake.Requests() {
		if strings.HasSuffix(r.Path, "/users") {
			pages++
		}
	}
	if pages != 2 {
		t.Errorf("%d pages of users read, want 2", pages)
	}
	groupKey := "google:" + staff
	var groups struct {
		Groups []groupJSON `json:"groups"`
	}
	apiCall(t, dir, "GET", "/api/v1/groups", nil, &groups)
	if len(groups.Groups) != 1 || groups.Groups[0].Name != groupKey || groups.Groups[0].Users != staffCount {
		t.Fatalf("groups after the sync: %+v, want %s with %d users", groups.Groups, groupKey, staffCount)
	}

	// g001 has a device; suspended, it is offboarded (after the grace
	// period). g002 leaves the group: out of scope, not offboarded.
	if _, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "d.csv", []byte("serial,platform,ownership,name,email\nGGG001,ios,corporate,G 1,g001@example.com\n"))); err != nil {
		t.Fatal(err)
	}
	fake.SetSuspended("g001@example.com", true)
	fake.RemoveMember("staff@example.com", "g002@example.com")
	if out, err := cli(t, "google", "sync", "--data", dir); err != nil || !strings.Contains(out, "1 deactivated") || !strings.Contains(out, "1 left the scope") {
		t.Fatalf("second sync: %v\n%s", err, out)
	}
	obs := offboardings(t, dir)
	if len(obs) != 1 || obs[0].Email != "g001@example.com" || obs[0].State != directory.OffboardingPending ||
		!strings.Contains(obs[0].Event, "google: g001@example.com deactivated (google sync)") || len(obs[0].Devices) != 1 || obs[0].Devices[0].Action != directory.ActionNone {
		t.Fatalf("offboardings: %+v", obs)
	}
	apiCall(t, dir, "GET", "/api/v1/groups", nil, &groups)
	if groups.Groups[0].Users != staffCount-1 {
		t.Errorf("%s has %d users after g002 left, want %d", groupKey, groups.Groups[0].Users, staffCount-1)
	}
	// Restored before the grace period ends: cancelled.
	fake.SetSuspended("g001@example.com", false)
	if out, err := cli(t, "google", "sync", "--data", dir); err != nil || !strings.Contains(out, "1 reactivated") {
		t.Fatalf("third sync: %v\n%s", err, out)
	}
	if obs := offboardings(t, dir); obs[0].State != directory.OffboardingCancelled || !strings.Contains(obs[0].Note, "reactivated in google") {
		t.Errorf("after restoring g001: %+v", obs[0])
	}
	if out, _ := cli(t, "google", "show", "--data", dir); !strings.Contains(out, `"subject": "admin@example.com"`) || !strings.Contains(out, `"last_sync"`) || strings.Contains(out, "PRIVATE") {
		t.Errorf("google show:\n%s", out)
	}
}
