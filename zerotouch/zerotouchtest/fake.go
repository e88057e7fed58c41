// Package zerotouchtest is a fake of the Google endpoints package
// zerotouch uses, for tests: the Android Management API (signup,
// enterprises, policies, enrollment tokens, devices, commands and their
// operations, deletion with wipe) and the zero-touch customer API
// (customers, DPCs, configurations, devices, applying configurations).
// Reach it with option.WithEndpoint(fake.URL+"/") and
// option.WithoutAuthentication. It keeps state in memory, records every
// request (Requests) so tests can hold it to Google's request shapes, and
// has simulated Android devices that scan a QR payload or boot into a
// zero-touch configuration, enrol with the token, report state, obey
// commands and are wiped.
package zerotouchtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
)

// A Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  map[string][]string
	Body   []byte
}

// A Server is the fake.
type Server struct {
	URL string
	srv *httptest.Server

	mu          sync.Mutex
	enterprises map[string]*enterprise
	signups     map[string]string // signup URL name → enterprise token it hands out
	requests    []Request
	faults      []*Fault
	nextID      int

	// PushURL, when set, receives Pub/Sub push notifications (ENROLLMENT,
	// STATUS_REPORT, COMMAND) as Google's push subscription posts them.
	PushURL string

	zt *zeroTouch
}

type enterprise struct {
	e        am.Enterprise
	policies map[string]*am.Policy
	tokens   map[string]*am.EnrollmentToken // by value
	devices  map[string]*Device             // by name
	ops      map[string]*am.Operation
}

// A Fault makes the next Times requests whose path contains Path fail
// with Status (and Retry-After seconds when positive).
type Fault struct {
	Path       string
	Times      int
	Status     int
	RetryAfter int
	Message    string // "injected fault" when empty
}

// New starts a fake; Close it when done.
func New() *Server {
	s := &Server{enterprises: map[string]*enterprise{}, signups: map[string]string{}, zt: newZeroTouch()}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

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
	return append([]Request(nil), s.requests...)
}

func (s *Server) id(prefix string) string {
	s.nextID++
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s%04d%s", prefix, s.nextID, hex.EncodeToString(b))
}

// AddEnterprise creates an enterprise directly (as a completed signup
// would) and returns its name.
func (s *Server) AddEnterprise(displayName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addEnterprise(displayName).e.Name
}

func (s *Server) addEnterprise(displayName string) *enterprise {
	e := &enterprise{
		e:        am.Enterprise{Name: "enterprises/" + s.id("LC"), EnterpriseDisplayName: displayName},
		policies: map[string]*am.Policy{}, tokens: map[string]*am.EnrollmentToken{},
		devices: map[string]*Device{}, ops: map[string]*am.Operation{},
	}
	s.enterprises[e.e.Name] = e
	return e
}

// googleError writes Google's JSON error body.
func googleError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body})
	for i, f := range s.faults {
		if strings.Contains(r.URL.Path, f.Path) {
			if f.Times--; f.Times <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			}
			status := map[int]string{429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[f.Status]
			msg := f.Message
			if msg == "" {
				msg = "injected fault"
			}
			googleError(w, f.Status, status, msg)
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if strings.HasPrefix(path, "v1/customers") || strings.HasPrefix(path, "v1/partners") {
		s.serveZeroTouch(w, r, strings.TrimPrefix(path, "v1/"), body)
		return
	}
	s.serveManagement(w, r, strings.TrimPrefix(path, "v1/"), body)
}

// serveManagement answers the Android Management API paths (without the
// "v1/" prefix).
func (s *Server) serveManagement(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	q := r.URL.Query()
	parts := strings.Split(path, "/")
	switch {
	case r.Method == http.MethodPost && path == "signupUrls":
		if q.Get("projectId") == "" || q.Get("callbackUrl") == "" {
			googleError(w, 400, "INVALID_ARGUMENT", "projectId and callbackUrl are required")
			return
		}
		name := "signupUrls/" + s.id("C")
		s.signups[name] = "EAH" + s.id("")
		writeJSON(w, am.SignupUrl{Name: name, Url: "https://play.google.com/work/adminsignup?token=" + shortID(name)})
		return
	case r.Method == http.MethodPost && path == "enterprises":
		tok, ok := s.signups[q.Get("signupUrlName")]
		if q.Get("projectId") == "" || !ok || q.Get("enterpriseToken") != tok {
			googleError(w, 400, "INVALID_ARGUMENT", "unknown signup URL or enterprise token")
			return
		}
		var in am.Enterprise
		if json.Unmarshal(body, &in) != nil {
			googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
			return
		}
		delete(s.signups, q.Get("signupUrlName"))
		e := s.addEnterprise(in.EnterpriseDisplayName)
		e.e.PubsubTopic, e.e.EnabledNotificationTypes = in.PubsubTopic, in.EnabledNotificationTypes
		writeJSON(w, e.e)
		return
	}
	if len(parts) < 2 || parts[0] != "enterprises" {
		googleError(w, 404, "NOT_FOUND", "unknown path "+path)
		return
	}
	e := s.enterprises["enterprises/"+parts[1]]
	if e == nil {
		googleError(w, 404, "NOT_FOUND", "Enterprise not found.")
		return
	}
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		writeJSON(w, e.e)
	case len(parts) == 4 && parts[2] == "policies":
		s.policy(w, r, e, path, body)
	case len(parts) == 3 && parts[2] == "enrollmentTokens" && r.Method == http.MethodPost:
		s.createToken(w, e, body)
	case len(parts) == 4 && parts[2] == "enrollmentTokens" && r.Method == http.MethodDelete:
		for v, t := range e.tokens {
			if t.Name == path {
				delete(e.tokens, v)
				writeJSON(w, struct{}{})
				return
			}
		}
		googleError(w, 404, "NOT_FOUND", "Enrollment token not found.")
	case len(parts) == 3 && parts[2] == "devices" && r.Method == http.MethodGet:
		s.listDevices(w, e, q)
	case len(parts) == 4 && parts[2] == "devices":
		s.device(w, r, e, path, body)
	case len(parts) == 6 && parts[2] == "devices" && parts[4] == "operations" && r.Method == http.MethodGet:
		op := e.ops[path]
		if op == nil {
			googleError(w, 404, "NOT_FOUND", "Operation not found.")
			return
		}
		writeJSON(w, op)
	default:
		googleError(w, 404, "NOT_FOUND", "unknown path "+path)
	}
}

func shortID(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

func (s *Server) policy(w http.ResponseWriter, r *http.Request, e *enterprise, name string, body []byte) {
	switch r.Method {
	case http.MethodPatch:
		var p am.Policy
		if json.Unmarshal(body, &p) != nil {
			googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
			return
		}
		version := int64(1)
		if old := e.policies[name]; old != nil {
			version = old.Version + 1
		}
		p.Name, p.Version = name, version
		e.policies[name] = &p
		writeJSON(w, p)
	case http.MethodGet:
		if p := e.policies[name]; p != nil {
			writeJSON(w, p)
			return
		}
		googleError(w, 404, "NOT_FOUND", "Policy not found.")
	case http.MethodDelete:
		delete(e.policies, name)
		writeJSON(w, struct{}{})
	default:
		googleError(w, 405, "INVALID_ARGUMENT", "method not allowed")
	}
}

func (s *Server) createToken(w http.ResponseWriter, e *enterprise, body []byte) {
	var t am.EnrollmentToken
	if json.Unmarshal(body, &t) != nil {
		googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
		return
	}
	if t.PolicyName != "" && e.policies[t.PolicyName] == nil {
		googleError(w, 400, "INVALID_ARGUMENT", "Policy "+t.PolicyName+" not found.")
		return
	}
	d := time.Hour
	if t.Duration != "" {
		secs, err := strconv.ParseFloat(strings.TrimSuffix(t.Duration, "s"), 64)
		if err != nil || !strings.HasSuffix(t.Duration, "s") || secs <= 0 {
			googleError(w, 400, "INVALID_ARGUMENT", "Invalid duration "+t.Duration)
			return
		}
		d = time.Duration(secs * float64(time.Second))
	}
	value := strings.ToUpper(s.id("")[:10])
	t.Name = e.e.Name + "/enrollmentTokens/" + s.id("")
	t.Value = value
	t.ExpirationTimestamp = time.Now().Add(d).UTC().Format(time.RFC3339Nano)
	t.Duration = fmt.Sprintf("%ds", int64(d/time.Second))
	if t.AllowPersonalUsage == "" {
		t.AllowPersonalUsage = "PERSONAL_USAGE_ALLOWED"
	}
	qr, _ := json.Marshal(map[string]any{
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME":            "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM":        "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": "https://play.google.com/managed/downloadManagingApp?identifier=setup",
		"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE":                    map[string]string{"com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN": value},
	})
	t.QrCode = string(qr)
	e.tokens[value] = &t
	writeJSON(w, t)
}

func (s *Server) listDevices(w http.ResponseWriter, e *enterprise, q map[string][]string) {
	size := 100
	if v, err := strconv.Atoi(first(q["pageSize"])); err == nil && v > 0 {
		size = min(v, 100)
	}
	names := make([]string, 0, len(e.devices))
	for n := range e.devices {
		names = append(names, n)
	}
	sort.Strings(names)
	start := 0
	if tok := first(q["pageToken"]); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			googleError(w, 400, "INVALID_ARGUMENT", "Invalid page token.")
			return
		}
		start = sort.SearchStrings(names, string(b))
	}
	resp := am.ListDevicesResponse{}
	for _, n := range names[start:min(start+size, len(names))] {
		resp.Devices = append(resp.Devices, e.devices[n].state())
	}
	if start+size < len(names) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(names[start+size]))
	}
	writeJSON(w, resp)
}

func q(r *http.Request, key string) string { return r.URL.Query().Get(key) }

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (s *Server) device(w http.ResponseWriter, r *http.Request, e *enterprise, name string, body []byte) {
	devName, verb, _ := strings.Cut(name, ":")
	d := e.devices[devName]
	if d == nil {
		googleError(w, 404, "NOT_FOUND", "Device not found.")
		return
	}
	switch {
	case r.Method == http.MethodGet && verb == "":
		writeJSON(w, d.state())
	case r.Method == http.MethodPost && verb == "issueCommand":
		var c am.Command
		if json.Unmarshal(body, &c) != nil || c.Type == "" || c.Type == "COMMAND_TYPE_UNSPECIFIED" {
			googleError(w, 400, "INVALID_ARGUMENT", "Invalid command.")
			return
		}
		c.CreateTime = time.Now().UTC().Format(time.RFC3339Nano)
		meta, _ := json.Marshal(map[string]any{"@type": "type.googleapis.com/google.android.devicemanagement.v1.Command", "type": c.Type, "createTime": c.CreateTime})
		op := &am.Operation{Name: devName + "/operations/" + s.id(""), Metadata: meta}
		e.ops[op.Name] = op
		d.pending = append(d.pending, pendingCommand{op: op.Name, cmd: c})
		writeJSON(w, op)
	case r.Method == http.MethodPatch && verb == "":
		var in am.Device
		mask := q(r, "updateMask")
		if json.Unmarshal(body, &in) != nil || mask != "policyName" || !strings.HasPrefix(in.PolicyName, e.e.Name+"/policies/") {
			googleError(w, 400, "INVALID_ARGUMENT", "this fake patches policyName only, with updateMask=policyName and an enterprise policy")
			return
		}
		if e.policies[in.PolicyName] == nil {
			googleError(w, 400, "INVALID_ARGUMENT", "Policy "+in.PolicyName+" not found.")
			return
		}
		d.policyName = in.PolicyName
		writeJSON(w, d.state())
	case r.Method == http.MethodDelete && verb == "":
		d.deleted, d.wipeFlags, d.wipeReason = true, r.URL.Query()["wipeDataFlags"], r.URL.Query().Get("wipeReasonMessage")
		delete(e.devices, devName)
		writeJSON(w, struct{}{})
	default:
		googleError(w, 400, "INVALID_ARGUMENT", "unsupported device call")
	}
}

// Enterprise returns the state of an enterprise's policies and tokens, for
// tests.
func (s *Server) Policy(name string) *am.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.enterprises {
		if p := e.policies[name]; p != nil {
			c := *p
			return &c
		}
	}
	return nil
}

// Token returns an enrollment token by value, or nil.
func (s *Server) Token(value string) *am.EnrollmentToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.enterprises {
		if t := e.tokens[value]; t != nil {
			c := *t
			return &c
		}
	}
	return nil
}

// CompleteSignup is the administrator finishing the signup at a signup
// URL: it returns the enterpriseToken Google passes to the callback URL.
func (s *Server) CompleteSignup(signupURLName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signups[signupURLName]
}
