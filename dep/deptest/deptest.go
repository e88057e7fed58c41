// Package deptest is a fake of Apple's device assignment API (ADE, "DEP")
// for tests, served by httptest: OAuth 1.0a session authentication with
// its signature checked, expiring and rotating session tokens, paged fetch
// and sync with opaque expiring cursors, device details, profiles and
// their assignment, disowning, and a control API (Go methods) to add,
// change and delete devices and to inject faults: 429 with Retry-After,
// 5xx, echoed and expired cursors. It follows the published protocol, not
// our client's habits, so other clients can be tested against it too.
package deptest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custodymdm/custody/dep"
)

// A Server is a fake device assignment service holding any number of MDM
// servers (accounts), each with its own server token and devices.
type Server struct {
	// URL is the base URL to give dep.Options.BaseURL.
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	accounts map[string]*Account // by consumer key
	sessions map[string]*session
	nonces   map[string]bool
	faults   []*Fault
	echoes   int
	// cursorsBefore expires every cursor issued before it.
	cursorsBefore time.Time
	calls         map[string]int
	lastRetry     map[string]time.Time // path → earliest time a retry is allowed
	violations    int

	// SessionTTL is how long a session token lives (30 minutes when
	// zero). RotateEvery, when positive, makes every n-th response carry
	// a new X-ADM-Auth-Session, the old one then refused.
	SessionTTL  time.Duration
	RotateEvery int
	// CursorTTL is how long a cursor stays valid (7 days when zero).
	CursorTTL time.Duration
	// MaxLimit caps a page (1000 when zero); DefaultLimit is the page of
	// a request without a limit (100 when zero).
	MaxLimit, DefaultLimit int
}

type session struct {
	account *Account
	expires time.Time
	uses    int
}

// An Account is one MDM server in the fake's Apple Business Manager.
type Account struct {
	Tokens dep.OAuth1Tokens
	Info   dep.Account

	srv      *Server
	devices  map[string]*dep.Device
	changes  []change // the sync log
	profiles map[string]*dep.Profile
	disowned map[string]bool
	failing  map[string]bool // serials whose profile assignment answers FAILED
}

type change struct {
	serial string
	op     string
	at     time.Time
}

// New starts a fake. Close it when done.
func New() *Server {
	s := &Server{
		accounts: map[string]*Account{}, sessions: map[string]*session{}, nonces: map[string]bool{},
		calls: map[string]int{}, lastRetry: map[string]time.Time{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// AddAccount adds an MDM server and returns it; its Tokens are the server
// token to give a client.
func (s *Server) AddAccount(name string) *Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &Account{
		Tokens: dep.OAuth1Tokens{
			ConsumerKey: "CK_" + randomHex(16), ConsumerSecret: "CS_" + randomHex(16),
			AccessToken: "AT_" + randomHex(16), AccessSecret: "AS_" + randomHex(16),
			AccessTokenExpiry: time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second),
		},
		Info: dep.Account{
			ServerName: name, ServerUUID: strings.ToUpper(randomHex(16)), AdminID: "admin@example.com",
			OrgName: "Example Org", OrgEmail: "it@example.com", OrgPhone: "+1 555 0100", OrgAddress: "1 Example Way",
			OrgType: "edu", OrgVersion: "v2",
		},
		srv: s, devices: map[string]*dep.Device{}, profiles: map[string]*dep.Profile{}, disowned: map[string]bool{},
		failing: map[string]bool{},
	}
	s.accounts[a.Tokens.ConsumerKey] = a
	return a
}

// AddDevices assigns devices to the account, as an administrator does in
// Apple Business Manager; a sync reports them added.
func (a *Account) AddDevices(devices ...dep.Device) {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	for _, d := range devices {
		d := d
		if d.ProfileStatus == "" {
			d.ProfileStatus = dep.ProfileEmpty
		}
		if d.DeviceAssignedDate.IsZero() {
			d.DeviceAssignedDate = now
		}
		d.OpType, d.OpDate = "", time.Time{}
		a.devices[d.SerialNumber] = &d
		delete(a.disowned, d.SerialNumber)
		a.changes = append(a.changes, change{d.SerialNumber, dep.OpAdded, now})
	}
}

// ModifyDevice changes a device; a sync reports it modified.
func (a *Account) ModifyDevice(serial string, fn func(*dep.Device)) bool {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	d := a.devices[serial]
	if d == nil {
		return false
	}
	fn(d)
	a.changes = append(a.changes, change{serial, dep.OpModified, time.Now().UTC().Truncate(time.Second)})
	return true
}

// DeleteDevices unassigns devices from the account; a sync reports them
// deleted.
func (a *Account) DeleteDevices(serials ...string) {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	a.deleteLocked(serials...)
}

func (a *Account) deleteLocked(serials ...string) {
	now := time.Now().UTC().Truncate(time.Second)
	for _, sn := range serials {
		if a.devices[sn] != nil {
			delete(a.devices, sn)
			a.changes = append(a.changes, change{sn, dep.OpDeleted, now})
		}
	}
}

// FailAssign makes profile assignments of these serials answer FAILED
// (fail false clears it), as Apple does for a device it cannot update.
func (a *Account) FailAssign(fail bool, serials ...string) {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	for _, sn := range serials {
		a.failing[sn] = fail
	}
}

// Device returns a copy of a device, or nil.
func (a *Account) Device(serial string) *dep.Device {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	if d := a.devices[serial]; d != nil {
		c := *d
		return &c
	}
	return nil
}

// Disowned reports whether a device was disowned.
func (a *Account) Disowned(serial string) bool {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	return a.disowned[serial]
}

// Profile returns a defined profile, or nil.
func (a *Account) Profile(uuid string) *dep.Profile {
	a.srv.mu.Lock()
	defer a.srv.mu.Unlock()
	return a.profiles[uuid]
}

// A Fault is an injected failure: the next Times requests to Path
// (such as "/devices/sync"; "" for any but /session) are answered with
// Status and an error body of Code (the status text when empty), with a
// Retry-After of RetryAfter seconds when it is positive.
type Fault struct {
	Path       string
	Times      int
	Status     int
	Code       string
	RetryAfter int
}

// Inject arms a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// EchoCursor makes the next n fetch or sync responses return the cursor
// they were sent, no devices and more_to_follow set, as Apple's service has
// been seen to do.
func (s *Server) EchoCursor(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.echoes = n
}

// ExpireCursors makes every cursor issued so far EXPIRED_CURSOR.
func (s *Server) ExpireCursors() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursorsBefore = time.Now().Add(time.Millisecond)
	time.Sleep(2 * time.Millisecond)
}

// ExpireSessions ends every session: the next call with one gets 401.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// Calls returns how many requests path has had ("/session",
// "/server/devices", ...).
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// RetryAfterViolations counts requests that came sooner than a
// Retry-After the fake had asked for.
func (s *Server) RetryAfterViolations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := r.URL.Path
	s.calls[path]++
	if t, ok := s.lastRetry[path]; ok {
		if time.Now().Before(t) {
			s.violations++
		}
		delete(s.lastRetry, path)
	}
	if r.UserAgent() == "" {
		fail(w, http.StatusBadRequest, "MALFORMED_REQUEST_BODY")
		return
	}
	if path == "/session" {
		s.session(w, r)
		return
	}
	sess := s.sessions[r.Header.Get("X-ADM-Auth-Session")]
	if sess == nil || time.Now().After(sess.expires) {
		fail(w, http.StatusUnauthorized, dep.CodeUnauthorized)
		return
	}
	if r.Header.Get("X-Server-Protocol-Version") == "" {
		fail(w, http.StatusBadRequest, "MALFORMED_REQUEST_BODY")
		return
	}
	for i, f := range s.faults {
		if f.Path == "" || f.Path == path {
			if f.Times--; f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
				s.lastRetry[path] = time.Now().Add(time.Duration(f.RetryAfter) * time.Second)
			}
			code := f.Code
			if code == "" {
				code = strings.ToUpper(strings.ReplaceAll(http.StatusText(f.Status), " ", "_"))
			}
			fail(w, f.Status, code)
			return
		}
	}
	if sess.uses++; s.RotateEvery > 0 && sess.uses%s.RotateEvery == 0 {
		token := randomHex(24)
		s.sessions[token] = &session{account: sess.account, expires: time.Now().Add(s.sessionTTL())}
		delete(s.sessions, r.Header.Get("X-ADM-Auth-Session"))
		w.Header().Set("X-ADM-Auth-Session", token)
	}
	a := sess.account
	switch {
	case r.Method == http.MethodGet && path == "/account":
		writeJSON(w, a.Info)
	case r.Method == http.MethodPost && path == "/server/devices":
		s.fetch(w, r, a)
	case r.Method == http.MethodPost && path == "/devices/sync":
		s.sync(w, r, a)
	case r.Method == http.MethodPost && path == "/devices":
		s.details(w, r, a)
	case r.Method == http.MethodPost && path == "/devices/disown":
		s.disown(w, r, a)
	case r.Method == http.MethodPost && path == "/profile":
		s.defineProfile(w, r, a)
	case r.Method == http.MethodGet && path == "/profile":
		p := a.profiles[r.URL.Query().Get("profile_uuid")]
		if p == nil {
			fail(w, http.StatusBadRequest, dep.CodeProfileNotFound)
			return
		}
		writeJSON(w, p)
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && path == "/profile/devices": // nanodep sends PUT
		s.assign(w, r, a)
	case r.Method == http.MethodDelete && path == "/profile/devices":
		s.unassign(w, r, a)
	default:
		fail(w, http.StatusNotFound, "NOT_FOUND")
	}
}

func (s *Server) sessionTTL() time.Duration {
	if s.SessionTTL > 0 {
		return s.SessionTTL
	}
	return 30 * time.Minute
}

func fail(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "text/plain;charset=UTF8")
	w.WriteHeader(status)
	io.WriteString(w, code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF8")
	json.NewEncoder(w).Encode(v)
}

// session checks the OAuth 1.0a signature of GET /session (RFC 5849,
// HMAC-SHA1, parameters in the Authorization header) and starts a session.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	params, ok := parseOAuth(r.Header.Get("Authorization"))
	a := s.accounts[params["oauth_consumer_key"]]
	switch {
	case !ok || r.Method != http.MethodGet:
		fail(w, http.StatusBadRequest, "MALFORMED_REQUEST_BODY")
		return
	case a == nil || params["oauth_token"] != a.Tokens.AccessToken || params["oauth_signature_method"] != "HMAC-SHA1":
		fail(w, http.StatusUnauthorized, dep.CodeUnauthorized)
		return
	}
	ts, err := strconv.ParseInt(params["oauth_timestamp"], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		fail(w, http.StatusUnauthorized, dep.CodeUnauthorized)
		return
	}
	nonce := params["oauth_nonce"]
	if nonce == "" || s.nonces[nonce] {
		fail(w, http.StatusUnauthorized, dep.CodeUnauthorized)
		return
	}
	base := (&url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}).String()
	if want := sign(base, params, a.Tokens); !hmac.Equal([]byte(want), []byte(params["oauth_signature"])) {
		fail(w, http.StatusUnauthorized, dep.CodeUnauthorized)
		return
	}
	s.nonces[nonce] = true
	token := randomHex(24)
	s.sessions[token] = &session{account: a, expires: time.Now().Add(s.sessionTTL())}
	writeJSON(w, map[string]string{"auth_session_token": token})
}

// parseOAuth reads `OAuth k="v", k="v"` into its decoded parameters.
func parseOAuth(h string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(h, "OAuth ")
	if !ok {
		return nil, false
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return nil, false
		}
		dv, err := url.PathUnescape(v[1 : len(v)-1])
		if err != nil {
			return nil, false
		}
		params[k] = dv
	}
	return params, true
}

// sign computes the signature the client should have sent, written apart
// from the client's own code: the signature base string of RFC 5849
// section 3.4.1 over the oauth_* parameters (realm and the signature
// excluded), keyed with both secrets.
func sign(baseURL string, params map[string]string, t dep.OAuth1Tokens) string {
	enc := func(s string) string {
		return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
	}
	var keys []string
	for k := range params {
		if k != "realm" && k != "oauth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, enc(k)+"="+enc(params[k]))
	}
	base := "GET&" + enc(baseURL) + "&" + enc(strings.Join(pairs, "&"))
	mac := hmac.New(sha1.New, []byte(enc(t.ConsumerSecret)+"&"+enc(t.AccessSecret)))
	mac.Write([]byte(base))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// A cursor is opaque to clients: base64 of this JSON.
type cursor struct {
	Kind   string `json:"k"` // "fetch" or "sync"
	Pos    int    `json:"p"` // fetch: the next device index
	Seq    int    `json:"s"` // the sync log position it has seen
	Done   bool   `json:"d"` // fetch: exhausted
	Issued int64  `json:"t"` // unix nanoseconds
}

func (s *Server) encodeCursor(c cursor) string {
	c.Issued = time.Now().UnixNano()
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor, writing the error response if it is bad.
func (s *Server) decodeCursor(w http.ResponseWriter, text string) (cursor, bool) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Kind == "" {
		fail(w, http.StatusBadRequest, dep.CodeInvalidCursor)
		return c, false
	}
	ttl := s.CursorTTL
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	issued := time.Unix(0, c.Issued)
	if issued.Before(s.cursorsBefore) || time.Since(issued) > ttl {
		fail(w, http.StatusBadRequest, dep.CodeExpiredCursor)
		return c, false
	}
	return c, true
}

type cursorRequest struct {
	Cursor string `json:"cursor"`
	Limit  int    `json:"limit"`
}

func (s *Server) readCursorRequest(w http.ResponseWriter, r *http.Request) (cursorRequest, int, bool) {
	var req cursorRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && err != io.EOF {
		fail(w, http.StatusBadRequest, dep.CodeMalformedRequestBody)
		return req, 0, false
	}
	limit, max := req.Limit, s.MaxLimit
	if max <= 0 {
		max = 1000
	}
	if limit <= 0 {
		limit = s.DefaultLimit
		if limit <= 0 {
			limit = 100
		}
	}
	return req, min(limit, max), true
}

// echo answers with the cursor it was sent when an echo fault is armed.
func (s *Server) echo(w http.ResponseWriter, cur string) bool {
	if s.echoes <= 0 || cur == "" {
		return false
	}
	s.echoes--
	writeJSON(w, dep.DeviceList{Devices: []dep.Device{}, Cursor: cur, MoreToFollow: true, FetchedUntil: time.Now().UTC().Truncate(time.Second)})
	return true
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request, a *Account) {
	req, limit, ok := s.readCursorRequest(w, r)
	if !ok {
		return
	}
	c := cursor{Kind: "fetch", Seq: len(a.changes)}
	if req.Cursor != "" {
		if c, ok = s.decodeCursor(w, req.Cursor); !ok {
			return
		}
		if c.Done {
			fail(w, http.StatusBadRequest, dep.CodeExhaustedCursor)
			return
		}
		if s.echo(w, req.Cursor) {
			return
		}
	}
	serials := make([]string, 0, len(a.devices))
	for sn := range a.devices {
		serials = append(serials, sn)
	}
	sort.Strings(serials)
	page := []dep.Device{}
	for _, sn := range serials[min(c.Pos, len(serials)):min(c.Pos+limit, len(serials))] {
		page = append(page, *a.devices[sn])
	}
	c.Pos += len(page)
	c.Done = c.Pos >= len(serials)
	writeJSON(w, dep.DeviceList{Devices: page, Cursor: s.encodeCursor(c), MoreToFollow: !c.Done, FetchedUntil: time.Now().UTC().Truncate(time.Second)})
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request, a *Account) {
	req, limit, ok := s.readCursorRequest(w, r)
	if !ok {
		return
	}
	if req.Cursor == "" {
		fail(w, http.StatusBadRequest, dep.CodeCursorRequired)
		return
	}
	c, ok := s.decodeCursor(w, req.Cursor)
	if !ok || s.echo(w, req.Cursor) {
		return
	}
	page := []dep.Device{}
	seq := min(c.Seq, len(a.changes))
	for ; seq < len(a.changes) && len(page) < limit; seq++ {
		ch := a.changes[seq]
		d := dep.Device{SerialNumber: ch.serial}
		if cur := a.devices[ch.serial]; cur != nil && ch.op != dep.OpDeleted {
			d = *cur
		}
		d.OpType, d.OpDate = ch.op, ch.at
		page = append(page, d)
	}
	writeJSON(w, dep.DeviceList{Devices: page, Cursor: s.encodeCursor(cursor{Kind: "sync", Seq: seq}),
		MoreToFollow: seq < len(a.changes), FetchedUntil: time.Now().UTC().Truncate(time.Second)})
}

func readSerials(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var req struct {
		Devices []string `json:"devices"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, dep.CodeMalformedRequestBody)
		return nil, false
	}
	if len(req.Devices) == 0 {
		fail(w, http.StatusBadRequest, dep.CodeDeviceIDRequired)
		return nil, false
	}
	return req.Devices, true
}

func (s *Server) details(w http.ResponseWriter, r *http.Request, a *Account) {
	serials, ok := readSerials(w, r)
	if !ok {
		return
	}
	out := map[string]dep.Device{}
	for _, sn := range serials {
		if d := a.devices[sn]; d != nil {
			out[sn] = *d
		} else {
			out[sn] = dep.Device{SerialNumber: sn, ResponseStatus: dep.ResultNotAccessible}
		}
	}
	writeJSON(w, map[string]any{"devices": out})
}

func (s *Server) disown(w http.ResponseWriter, r *http.Request, a *Account) {
	serials, ok := readSerials(w, r)
	if !ok {
		return
	}
	out := map[string]string{}
	for _, sn := range serials {
		if a.devices[sn] == nil {
			out[sn] = dep.ResultNotAccessible
			continue
		}
		a.deleteLocked(sn)
		a.disowned[sn] = true
		out[sn] = dep.ResultSuccess
	}
	writeJSON(w, map[string]any{"devices": out})
}

func (s *Server) defineProfile(w http.ResponseWriter, r *http.Request, a *Account) {
	var p dep.Profile
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
		fail(w, http.StatusBadRequest, dep.CodeMalformedRequestBody)
		return
	}
	if p.ProfileName == "" || p.URL == "" {
		fail(w, http.StatusBadRequest, "CONFIG_NAME_REQUIRED")
		return
	}
	if u, err := url.Parse(p.URL); err != nil || u.Scheme != "https" && u.Scheme != "http" {
		fail(w, http.StatusBadRequest, "INVALID_URL")
		return
	}
	p.ProfileUUID = strings.ToUpper(randomHex(16))
	devices := p.Devices
	p.Devices = nil
	a.profiles[p.ProfileUUID] = &p
	writeJSON(w, dep.ProfileResult{ProfileUUID: p.ProfileUUID, Devices: a.assignLocked(p.ProfileUUID, devices)})
}

func (a *Account) assignLocked(uuid string, serials []string) map[string]string {
	out := map[string]string{}
	now := time.Now().UTC().Truncate(time.Second)
	for _, sn := range serials {
		d := a.devices[sn]
		switch {
		case d == nil:
			out[sn] = dep.ResultNotAccessible
			continue
		case a.failing[sn]:
			out[sn] = dep.ResultFailed
			continue
		}
		d.ProfileUUID, d.ProfileStatus, d.ProfileAssignTime = uuid, dep.ProfileAssigned, now
		a.changes = append(a.changes, change{sn, dep.OpModified, now})
		out[sn] = dep.ResultSuccess
	}
	return out
}

func (s *Server) assign(w http.ResponseWriter, r *http.Request, a *Account) {
	var req struct {
		ProfileUUID string   `json:"profile_uuid"`
		Devices     []string `json:"devices"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, dep.CodeMalformedRequestBody)
		return
	}
	switch {
	case req.ProfileUUID == "":
		fail(w, http.StatusBadRequest, dep.CodeProfileUUIDRequired)
	case a.profiles[req.ProfileUUID] == nil:
		fail(w, http.StatusBadRequest, dep.CodeProfileNotFound)
	case len(req.Devices) == 0:
		fail(w, http.StatusBadRequest, dep.CodeDeviceIDRequired)
	default:
		writeJSON(w, dep.ProfileResult{ProfileUUID: req.ProfileUUID, Devices: a.assignLocked(req.ProfileUUID, req.Devices)})
	}
}

func (s *Server) unassign(w http.ResponseWriter, r *http.Request, a *Account) {
	serials, ok := readSerials(w, r)
	if !ok {
		return
	}
	out := map[string]string{}
	now := time.Now().UTC().Truncate(time.Second)
	for _, sn := range serials {
		d := a.devices[sn]
		if d == nil {
			out[sn] = dep.ResultNotAccessible
			continue
		}
		d.ProfileUUID, d.ProfileStatus = "", dep.ProfileRemoved
		a.changes = append(a.changes, change{sn, dep.OpModified, now})
		out[sn] = dep.ResultSuccess
	}
	writeJSON(w, map[string]any{"devices": out})
}

// Devices returns n devices with serial numbers prefix00000001... and
// realistic details, for AddDevices.
func Devices(prefix string, n int) []dep.Device {
	models := []struct{ model, family, os string }{
		{"iPhone 15", "iPhone", "iOS"}, {"iPad Air", "iPad", "iOS"}, {"MacBook Air", "Mac", "OSX"},
	}
	out := make([]dep.Device, n)
	for i := range out {
		m := models[i%len(models)]
		out[i] = dep.Device{
			SerialNumber: fmt.Sprintf("%s%08d", prefix, i+1), Model: m.model, Description: m.model + " 128GB",
			Color: "SPACE GRAY", DeviceFamily: m.family, OS: m.os, DeviceAssignedBy: "admin@example.com",
		}
	}
	return out
}
