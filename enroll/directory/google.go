package directory

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// GoogleConfig says how to read a Google Workspace directory.
type GoogleConfig struct {
	// CredentialsJSON is a service account's JSON key; the service
	// account has domain-wide delegation for GoogleScopes.
	CredentialsJSON []byte `json:"-"`
	// Subject is the Workspace administrator the service account acts as
	// (domain-wide delegation requires one).
	Subject string `json:"subject"`
	// Customer is the customer ID ("my_customer" when empty).
	Customer string `json:"customer,omitempty"`
	// Groups, when set, limits the sync to the members (direct and
	// through nested groups) of these groups (email addresses).
	Groups []string `json:"groups,omitempty"`
	// OrgUnits, when set, limits the sync to users in these
	// organisational units (paths like "/Sales") and their sub-units.
	OrgUnits []string `json:"org_units,omitempty"`
}

// GoogleScopes are the OAuth scopes FetchGoogle asks for: an administrator
// grants them to the service account's client ID under Security > Access
// and data control > API controls > Domain-wide delegation.
var GoogleScopes = []string{
	admin.AdminDirectoryUserReadonlyScope,
	admin.AdminDirectoryGroupReadonlyScope,
	admin.AdminDirectoryGroupMemberReadonlyScope,
}

// Page sizes: the maximum each list method accepts.
const (
	googleUsersPage   = 500
	googleGroupsPage  = 200
	googleMembersPage = 200
	googleSweepers    = 4 // groups whose members are read at once
)

// FetchGoogle reads users and groups from the Admin SDK Directory API.
//
// Every user in scope is returned, suspended and archived ones with
// Active false so that the caller can offboard them, sorted by email, each
// with the IDs of the groups it is in directly or through nested groups.
// The scope is every user, or with cfg.OrgUnits the users of those units
// and their sub-units, and with cfg.Groups the members of those groups;
// with both, the users in both. The groups returned, sorted by ID, are
// every group when the scope is everyone, and otherwise the groups the
// returned users are in and the cfg.Groups themselves.
//
// It reads each group's members once, whatever the number of users.
// opts are passed to admin.NewService after the authenticated client made
// from cfg.CredentialsJSON, or alone when there are no credentials.
func FetchGoogle(ctx context.Context, cfg GoogleConfig, opts ...option.ClientOption) ([]*Person, []Group, error) {
	ous, err := normalizeOrgUnits(cfg.OrgUnits)
	if err != nil {
		return nil, nil, err
	}
	var key *serviceAccountKey
	if len(cfg.CredentialsJSON) > 0 {
		if key, err = parseServiceAccountKey(cfg.CredentialsJSON); err != nil {
			return nil, nil, err
		}
		if cfg.Subject == "" {
			return nil, nil, errors.New("google: no subject: domain-wide delegation needs the email address of a Workspace administrator for the service account to act as")
		}
		conf, err := google.JWTConfigFromJSON(cfg.CredentialsJSON, GoogleScopes...)
		if err != nil {
			return nil, nil, fmt.Errorf("google: service account key: %w", err)
		}
		conf.Subject = cfg.Subject
		opts = append([]option.ClientOption{option.WithHTTPClient(conf.Client(ctx))}, opts...)
	}
	svc, err := admin.NewService(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("google: %w", err)
	}
	f := &googleFetch{ctx: ctx, svc: svc, cfg: cfg, key: key, customer: cfg.Customer}
	if f.customer == "" {
		f.customer = "my_customer"
	}
	users, err := f.users(ous)
	if err != nil {
		return nil, nil, err
	}
	groups, err := f.groups()
	if err != nil {
		return nil, nil, err
	}
	var scope []string
	for _, k := range cfg.Groups {
		id, err := f.resolveGroup(k, groups)
		if err != nil {
			return nil, nil, err
		}
		scope = append(scope, id)
	}
	m, err := f.members(groups)
	if err != nil {
		return nil, nil, err
	}
	people, gs := m.assemble(users, groups, scope, len(scope) > 0)
	return people, gs, nil
}

// normalizeOrgUnits checks the paths and drops those inside another: the
// query for a unit already returns its sub-units.
func normalizeOrgUnits(ous []string) ([]string, error) {
	var out []string
	for _, ou := range ous {
		if !strings.HasPrefix(ou, "/") {
			return nil, fmt.Errorf("google: organisational unit %q: a path starts with / (\"/Sales\")", ou)
		}
		if ou != "/" {
			ou = strings.TrimSuffix(ou, "/")
		}
		out = append(out, ou)
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	kept := out[:0]
	for _, ou := range out {
		if len(kept) == 0 || !inOrgUnit(ou, kept[len(kept)-1]) {
			kept = append(kept, ou)
		}
	}
	return kept, nil
}

// inOrgUnit reports whether path is the unit ou or under it. Unit names
// are case-insensitive in Workspace.
func inOrgUnit(path, ou string) bool {
	path, ou = strings.ToLower(path), strings.ToLower(ou)
	return ou == "/" || path == ou || strings.HasPrefix(path, ou+"/")
}

type serviceAccountKey struct {
	Type        string `json:"type"`
	ClientEmail string `json:"client_email"`
	ClientID    string `json:"client_id"`
	PrivateKey  string `json:"private_key"`
}

// parseServiceAccountKey checks the key file before any request, so a
// wrong file is reported as that and not as a failed sign-in.
func parseServiceAccountKey(b []byte) (*serviceAccountKey, error) {
	var k serviceAccountKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("google: service account key is not a JSON key file: %w", err)
	}
	if k.Type != "service_account" {
		return nil, fmt.Errorf("google: service account key: type is %q, want \"service_account\" (create a key for a service account in the Cloud console and download it as JSON)", k.Type)
	}
	if k.ClientEmail == "" {
		return nil, errors.New("google: service account key has no client_email")
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return nil, errors.New("google: service account key: private_key is not a PEM private key")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return nil, fmt.Errorf("google: service account key: private_key: %w", err)
		}
	}
	return &k, nil
}

type googleFetch struct {
	ctx      context.Context
	svc      *admin.Service
	cfg      GoogleConfig
	key      *serviceAccountKey // nil without credentials
	customer string
}

// users lists the users, once per organisational unit when there are
// some, and returns them by ID.
func (f *googleFetch) users(ous []string) (map[string]*admin.User, error) {
	users := map[string]*admin.User{}
	queries := []string{""}
	if len(ous) > 0 {
		queries = queries[:0]
		for _, ou := range ous {
			queries = append(queries, "orgUnitPath='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(ou)+"'")
		}
	}
	for _, q := range queries {
		call := f.svc.Users.List().Customer(f.customer).MaxResults(googleUsersPage).
			Fields("nextPageToken", "users(id,primaryEmail,name(fullName,givenName,familyName),suspended,archived,phones,orgUnitPath)")
		if q != "" {
			call = call.Query(q)
		}
		err := call.Pages(f.ctx, func(page *admin.Users) error {
			for _, u := range page.Users {
				if len(ous) > 0 && !slices.ContainsFunc(ous, func(ou string) bool { return inOrgUnit(u.OrgUnitPath, ou) }) {
					continue
				}
				users[u.Id] = u
			}
			return nil
		})
		if err != nil {
			return nil, f.wrap("listing users", err)
		}
	}
	return users, nil
}

func (f *googleFetch) groups() ([]*admin.Group, error) {
	var groups []*admin.Group
	err := f.svc.Groups.List().Customer(f.customer).MaxResults(googleGroupsPage).
		Fields("nextPageToken", "groups(id,email,name)").
		Pages(f.ctx, func(page *admin.Groups) error {
			groups = append(groups, page.Groups...)
			return nil
		})
	if err != nil {
		return nil, f.wrap("listing groups", err)
	}
	return groups, nil
}

// resolveGroup finds the ID of a scope group named by email (or ID)
// among the listed groups, and asks Google for the others: an alias
// resolves to the group it names.
func (f *googleFetch) resolveGroup(key string, groups []*admin.Group) (string, error) {
	for _, g := range groups {
		if strings.EqualFold(g.Email, key) || g.Id == key {
			return g.Id, nil
		}
	}
	g, err := f.svc.Groups.Get(key).Fields("id").Context(f.ctx).Do()
	if e := (*googleapi.Error)(nil); errors.As(err, &e) && e.Code == http.StatusNotFound {
		return "", fmt.Errorf("google: group %q is not in the directory", key)
	}
	if err != nil {
		return "", f.wrap(fmt.Sprintf("reading group %s", key), err)
	}
	if !slices.ContainsFunc(groups, func(x *admin.Group) bool { return x.Id == g.Id }) {
		return "", fmt.Errorf("google: group %q belongs to another customer than %s", key, f.customer)
	}
	return g.Id, nil
}

// memberships are the direct members of every group.
type memberships struct {
	users    map[string][]string // group ID → IDs of its user members
	groups   map[string][]string // group ID → IDs of its group members
	everyone map[string]bool     // group ID → has the customer as a member
}

// members reads the members of every group, a few groups at a time.
func (f *googleFetch) members(groups []*admin.Group) (*memberships, error) {
	m := &memberships{users: map[string][]string{}, groups: map[string][]string{}, everyone: map[string]bool{}}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan *admin.Group)
	)
	for range min(googleSweepers, len(groups)) {
		wg.Go(func() {
			for g := range next {
				var users, nested []string
				everyone := false
				err := f.svc.Members.List(g.Id).MaxResults(googleMembersPage).
					Fields("nextPageToken", "members(id,type)").
					Pages(ctx, func(page *admin.Members) error {
						for _, x := range page.Members {
							switch x.Type {
							case "USER":
								users = append(users, x.Id)
							case "GROUP":
								nested = append(nested, x.Id)
							case "CUSTOMER":
								everyone = true
							}
						}
						return nil
					})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = f.wrap("listing members of group "+g.Email, err)
					cancel()
				}
				m.users[g.Id], m.groups[g.Id], m.everyone[g.Id] = users, nested, everyone
				mu.Unlock()
			}
		})
	}
feed:
	for _, g := range groups {
		select {
		case next <- g:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && f.ctx.Err() != nil {
		firstErr = f.wrap("listing members", f.ctx.Err())
	}
	return m, firstErr
}

// closure returns the users in group id directly or through nested
// groups, and whether the whole customer is. A group met twice (a cycle,
// or two paths to it) is counted once.
func (m *memberships) closure(id string) (users map[string]bool, everyone bool) {
	users = map[string]bool{}
	seen := map[string]bool{}
	stack := []string{id}
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[g] {
			continue
		}
		seen[g] = true
		everyone = everyone || m.everyone[g]
		for _, u := range m.users[g] {
			users[u] = true
		}
		stack = append(stack, m.groups[g]...)
	}
	return users, everyone
}

// assemble turns what was read into people and groups, limited to the
// members of scope when scoped.
func (m *memberships) assemble(users map[string]*admin.User, groups []*admin.Group, scope []string, scoped bool) ([]*Person, []Group) {
	in := map[string]bool{} // user IDs in scope
	for id := range users {
		in[id] = !scoped
	}
	for _, g := range scope {
		members, everyone := m.closure(g)
		for id := range users {
			in[id] = in[id] || everyone
		}
		for id := range members {
			if _, ok := users[id]; ok {
				in[id] = true
			}
		}
	}
	people := map[string]*Person{}
	for id, u := range users {
		if in[id] {
			people[id] = googlePerson(u)
		}
	}
	var out []Group
	for _, g := range groups {
		members, everyone := m.closure(g.Id)
		used := !scoped || slices.Contains(scope, g.Id)
		add := func(p *Person) {
			p.Groups = append(p.Groups, g.Id)
			used = true
		}
		if everyone {
			for _, p := range people {
				add(p)
			}
		} else {
			for id := range members {
				if p := people[id]; p != nil {
					add(p)
				}
			}
		}
		if used {
			name := g.Name
			if name == "" {
				name = g.Email
			}
			out = append(out, Group{ID: g.Id, Name: name})
		}
	}
	ps := make([]*Person, 0, len(people))
	for _, p := range people {
		slices.Sort(p.Groups)
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *Person) int { return strings.Compare(a.Email, b.Email) })
	slices.SortFunc(out, func(a, b Group) int { return strings.Compare(a.ID, b.ID) })
	return ps, out
}

func googlePerson(u *admin.User) *Person {
	p := &Person{ID: u.Id, Email: strings.ToLower(u.PrimaryEmail), Active: !u.Suspended && !u.Archived, Mobile: googleMobile(u.Phones)}
	if n := u.Name; n != nil {
		p.Name = n.FullName
		if p.Name == "" {
			p.Name = strings.TrimSpace(n.GivenName + " " + n.FamilyName)
		}
	}
	return p
}

// googleMobile returns the user's mobile number, the primary one if
// there are several. Phones is untyped in the Go API (the discovery
// document says "any"): it arrives as decoded JSON, so it is re-read as
// the documented []UserPhone.
func googleMobile(phones any) string {
	if phones == nil {
		return ""
	}
	b, err := json.Marshal(phones)
	if err != nil {
		return ""
	}
	var ps []admin.UserPhone
	if json.Unmarshal(b, &ps) != nil {
		return ""
	}
	mobile := ""
	for _, p := range ps {
		if p.Type == "mobile" && p.Value != "" && (mobile == "" || p.Primary) {
			mobile = p.Value
		}
	}
	return mobile
}

// wrap gives an API error its context, and says what to fix for the
// errors an administrator meets while setting up delegation.
func (f *googleFetch) wrap(what string, err error) error {
	scopes := strings.Join(GoogleScopes, ",")
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && f.key != nil {
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		json.Unmarshal(re.Body, &body)
		if body.Error == "unauthorized_client" || body.Error == "access_denied" {
			return &googleError{err: err, msg: fmt.Sprintf("google: %s: the service account %s may not act as %s (%s: %s): in the Admin console, under Security > Access and data control > API controls > Domain-wide delegation, add client ID %s with the scopes %s, and check that %s is a Workspace administrator",
				what, f.key.ClientEmail, f.cfg.Subject, body.Error, body.Description, f.key.ClientID, scopes, f.cfg.Subject)}
		}
		if body.Error != "" {
			return &googleError{err: err, msg: fmt.Sprintf("google: %s: the token endpoint refused service account %s acting as %s: %s: %s",
				what, f.key.ClientEmail, f.cfg.Subject, body.Error, body.Description)}
		}
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch ge.Code {
		case http.StatusForbidden:
			return fmt.Errorf("google: %s: permission denied (403 %s): the service account needs domain-wide delegation for the scopes %s, and the subject %s must be an administrator allowed to read users and groups: %w",
				what, ge.Message, scopes, f.cfg.Subject, err)
		case http.StatusUnauthorized:
			return fmt.Errorf("google: %s: not authenticated (401 %s): %w", what, ge.Message, err)
		}
	}
	return fmt.Errorf("google: %s: %w", what, err)
}

// A googleError says in its own words what went wrong where the wrapped
// error (a token request's, which quotes the whole request URL and the
// response body) would only repeat it at length.
type googleError struct {
	msg string
	err error
}

func (e *googleError) Error() string { return e.msg }
func (e *googleError) Unwrap() error { return e.err }
