// Package googletest is a fake of the parts of Google's Admin SDK
// Directory API (admin/directory/v1) that a directory sync reads: users,
// groups and group members, listed page by page as Google pages them, and
// the OAuth 2.0 token endpoint a service account with domain-wide
// delegation signs in at (RFC 7523 JWT bearer grant).
//
// Reach it with option.WithEndpoint(fake.URL+"/") and either the key file
// ServiceAccountJSON returns (whose token_uri is the fake's /token) or,
// after AllowAnonymous, option.WithoutAuthentication. It keeps state in
// memory and records every request (Requests) so tests can hold a client
// to Google's request shapes and count its pages.
//
// It does not own organisational units as objects (a user's OrgUnitPath
// is just a string), custom schemas, aliases or writes through the API.
package googletest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	admin "google.golang.org/api/admin/directory/v1"
)

// A Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte
	// Subject is the administrator the request's access token was issued
	// to act as ("" for the token endpoint and anonymous requests).
	Subject string
}

// A Fault makes the next Times requests whose path contains Path fail
// with Status. Message defaults to Google's text for the status.
type Fault struct {
	Path    string
	Times   int
	Status  int
	Message string
}

// A Server is the fake.
type Server struct {
	URL string
	srv *httptest.Server

	mu         sync.Mutex
	customerID string
	users      map[string]*admin.User // by id
	groups     map[string]*group      // by id
	requests   []Request
	faults     []*Fault

	key         *rsa.PrivateKey // the service account's, made on first use
	keyID       string
	clientEmail string
	clientID    string
	subjects    map[string]bool // admins the service account may act as
	delegated   map[string]bool // scopes granted to the service account
	anonymous   bool
	tokens      map[string]grant // access token → what it was issued for
}

type group struct {
	g       admin.Group
	members []*admin.Member
}

type grant struct {
	subject string
	scopes  map[string]bool
	expiry  time.Time
}

// Scopes a new fake delegates to its service account: read-only access to
// users, groups and group members.
var defaultScopes = []string{
	admin.AdminDirectoryUserReadonlyScope,
	admin.AdminDirectoryGroupReadonlyScope,
	admin.AdminDirectoryGroupMemberReadonlyScope,
}

// New starts a fake with an empty directory; Close it when done.
func New() *Server {
	s := &Server{
		users: map[string]*admin.User{}, groups: map[string]*group{},
		subjects: map[string]bool{}, delegated: map[string]bool{}, tokens: map[string]grant{},
		clientEmail: "custody-sync@custody-test.iam.gserviceaccount.com",
	}
	s.customerID = "C0" + s.hexID(4)
	s.clientID = s.digits(21)
	s.keyID = s.hexID(20)
	for _, sc := range defaultScopes {
		s.delegated[sc] = true
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

// CustomerID is the customer's ID (the one "my_customer" stands for).
func (s *Server) CustomerID() string { return s.customerID }

// ClientEmail is the service account's email address, the JWT's issuer.
func (s *Server) ClientEmail() string { return s.clientEmail }

// AllowSubject lets the service account act as the administrator email
// (domain-wide delegation). A token request for any other subject is
// refused with 401 unauthorized_client, as Google refuses it.
func (s *Server) AllowSubject(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subjects[strings.ToLower(email)] = true
}

// Delegate replaces the scopes the service account was granted in the
// Admin console; a token request for any other scope is refused.
func (s *Server) Delegate(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delegated = map[string]bool{}
	for _, sc := range scopes {
		s.delegated[sc] = true
	}
}

// AllowAnonymous lets Directory API requests through without an access
// token, for clients built with option.WithoutAuthentication.
func (s *Server) AllowAnonymous() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anonymous = true
}

// Inject arms a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ServiceAccountJSON returns the JSON key file of the fake's service
// account, in the shape the Cloud console downloads: an RSA key in PKCS #8
// PEM and a token_uri pointing at the fake.
func (s *Server) ServiceAccountJSON() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	der, err := x509.MarshalPKCS8PrivateKey(s.privateKey())
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  "custody-test",
		"private_key_id":              s.keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                s.clientEmail,
		"client_id":                   s.clientID,
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.URL + "/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(s.clientEmail),
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	return b
}

func (s *Server) privateKey() *rsa.PrivateKey {
	if s.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		s.key = k
	}
	return s.key
}

// AddUser adds a user and returns its ID. Google's read-only fields are
// filled in: an ID when u has none, kind, customerId, orgUnitPath "/"
// when empty, and name.fullName from the given and family names. It
// panics when the primary email is empty or taken, a mistake in the test.
func (s *Server) AddUser(u admin.User) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.PrimaryEmail == "" || s.userByKey(u.PrimaryEmail) != nil {
		panic(fmt.Sprintf("googletest: AddUser: primary email %q is empty or taken", u.PrimaryEmail))
	}
	if u.Id == "" {
		u.Id = s.digits(21)
	}
	u.Kind, u.CustomerId = "admin#directory#user", s.customerID
	if u.OrgUnitPath == "" {
		u.OrgUnitPath = "/"
	}
	if u.Name != nil {
		n := *u.Name
		if n.FullName == "" {
			n.FullName = strings.TrimSpace(n.GivenName + " " + n.FamilyName)
		}
		u.Name = &n
	}
	u.Etag = s.etag()
	s.users[u.Id] = &u
	return u.Id
}

// SetSuspended suspends or restores the user with this email address.
func (s *Server) SetSuspended(email string, suspended bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByKey(email)
	if u == nil {
		return fmt.Errorf("googletest: no user %q", email)
	}
	u.Suspended, u.SuspensionReason = suspended, ""
	if suspended {
		u.SuspensionReason = "ADMIN"
	}
	u.Etag = s.etag()
	return nil
}

// AddGroup adds a group and returns its ID (filled in when g has none).
// It panics when the email is empty or taken, a mistake in the test.
func (s *Server) AddGroup(g admin.Group) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.Email == "" || s.groupByKey(g.Email) != nil {
		panic(fmt.Sprintf("googletest: AddGroup: email %q is empty or taken", g.Email))
	}
	if g.Id == "" {
		g.Id = "0" + s.hexID(7)
	}
	g.Kind, g.DirectMembersCount, g.Etag = "admin#directory#group", 0, s.etag()
	s.groups[g.Id] = &group{g: g}
	return g.Id
}

// Member types, as Google names them.
const (
	MemberUser     = "USER"
	MemberGroup    = "GROUP"
	MemberCustomer = "CUSTOMER" // every user of the customer
	MemberExternal = "EXTERNAL" // an address outside the customer
)

// AddMember adds a member with role MEMBER to the group groupKey (its ID
// or email). member is a user's or group's email or ID for types USER and
// GROUP, the customer ID for CUSTOMER, and an email for EXTERNAL. Like
// Google it refuses a membership that would make a cycle of groups.
func (s *Server) AddMember(groupKey, member, typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByKey(groupKey)
	if g == nil {
		return fmt.Errorf("googletest: no group %q", groupKey)
	}
	m := &admin.Member{Kind: "admin#directory#member", Role: "MEMBER", Type: typ, Status: "ACTIVE", Etag: s.etag()}
	switch typ {
	case MemberUser:
		u := s.userByKey(member)
		if u == nil {
			return fmt.Errorf("googletest: no user %q", member)
		}
		m.Id, m.Email = u.Id, u.PrimaryEmail
	case MemberGroup:
		c := s.groupByKey(member)
		if c == nil {
			return fmt.Errorf("googletest: no group %q", member)
		}
		if s.within(c.g.Id, g.g.Id) {
			return fmt.Errorf("googletest: adding %s to %s would make a cycle of groups", c.g.Email, g.g.Email)
		}
		m.Id, m.Email = c.g.Id, c.g.Email
	case MemberCustomer:
		if member != s.customerID {
			return fmt.Errorf("googletest: customer member %q is not %s", member, s.customerID)
		}
		m.Id = s.customerID
	case MemberExternal:
		m.Id, m.Email = s.digits(21), member
	default:
		return fmt.Errorf("googletest: unknown member type %q", typ)
	}
	for _, old := range g.members {
		if old.Id == m.Id {
			return fmt.Errorf("googletest: %s is already a member of %s", member, g.g.Email)
		}
	}
	g.members = append(g.members, m)
	g.g.DirectMembersCount++
	return nil
}

// within reports whether group id is outer or nested, at any depth, in it.
func (s *Server) within(outer, id string) bool {
	if outer == id {
		return true
	}
	for _, m := range s.groups[outer].members {
		if m.Type == MemberGroup && s.within(m.Id, id) {
			return true
		}
	}
	return false
}

// RemoveMember removes the member (an email or ID) from the group.
func (s *Server) RemoveMember(groupKey, member string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByKey(groupKey)
	if g == nil {
		return fmt.Errorf("googletest: no group %q", groupKey)
	}
	for i, m := range g.members {
		if m.Id == member || strings.EqualFold(m.Email, member) {
			g.members = slices.Delete(g.members, i, i+1)
			g.g.DirectMembersCount--
			return nil
		}
	}
	return fmt.Errorf("googletest: %q is not a member of %s", member, g.g.Email)
}

func (s *Server) userByKey(key string) *admin.User {
	if u := s.users[key]; u != nil {
		return u
	}
	for _, u := range s.users {
		if strings.EqualFold(u.PrimaryEmail, key) {
			return u
		}
	}
	return nil
}

func (s *Server) groupByKey(key string) *group {
	if g := s.groups[key]; g != nil {
		return g
	}
	for _, g := range s.groups {
		if strings.EqualFold(g.g.Email, key) || slices.ContainsFunc(g.g.Aliases, func(a string) bool { return strings.EqualFold(a, key) }) {
			return g
		}
	}
	return nil
}

func (s *Server) hexID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n*2]
}

// digits returns n random decimal digits, the first not 0: Google's user
// and client IDs are 21-digit numbers.
func (s *Server) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		r, _ := rand.Int(rand.Reader, big.NewInt(10))
		b[i] = '0' + byte(r.Int64())
	}
	if b[0] == '0' {
		b[0] = '1'
	}
	return string(b)
}

func (s *Server) etag() string { return `"` + s.hexID(12) + `"` }

// googleError writes Google's JSON error body, with the errors[] list the
// Admin SDK still sends.
func googleError(w http.ResponseWriter, code int, msg string) {
	status := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
		404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[code]
	reason := map[int]string{400: "invalid", 401: "authError", 403: "forbidden", 404: "notFound",
		429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}[code]
	if msg == "" {
		msg = map[int]string{400: "Bad Request", 401: "Login Required.", 403: "Not Authorized to access this resource/api",
			404: "Resource Not Found", 429: "Quota exceeded", 500: "Internal error encountered.", 503: "The service is currently unavailable."}[code]
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg, "status": status,
		"errors": []map[string]string{{"message": msg, "domain": "global", "reason": reason}},
	}})
}

// oauthError writes an RFC 6749 §5.2 error, as Google's token endpoint does.
func oauthError(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": desc})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body}
	for i, f := range s.faults {
		if strings.Contains(r.URL.Path, f.Path) {
			if f.Times--; f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			s.requests = append(s.requests, req)
			googleError(w, f.Status, f.Message)
			return
		}
	}
	if r.URL.Path == "/token" {
		s.requests = append(s.requests, req)
		s.token(w, r, body)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/admin/directory/v1/")
	if !ok {
		s.requests = append(s.requests, req)
		googleError(w, 404, "unknown path "+r.URL.Path)
		return
	}
	g, ok := s.authenticate(w, r)
	req.Subject = g.subject
	s.requests = append(s.requests, req)
	if !ok {
		return
	}
	if r.Method != http.MethodGet {
		googleError(w, 405, "the fake serves only reads")
		return
	}
	q := r.URL.Query()
	parts := strings.Split(path, "/")
	switch {
	case path == "users":
		if s.scoped(w, g, admin.AdminDirectoryUserScope, admin.AdminDirectoryUserReadonlyScope) {
			s.listUsers(w, q)
		}
	case path == "groups":
		if s.scoped(w, g, admin.AdminDirectoryGroupScope, admin.AdminDirectoryGroupReadonlyScope) {
			s.listGroups(w, q)
		}
	case len(parts) == 2 && parts[0] == "groups":
		if s.scoped(w, g, admin.AdminDirectoryGroupScope, admin.AdminDirectoryGroupReadonlyScope) {
			s.getGroup(w, q, parts[1])
		}
	case len(parts) == 3 && parts[0] == "groups" && parts[2] == "members":
		if s.scoped(w, g, admin.AdminDirectoryGroupScope, admin.AdminDirectoryGroupReadonlyScope,
			admin.AdminDirectoryGroupMemberScope, admin.AdminDirectoryGroupMemberReadonlyScope) {
			s.listMembers(w, q, parts[1])
		}
	default:
		googleError(w, 404, "unknown path "+r.URL.Path)
	}
}

// authenticate checks the request's bearer token. It writes the 401 and
// returns false when there is none or it is unknown or expired.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (grant, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		if s.anonymous {
			return grant{}, true
		}
		googleError(w, 401, "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
		return grant{}, false
	}
	g, ok := s.tokens[tok]
	if !ok || time.Now().After(g.expiry) {
		googleError(w, 401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
		return grant{}, false
	}
	return g, true
}

// scoped reports whether the grant has one of the scopes the method
// accepts (from the discovery document), and writes the 403 if not.
func (s *Server) scoped(w http.ResponseWriter, g grant, accepted ...string) bool {
	if g.scopes == nil && s.anonymous {
		return true
	}
	for _, sc := range accepted {
		if g.scopes[sc] {
			return true
		}
	}
	googleError(w, 403, "Request had insufficient authentication scopes.")
	return false
}

// token is the service account's token endpoint: the JWT bearer grant of
// RFC 7523 with an RS256 assertion signed by the account's key, as
// Google's OAuth 2.0 server-to-server flow has it.
func (s *Server) token(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || err != nil {
		oauthError(w, 400, "invalid_request", "POST an application/x-www-form-urlencoded body.")
		return
	}
	if gt := form.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, 400, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	claims, err := s.verifyJWT(form.Get("assertion"))
	if err != nil {
		oauthError(w, 400, "invalid_grant", err.Error())
		return
	}
	now := time.Now().Unix()
	if claims.Iss != s.clientEmail {
		oauthError(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if claims.Aud != s.URL+"/token" {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Failed audience check. The expected value is "+s.URL+"/token")
		return
	}
	if claims.Exp <= now || claims.Iat > now+300 || claims.Exp-claims.Iat > 3600 {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	}
	scopes := strings.Fields(claims.Scope)
	if len(scopes) == 0 {
		oauthError(w, 400, "invalid_scope", "Empty or missing scope not allowed.")
		return
	}
	sub := claims.Sub
	if sub == "" {
		sub = claims.Prn
	}
	if !s.subjects[strings.ToLower(sub)] || !all(scopes, s.delegated) {
		oauthError(w, 401, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
		return
	}
	g := grant{subject: strings.ToLower(sub), scopes: map[string]bool{}, expiry: time.Now().Add(time.Hour)}
	for _, sc := range scopes {
		g.scopes[sc] = true
	}
	tok := "ya29.fake-" + s.hexID(24)
	s.tokens[tok] = g
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

func all(scopes []string, granted map[string]bool) bool {
	for _, sc := range scopes {
		if !granted[sc] {
			return false
		}
	}
	return true
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Prn   string `json:"prn"` // the old name of sub
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// verifyJWT checks a compact JWS (RFC 7515) signed RS256 with the service
// account's key and returns its claims. Its errors are Google's words.
func (s *Server) verifyJWT(assertion string) (*jwtClaims, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, errors.New("Invalid JWT: the assertion is not a signed JWT.")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(h, &hdr) != nil {
		return nil, errors.New("Invalid JWT: the assertion is not base64url-encoded JSON.")
	}
	if hdr.Alg != "RS256" || (hdr.Kid != "" && hdr.Kid != s.keyID) {
		return nil, errors.New("Invalid JWT Signature.")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&s.privateKey().PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return nil, errors.New("Invalid JWT Signature.")
	}
	var c jwtClaims
	if err := json.Unmarshal(p, &c); err != nil {
		return nil, errors.New("Invalid JWT: the claim set is not JSON.")
	}
	return &c, nil
}

// page is one page of a list: the items from the cursor on, and the
// token for the next page.
type page struct {
	from int
	to   int
	next string
}

// paginate reads maxResults and pageToken. Tokens are opaque to clients:
// the last key served and a fingerprint of the list's other parameters,
// so a token replayed with another query is refused instead of mixing
// two lists.
// limit is the maximum the discovery document declares, which Google
// enforces; where it declares none (groups, members) the fake clamps to
// the documented maximum, clamp, instead.
func paginate(w http.ResponseWriter, q url.Values, keys []string, def, limit, clamp int) (page, bool) {
	n := def
	if v := q.Get("maxResults"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || (limit > 0 && i > limit) {
			googleError(w, 400, fmt.Sprintf("Invalid value '%s'. Values must be within the range: [1, %d]", v, max(limit, clamp)))
			return page{}, false
		}
		n = min(i, max(limit, clamp))
	}
	fp := fingerprint(q)
	from := 0
	if tok := q.Get("pageToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		var c struct{ After, Q string }
		if err != nil || json.Unmarshal(b, &c) != nil || c.Q != fp {
			googleError(w, 400, "Invalid Input: pageToken")
			return page{}, false
		}
		from = sort.SearchStrings(keys, c.After)
		if from < len(keys) && keys[from] == c.After {
			from++
		}
	}
	pg := page{from: from, to: min(from+n, len(keys))}
	if pg.to < len(keys) {
		b, _ := json.Marshal(struct{ After, Q string }{keys[pg.to-1], fp})
		pg.next = base64.RawURLEncoding.EncodeToString(b)
	}
	return pg, true
}

func fingerprint(q url.Values) string {
	var b bytes.Buffer
	keys := make([]string, 0, len(q))
	for k := range q {
		switch k {
		case "pageToken", "maxResults", "fields", "alt", "prettyPrint", "$.xgafv", "key", "quotaUser":
		default:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q;", k, q[k])
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:8])
}

func (s *Server) listUsers(w http.ResponseWriter, q url.Values) {
	customer, domain := q.Get("customer"), strings.ToLower(q.Get("domain"))
	switch {
	case customer == "" && domain == "":
		googleError(w, 400, "Bad Request")
		return
	case customer != "" && customer != "my_customer" && customer != s.customerID:
		googleError(w, 400, "Bad Request")
		return
	}
	if v := q.Get("viewType"); v != "" && v != "admin_view" {
		googleError(w, 400, "googletest: viewType="+v+" is not supported by the fake")
		return
	}
	if o := q.Get("orderBy"); o != "" && o != "email" {
		googleError(w, 400, "googletest: orderBy="+o+" is not supported by the fake")
		return
	}
	match, err := parseUserQuery(q.Get("query"))
	if err != nil {
		googleError(w, 400, "Invalid Input: "+err.Error())
		return
	}
	if q.Get("sortOrder") == "DESCENDING" {
		googleError(w, 400, "googletest: sortOrder=DESCENDING is not supported by the fake")
		return
	}
	byKey := map[string]*admin.User{}
	var keys []string
	for _, u := range s.users {
		if q.Get("showDeleted") == "true" { // the fake deletes no one
			break
		}
		if domain != "" && !strings.HasSuffix(strings.ToLower(u.PrimaryEmail), "@"+domain) || !match(u) {
			continue
		}
		k := strings.ToLower(u.PrimaryEmail)
		byKey[k] = u
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pg, ok := paginate(w, q, keys, 100, 500, 0)
	if !ok {
		return
	}
	out := admin.Users{Kind: "admin#directory#users", Etag: s.etag(), NextPageToken: pg.next, Users: []*admin.User{}}
	for _, k := range keys[pg.from:pg.to] {
		out.Users = append(out.Users, byKey[k])
	}
	writePartial(w, q, out)
}

// parseUserQuery turns the clauses of a users.list query (space-separated,
// ANDed; values in single quotes with \' escapes) into a predicate. It
// knows orgUnitPath (the unit and every unit under it), isSuspended,
// isArchived, isAdmin and email (= exact, :PREFIX* prefix).
func parseUserQuery(query string) (func(*admin.User) bool, error) {
	var preds []func(*admin.User) bool
	for rest := strings.TrimSpace(query); rest != ""; rest = strings.TrimSpace(rest) {
		i := strings.IndexAny(rest, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("query %q: no field and operator in %q", query, rest)
		}
		field, op := rest[:i], rest[i]
		value, tail, err := queryValue(rest[i+1:])
		if err != nil {
			return nil, fmt.Errorf("query %q: %v", query, err)
		}
		rest = tail
		p, err := userClause(field, op, value)
		if err != nil {
			return nil, fmt.Errorf("query %q: %v", query, err)
		}
		preds = append(preds, p)
	}
	return func(u *admin.User) bool {
		for _, p := range preds {
			if !p(u) {
				return false
			}
		}
		return true
	}, nil
}

// queryValue reads one value, quoted or bare, and returns the rest.
func queryValue(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, "'") {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return s, "", nil
		}
		return s[:i], s[i:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case s[i] == '\'':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", fmt.Errorf("unterminated quote")
}

func userClause(field string, op byte, value string) (func(*admin.User) bool, error) {
	boolean := func(get func(*admin.User) bool) (func(*admin.User) bool, error) {
		if op != '=' || (value != "true" && value != "false") {
			return nil, fmt.Errorf("%s takes =true or =false", field)
		}
		want := value == "true"
		return func(u *admin.User) bool { return get(u) == want }, nil
	}
	switch field {
	case "isSuspended":
		return boolean(func(u *admin.User) bool { return u.Suspended })
	case "isArchived":
		return boolean(func(u *admin.User) bool { return u.Archived })
	case "isAdmin":
		return boolean(func(u *admin.User) bool { return u.IsAdmin })
	case "orgUnitPath":
		if op != '=' || !strings.HasPrefix(value, "/") {
			return nil, errors.New("orgUnitPath takes = and a path starting with /")
		}
		ou := strings.ToLower(strings.TrimSuffix(value, "/"))
		return func(u *admin.User) bool {
			p := strings.ToLower(u.OrgUnitPath)
			return ou == "" || p == ou || strings.HasPrefix(p, ou+"/")
		}, nil
	case "email":
		v := strings.ToLower(value)
		if prefix, ok := strings.CutSuffix(v, "*"); ok && op == ':' {
			return func(u *admin.User) bool { return strings.HasPrefix(strings.ToLower(u.PrimaryEmail), prefix) }, nil
		}
		if op == '=' {
			return func(u *admin.User) bool { return strings.ToLower(u.PrimaryEmail) == v }, nil
		}
	}
	return nil, fmt.Errorf("the fake does not support %s%c", field, op)
}

func (s *Server) listGroups(w http.ResponseWriter, q url.Values) {
	customer, domain, userKey := q.Get("customer"), strings.ToLower(q.Get("domain")), q.Get("userKey")
	switch {
	case customer == "" && domain == "" && userKey == "",
		customer != "" && userKey != "",
		customer != "" && customer != "my_customer" && customer != s.customerID:
		googleError(w, 400, "Bad Request")
		return
	}
	if q.Get("query") != "" || q.Get("orderBy") != "" {
		googleError(w, 400, "googletest: query and orderBy are not supported by the fake")
		return
	}
	var user *admin.User
	if userKey != "" {
		if user = s.userByKey(userKey); user == nil {
			googleError(w, 404, "Resource Not Found: userKey")
			return
		}
	}
	byKey := map[string]*group{}
	var keys []string
	for _, g := range s.groups {
		if domain != "" && !strings.HasSuffix(strings.ToLower(g.g.Email), "@"+domain) {
			continue
		}
		if user != nil && !slices.ContainsFunc(g.members, func(m *admin.Member) bool { return m.Id == user.Id }) {
			continue
		}
		k := strings.ToLower(g.g.Email)
		byKey[k] = g
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pg, ok := paginate(w, q, keys, 200, 0, 200)
	if !ok {
		return
	}
	out := admin.Groups{Kind: "admin#directory#groups", Etag: s.etag(), NextPageToken: pg.next, Groups: []*admin.Group{}}
	for _, k := range keys[pg.from:pg.to] {
		out.Groups = append(out.Groups, &byKey[k].g)
	}
	writePartial(w, q, out)
}

func (s *Server) getGroup(w http.ResponseWriter, q url.Values, key string) {
	g := s.groupByKey(key)
	if g == nil {
		googleError(w, 404, "Resource Not Found: groupKey")
		return
	}
	writePartial(w, q, g.g)
}

func (s *Server) listMembers(w http.ResponseWriter, q url.Values, key string) {
	g := s.groupByKey(key)
	if g == nil {
		googleError(w, 404, "Resource Not Found: groupKey")
		return
	}
	if q.Get("includeDerivedMembership") == "true" {
		googleError(w, 400, "googletest: includeDerivedMembership is not supported by the fake")
		return
	}
	roles := map[string]bool{}
	for r := range strings.SplitSeq(q.Get("roles"), ",") {
		if r = strings.TrimSpace(strings.ToUpper(r)); r != "" {
			roles[r] = true
		}
	}
	byKey := map[string]*admin.Member{}
	var keys []string
	for _, m := range g.members {
		if len(roles) > 0 && !roles[m.Role] {
			continue
		}
		k := strings.ToLower(m.Email) + "\x00" + m.Id
		byKey[k] = m
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pg, ok := paginate(w, q, keys, 200, 0, 200)
	if !ok {
		return
	}
	out := admin.Members{Kind: "admin#directory#members", Etag: s.etag(), NextPageToken: pg.next, Members: []*admin.Member{}}
	for _, k := range keys[pg.from:pg.to] {
		out.Members = append(out.Members, byKey[k])
	}
	writePartial(w, q, out)
}

// writePartial writes v as JSON, cut down to the fields selector when the
// request has one (Google's partial response: "a,b(c,d/e)").
func writePartial(w http.ResponseWriter, q url.Values, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		googleError(w, 500, err.Error())
		return
	}
	if f := q.Get("fields"); f != "" {
		sel, err := parseFields(f)
		if err != nil {
			googleError(w, 400, "Invalid field selection "+f)
			return
		}
		var doc any
		json.Unmarshal(b, &doc)
		b, _ = json.Marshal(sel.apply(doc))
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(b)
}

// A fieldSel is a parsed fields selector: each selected name and what is
// selected under it (nil: all of it).
type fieldSel map[string]fieldSel

func parseFields(s string) (fieldSel, error) {
	sel, rest, err := parseFieldList(s)
	if err == nil && rest != "" {
		err = fmt.Errorf("unexpected %q", rest)
	}
	return sel, err
}

func parseFieldList(s string) (fieldSel, string, error) {
	sel := fieldSel{}
	for {
		name, sub, rest, err := parseField(s)
		if err != nil {
			return nil, "", err
		}
		sel.merge(name, sub)
		if !strings.HasPrefix(rest, ",") {
			return sel, rest, nil
		}
		s = rest[1:]
	}
}

func parseField(s string) (name string, sub fieldSel, rest string, err error) {
	i := strings.IndexAny(s, ",/()")
	if i < 0 {
		i = len(s)
	}
	name, rest = strings.TrimSpace(s[:i]), s[i:]
	if name == "" {
		return "", nil, "", fmt.Errorf("empty field name")
	}
	switch {
	case strings.HasPrefix(rest, "/"):
		n, sub, r, err := parseField(rest[1:])
		if err != nil {
			return "", nil, "", err
		}
		child := fieldSel{}
		child.merge(n, sub)
		return name, child, r, nil
	case strings.HasPrefix(rest, "("):
		sub, r, err := parseFieldList(rest[1:])
		if err != nil {
			return "", nil, "", err
		}
		if !strings.HasPrefix(r, ")") {
			return "", nil, "", fmt.Errorf("missing )")
		}
		return name, sub, r[1:], nil
	}
	return name, nil, rest, nil
}

func (f fieldSel) merge(name string, sub fieldSel) {
	old, seen := f[name]
	switch {
	case !seen:
		f[name] = sub
	case old == nil || sub == nil:
		f[name] = nil
	default:
		for k, v := range sub {
			old.merge(k, v)
		}
	}
}

func (f fieldSel) apply(v any) any {
	if f == nil {
		return v
	}
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, sub := range f {
			if x, ok := v[k]; ok {
				out[k] = sub.apply(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = f.apply(x)
		}
		return out
	}
	return v
}
