package directory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/enroll/directory/googletest"
)

const googleAdmin = "it-admin@example.com"

// A googleWorkspace is a fake Workspace of 1,234 people and what the test
// expects FetchGoogle to make of each of them.
type googleWorkspace struct {
	fake   *googletest.Server
	want   map[string]*Person // by email, Groups by group email until resolved
	ou     map[string]string  // email → organisational unit
	groups map[string]string  // group email → ID
	names  map[string]string  // group ID → expected Group.Name
	size   map[string]int     // group email → direct members
}

var googleOrgUnits = []string{"/", "/Sales", "/Sales/EU", "/SalesOps", "/Engineering", "/Engineering/Platform", "/Field Ops"}

func newGoogleWorkspace(t *testing.T) *googleWorkspace {
	t.Helper()
	w := &googleWorkspace{fake: googletest.New(), want: map[string]*Person{}, ou: map[string]string{},
		groups: map[string]string{}, names: map[string]string{}, size: map[string]int{}}
	t.Cleanup(w.fake.Close)
	w.fake.AllowSubject(googleAdmin)
	for _, g := range []admin.Group{
		{Email: "everyone@example.com", Name: "Everyone"},
		{Email: "sales@example.com", Name: "Sales"},
		{Email: "sales-eu@example.com", Name: "Sales EU"},
		{Email: "engineering@example.com", Name: "Engineering", Aliases: []string{"eng@example.com"}},
		{Email: "managers@example.com"}, // no name: its email stands in
	} {
		id := w.fake.AddGroup(g)
		w.groups[g.Email], w.names[id] = id, orElse(g.Name, g.Email)
	}
	member := func(group, key, typ string) {
		t.Helper()
		if err := w.fake.AddMember(group, key, typ); err != nil {
			t.Fatal(err)
		}
		w.size[group]++
	}
	member("everyone@example.com", w.fake.CustomerID(), googletest.MemberCustomer)
	member("sales@example.com", "sales-eu@example.com", googletest.MemberGroup)
	member("managers@example.com", "sales@example.com", googletest.MemberGroup)
	member("engineering@example.com", "contractor@partner.example", googletest.MemberExternal)

	for i := range 1234 {
		email := fmt.Sprintf("user%04d@example.com", i)
		u := admin.User{PrimaryEmail: email, OrgUnitPath: googleOrgUnits[i%len(googleOrgUnits)],
			Name: &admin.UserName{GivenName: fmt.Sprintf("Given%d", i), FamilyName: "Family"}}
		p := &Person{Email: email, Name: fmt.Sprintf("Given%d Family", i), Active: true, Groups: []string{"everyone@example.com"}}
		switch {
		case i == 5:
			u.PrimaryEmail, u.Name, p.Name = "Mixed.Case@Example.COM", nil, ""
			email, p.Email = "mixed.case@example.com", "mixed.case@example.com"
		case i%3 == 0:
			u.Phones = []admin.UserPhone{{Type: "work", Value: "+46 8 000 00 00"}, {Type: "mobile", Value: fmt.Sprintf("+46 70 %07d", i)}}
			p.Mobile = fmt.Sprintf("+46 70 %07d", i)
		case i == 10:
			u.Phones = []admin.UserPhone{{Type: "mobile", Value: "+46 70 111"}, {Type: "mobile", Value: "+46 70 222", Primary: true}}
			p.Mobile = "+46 70 222"
		}
		if i%100 == 7 {
			u.Suspended, p.Active = true, false
		}
		if i == 500 {
			u.Archived, p.Active = true, false
		}
		p.ID = w.fake.AddUser(u)
		w.want[email], w.ou[email] = p, u.OrgUnitPath
		switch u.OrgUnitPath {
		case "/Sales":
			member("sales@example.com", email, googletest.MemberUser)
			p.Groups = append(p.Groups, "sales@example.com", "managers@example.com")
		case "/Sales/EU":
			member("sales-eu@example.com", email, googletest.MemberUser)
			p.Groups = append(p.Groups, "sales-eu@example.com", "sales@example.com", "managers@example.com")
		}
		if i%5 == 0 {
			member("engineering@example.com", email, googletest.MemberUser)
			p.Groups = append(p.Groups, "engineering@example.com")
		}
		if i < 3 && u.OrgUnitPath != "/Sales" { // managers directly, not only through sales
			member("managers@example.com", email, googletest.MemberUser)
			p.Groups = append(p.Groups, "managers@example.com")
		}
	}
	// Two suspended after the fact, as an administrator suspends leavers.
	for _, e := range []string{"user0042@example.com", "user1233@example.com"} {
		if err := w.fake.SetSuspended(e, true); err != nil {
			t.Fatal(err)
		}
		w.want[e].Active = false
	}
	for _, p := range w.want {
		for i, g := range p.Groups {
			p.Groups[i] = w.groups[g]
		}
		slices.Sort(p.Groups)
		p.Groups = slices.Compact(p.Groups)
	}
	return w
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (w *googleWorkspace) config() GoogleConfig {
	return GoogleConfig{CredentialsJSON: w.fake.ServiceAccountJSON(), Subject: googleAdmin}
}

func (w *googleWorkspace) fetch(t *testing.T, cfg GoogleConfig) ([]*Person, []Group) {
	t.Helper()
	people, groups, err := FetchGoogle(context.Background(), cfg, option.WithEndpoint(w.fake.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return people, groups
}

// check holds people to the expected people that keep, and the groups to
// those the kept people are in (and always).
func (w *googleWorkspace) check(t *testing.T, people []*Person, groups []Group, keep func(email string) bool, always ...string) {
	t.Helper()
	var emails []string
	for e := range w.want {
		if keep(e) {
			emails = append(emails, e)
		}
	}
	slices.Sort(emails)
	if len(people) != len(emails) {
		t.Fatalf("got %d people, want %d", len(people), len(emails))
	}
	used := map[string]bool{}
	for _, g := range always {
		used[w.groups[g]] = true
	}
	for i, p := range people {
		want := w.want[emails[i]]
		if p.Email != want.Email || p.ID != want.ID || p.Name != want.Name || p.Mobile != want.Mobile ||
			p.Active != want.Active || !slices.Equal(p.Groups, want.Groups) {
			t.Fatalf("person %d:\n got %+v\nwant %+v", i, *p, *want)
		}
		for _, g := range p.Groups {
			used[g] = true
		}
	}
	var want []Group
	for _, id := range slices.Sorted(maps.Keys(used)) {
		want = append(want, Group{ID: id, Name: w.names[id]})
	}
	if !slices.Equal(groups, want) {
		t.Fatalf("groups:\n got %v\nwant %v", groups, want)
	}
}

// listCalls returns the Directory API requests to path (users, groups,
// or members of a group), after the first index.
func (w *googleWorkspace) listCalls(path string, from int) []googletest.Request {
	var out []googletest.Request
	for _, r := range w.fake.Requests()[from:] {
		if r.Path == "/admin/directory/v1/"+path {
			out = append(out, r)
		}
	}
	return out
}

func TestFetchGoogleEveryone(t *testing.T) {
	w := newGoogleWorkspace(t)
	people, groups := w.fetch(t, w.config())
	w.check(t, people, groups, func(string) bool { return true }, "everyone@example.com", "sales@example.com",
		"sales-eu@example.com", "engineering@example.com", "managers@example.com")

	inactive := 0
	for _, p := range people {
		if !p.Active {
			inactive++
		}
	}
	if inactive != 13+1+2 {
		t.Errorf("%d inactive people, want 13 suspended at creation, 1 archived, 2 suspended later", inactive)
	}

	reqs := w.fake.Requests()
	var tokens int
	for _, r := range reqs {
		switch {
		case r.Path == "/token":
			tokens++
		case r.Subject != googleAdmin:
			t.Errorf("%s %s went as %q, want the delegated admin", r.Method, r.Path, r.Subject)
		}
	}
	if tokens != 1 {
		t.Errorf("%d token requests, want one for the whole sync", tokens)
	}
	users := w.listCalls("users", 0)
	if len(users) != 3 { // ceil(1234/500)
		t.Fatalf("%d users.list pages, want 3", len(users))
	}
	for i, r := range users {
		if r.Query.Get("customer") != "my_customer" || r.Query.Get("maxResults") != "500" || r.Query.Get("query") != "" ||
			(i == 0) != (r.Query.Get("pageToken") == "") {
			t.Errorf("users.list page %d: %v", i, r.Query)
		}
	}
	if g := w.listCalls("groups", 0); len(g) != 1 || g[0].Query.Get("customer") != "my_customer" {
		t.Errorf("groups.list: %v", g)
	}
	for email, id := range w.groups {
		got := w.listCalls("groups/"+id+"/members", 0)
		if want := max(1, (w.size[email]+199)/200); len(got) != want {
			t.Errorf("members.list of %s (%d members): %d pages, want %d", email, w.size[email], len(got), want)
		}
	}
	if w.size["engineering@example.com"] <= 200 {
		t.Fatal("engineering should need two pages of members")
	}
}

func TestFetchGoogleScope(t *testing.T) {
	w := newGoogleWorkspace(t)
	inGroup := func(group string) func(string) bool {
		return func(e string) bool { return slices.Contains(w.want[e].Groups, w.groups[group]) }
	}
	inOU := func(ous ...string) func(string) bool {
		return func(e string) bool {
			return slices.ContainsFunc(ous, func(ou string) bool { return w.ou[e] == ou || strings.HasPrefix(w.ou[e], ou+"/") })
		}
	}

	t.Run("groups", func(t *testing.T) {
		cfg := w.config()
		cfg.Groups = []string{"Sales@example.com"} // nested: sales-eu's members are in scope too
		people, groups := w.fetch(t, cfg)
		w.check(t, people, groups, inGroup("sales@example.com"), "sales@example.com")
		if len(people) < 300 {
			t.Fatalf("only %d people in sales", len(people))
		}
	})

	t.Run("group by alias", func(t *testing.T) {
		n := len(w.fake.Requests())
		cfg := w.config()
		cfg.Groups = []string{"eng@example.com"}
		people, groups := w.fetch(t, cfg)
		w.check(t, people, groups, inGroup("engineering@example.com"), "engineering@example.com")
		if got := w.listCalls("groups/eng@example.com", n); len(got) != 1 {
			t.Errorf("%d groups.get for the alias, want 1", len(got))
		}
	})

	t.Run("org units", func(t *testing.T) {
		n := len(w.fake.Requests())
		cfg := w.config()
		cfg.OrgUnits = []string{"/Sales", "/Sales/EU/", "/Field Ops"} // /Sales/EU is in /Sales already
		people, groups := w.fetch(t, cfg)
		keep := inOU("/Sales", "/Field Ops")
		w.check(t, people, groups, keep)
		var queries []string
		for _, r := range w.listCalls("users", n) {
			queries = append(queries, r.Query.Get("query"))
		}
		if want := []string{"orgUnitPath='/Field Ops'", "orgUnitPath='/Sales'"}; !slices.Equal(queries, want) {
			t.Errorf("users.list queries %q, want %q (one page each, /SalesOps not matched)", queries, want)
		}
		for _, p := range people {
			if w.ou[p.Email] == "/SalesOps" {
				t.Fatalf("%s of /SalesOps is in /Sales's scope", p.Email)
			}
		}
	})

	t.Run("both", func(t *testing.T) {
		cfg := w.config()
		cfg.Groups = []string{"engineering@example.com"}
		cfg.OrgUnits = []string{"/Sales"}
		people, groups := w.fetch(t, cfg)
		g, o := inGroup("engineering@example.com"), inOU("/Sales")
		w.check(t, people, groups, func(e string) bool { return g(e) && o(e) }, "engineering@example.com")
		if len(people) == 0 {
			t.Fatal("no one in both")
		}
	})

	t.Run("unknown group", func(t *testing.T) {
		cfg := w.config()
		cfg.Groups = []string{"nobody@example.com"}
		_, _, err := FetchGoogle(context.Background(), cfg, option.WithEndpoint(w.fake.URL+"/"))
		if err == nil || !strings.Contains(err.Error(), `group "nobody@example.com" is not in the directory`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestFetchGoogleErrors(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowSubject(googleAdmin)
	fake.AddUser(admin.User{PrimaryEmail: "a@example.com"})
	key := fake.ServiceAccountJSON()
	ep := option.WithEndpoint(fake.URL + "/")
	fetch := func(cfg GoogleConfig, opts ...option.ClientOption) error {
		_, _, err := FetchGoogle(context.Background(), cfg, append(opts, ep)...)
		return err
	}
	for _, tc := range []struct {
		name string
		cfg  GoogleConfig
		want []string
		opts []option.ClientOption
	}{
		{name: "wrong subject", cfg: GoogleConfig{CredentialsJSON: key, Subject: "someone@example.com"},
			want: []string{"listing users", "may not act as someone@example.com", "unauthorized_client", "Domain-wide delegation",
				admin.AdminDirectoryGroupMemberReadonlyScope, fake.ClientEmail()}},
		{name: "no subject", cfg: GoogleConfig{CredentialsJSON: key},
			want: []string{"no subject", "administrator"}},
		{name: "not JSON", cfg: GoogleConfig{CredentialsJSON: []byte("-----BEGIN PRIVATE KEY-----"), Subject: googleAdmin},
			want: []string{"not a JSON key file"}},
		{name: "not a service account", cfg: GoogleConfig{CredentialsJSON: []byte(`{"type":"authorized_user","client_id":"x"}`), Subject: googleAdmin},
			want: []string{`type is "authorized_user"`}},
		{name: "no private key", cfg: GoogleConfig{CredentialsJSON: []byte(`{"type":"service_account","client_email":"x@y.iam.gserviceaccount.com","private_key":"abc"}`), Subject: googleAdmin},
			want: []string{"private_key is not a PEM private key"}},
		{name: "bad org unit", cfg: GoogleConfig{CredentialsJSON: key, Subject: googleAdmin, OrgUnits: []string{"Sales"}},
			want: []string{`organisational unit "Sales"`}},
		{name: "no token", cfg: GoogleConfig{}, want: []string{"listing users", "401"}, opts: []option.ClientOption{option.WithoutAuthentication()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fetch(tc.cfg, tc.opts...)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}

	t.Run("403", func(t *testing.T) {
		fake.Inject(googletest.Fault{Path: "/admin/directory/v1/groups", Status: 403, Times: 1})
		err := fetch(GoogleConfig{CredentialsJSON: key, Subject: googleAdmin})
		for _, w := range []string{"listing groups", "403", "domain-wide delegation", admin.AdminDirectoryGroupReadonlyScope, googleAdmin} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Fatalf("err = %v, want it to say %q", err, w)
			}
		}
	})

	t.Run("scope not delegated", func(t *testing.T) {
		fake.Delegate(admin.AdminDirectoryUserReadonlyScope)
		defer fake.Delegate(GoogleScopes...)
		err := fetch(GoogleConfig{CredentialsJSON: key, Subject: googleAdmin})
		if err == nil || !strings.Contains(err.Error(), "unauthorized_client") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("anonymous", func(t *testing.T) {
		fake.AllowAnonymous()
		people, groups, err := FetchGoogle(context.Background(), GoogleConfig{}, ep, option.WithoutAuthentication())
		if err != nil || len(people) != 1 || people[0].Email != "a@example.com" || !people[0].Active || len(groups) != 0 {
			t.Fatalf("%v %v %v", people, groups, err)
		}
	})
}

// Google refuses cyclic memberships, but a sync must not loop forever if
// one slips through (or two paths lead to a group).
func TestGoogleClosureCycle(t *testing.T) {
	m := &memberships{
		users:    map[string][]string{"a": {"u1"}, "b": {"u2"}, "c": {"u3"}},
		groups:   map[string][]string{"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a"}},
		everyone: map[string]bool{},
	}
	users, everyone := m.closure("b")
	if everyone || len(users) != 3 {
		t.Fatalf("closure(b) = %v %v", users, everyone)
	}
}
