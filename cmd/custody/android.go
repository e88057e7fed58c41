package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/zerotouch"
)

// Android in the reference server: the binding to an Android Management
// API enterprise (and a zero-touch customer), kept in the data dir, and
// the admin API over enroll.Android.

const fileAndroid = "android.json"

// androidConfig is how the server reaches Google for Android.
type androidConfig struct {
	Enterprise string `json:"enterprise,omitempty"` // enterprises/LC...
	ProjectID  string `json:"project_id,omitempty"`
	// CredentialsFile is a service-account JSON key; none with Endpoint
	// (a fake or a proxy that authenticates).
	CredentialsFile string `json:"credentials_file,omitempty"`
	Endpoint        string `json:"endpoint,omitempty"`
	Customer        string `json:"customer,omitempty"` // zero-touch customers/ID
	// PushSecret is the token parameter of the Pub/Sub push endpoint.
	PushSecret string `json:"push_secret"`
	// PendingSignup is the signup URL awaiting its callback.
	PendingSignup string `json:"pending_signup,omitempty"`
	// ZeroTouchConfig is the configuration apply uses by default.
	ZeroTouchConfig string `json:"zero_touch_config,omitempty"`
}

func (c *androidConfig) options() []option.ClientOption {
	var opts []option.ClientOption
	if c.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimRight(c.Endpoint, "/")+"/"))
	}
	if c.CredentialsFile != "" {
		opts = append(opts, option.WithCredentialsFile(c.CredentialsFile),
			option.WithScopes(zerotouch.ManagementScope, zerotouch.ProvisioningScope))
	} else {
		opts = append(opts, option.WithoutAuthentication())
	}
	return opts
}

// androidState is the server's Android binding: nil until bound.
type androidState struct {
	mu  sync.Mutex
	cfg *androidConfig
	a   *enroll.Android
}

func (d *dataDir) loadAndroid() (*androidConfig, error) {
	var c androidConfig
	ok, err := readJSONFile(d.file(fileAndroid), &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

func (d *dataDir) saveAndroid(c *androidConfig) error {
	return writeJSONFile(d.file(fileAndroid), c)
}

// setAndroid builds the clients of a configuration and installs them.
func (s *server) setAndroid(cfg *androidConfig) error {
	if cfg.PushSecret == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.PushSecret = hex.EncodeToString(b)
	}
	ctx := context.Background()
	m, err := zerotouch.NewManagement(ctx, cfg.Enterprise, cfg.options()...)
	if err != nil {
		return err
	}
	a := &enroll.Android{Lifecycle: s.life, Management: m, Logger: s.log}
	if cfg.Customer != "" {
		if a.Provisioning, err = zerotouch.NewProvisioning(ctx, cfg.Customer, cfg.options()...); err != nil {
			return err
		}
	}
	s.android.mu.Lock()
	s.android.cfg, s.android.a = cfg, a
	s.android.mu.Unlock()
	return nil
}

// androidNow returns the binding, or writes a 409 when there is none.
func (s *server) androidNow(w http.ResponseWriter) (*enroll.Android, *androidConfig, bool) {
	s.android.mu.Lock()
	defer s.android.mu.Unlock()
	if s.android.a == nil || s.android.cfg.Enterprise == "" {
		writeError(w, http.StatusConflict, "no Android enterprise bound: custody android bind")
		return nil, nil, false
	}
	return s.android.a, s.android.cfg, true
}

type androidBindRequest struct {
	Enterprise      string `json:"enterprise,omitempty"`
	ProjectID       string `json:"project_id,omitempty"`
	CredentialsFile string `json:"credentials_file,omitempty"`
	Endpoint        string `json:"endpoint,omitempty"`
	Customer        string `json:"customer,omitempty"`
}

type androidStatusJSON struct {
	Enterprise  string `json:"enterprise,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Customer    string `json:"customer,omitempty"`
	PushURL     string `json:"push_url,omitempty"`
	SignupURL   string `json:"signup_url,omitempty"`
	Policies    int    `json:"policies,omitempty"`
}

func (s *server) pushURL(cfg *androidConfig) string {
	return s.baseURL + "/android/pubsub?token=" + cfg.PushSecret
}

// androidBind serves POST /api/v1/android/bind: an existing enterprise by
// name, or, with a project alone, a signup URL whose callback
// (/android/callback) creates the enterprise.
func (s *server) androidBind(w http.ResponseWriter, r *http.Request) {
	var req androidBindRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Enterprise == "" && req.ProjectID == "" {
		writeError(w, http.StatusBadRequest, "give an enterprise (enterprises/...) or a project_id to sign up a new one")
		return
	}
	if req.Enterprise != "" && !strings.HasPrefix(req.Enterprise, "enterprises/") {
		writeError(w, http.StatusBadRequest, "enterprise: want enterprises/ID")
		return
	}
	if req.CredentialsFile != "" {
		if _, err := os.Stat(req.CredentialsFile); err != nil {
			writeError(w, http.StatusBadRequest, "credentials_file: "+err.Error())
			return
		}
	}
	cfg := &androidConfig{Enterprise: req.Enterprise, ProjectID: req.ProjectID, CredentialsFile: req.CredentialsFile,
		Endpoint: req.Endpoint, Customer: req.Customer}
	if old, _ := s.data.loadAndroid(); old != nil {
		cfg.PushSecret = old.PushSecret
	}
	if err := s.setAndroid(cfg); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, _, _ := s.androidUnchecked()
	out := androidStatusJSON{Customer: cfg.Customer, PushURL: s.pushURL(cfg)}
	if cfg.Enterprise == "" {
		su, err := a.Management.SignupURL(r.Context(), cfg.ProjectID, s.baseURL+"/android/callback", "")
		if s.failed(w, err) {
			return
		}
		cfg.PendingSignup = su.Name
		out.SignupURL = su.Url
	} else {
		ent, err := a.Management.GetEnterprise(r.Context())
		if s.failed(w, err) {
			return
		}
		out.Enterprise, out.DisplayName = ent.Name, ent.EnterpriseDisplayName
		if out.Policies, err = a.SyncPolicies(r.Context()); s.failed(w, err) {
			return
		}
	}
	if err := s.data.saveAndroid(cfg); err != nil {
		writeError(w, http.StatusInternalServerError, "could not store the Android binding")
		return
	}
	s.log.Info("android: bound", "enterprise", cfg.Enterprise, "customer", cfg.Customer, "signup", cfg.PendingSignup)
	writeJSON(w, http.StatusOK, out)
}

func (s *server) androidUnchecked() (*enroll.Android, *androidConfig, bool) {
	s.android.mu.Lock()
	defer s.android.mu.Unlock()
	return s.android.a, s.android.cfg, s.android.a != nil
}

// androidCallback serves GET /android/callback: Google's redirect after
// the administrator signed up, with the enterpriseToken.
func (s *server) androidCallback(w http.ResponseWriter, r *http.Request) {
	a, cfg, ok := s.androidUnchecked()
	token := r.URL.Query().Get("enterpriseToken")
	if !ok || cfg.PendingSignup == "" || token == "" {
		http.Error(w, "no Android signup is waiting for this callback", http.StatusBadRequest)
		return
	}
	ent, err := a.Management.CreateEnterprise(r.Context(), cfg.ProjectID, cfg.PendingSignup, token, &am.Enterprise{})
	if err != nil {
		s.log.Error("android: create enterprise", "err", err)
		http.Error(w, "Google refused to create the enterprise: "+err.Error(), http.StatusBadGateway)
		return
	}
	s.android.mu.Lock()
	cfg.Enterprise, cfg.PendingSignup = ent.Name, ""
	s.android.mu.Unlock()
	if err := s.data.saveAndroid(cfg); err != nil {
		http.Error(w, "could not store the binding", http.StatusInternalServerError)
		return
	}
	a.SyncPolicies(r.Context())
	s.log.Info("android: enterprise created", "enterprise", ent.Name)
	fmt.Fprintf(w, "Custody is bound to %s. You can close this page.\n", ent.Name)
}

type androidTokenRequest struct {
	Serial string `json:"serial,omitempty"`
	Email  string `json:"email,omitempty"`
	TTL    string `json:"ttl,omitempty"`
}

// androidToken serves POST /api/v1/android/tokens.
func (s *server) androidToken(w http.ResponseWriter, r *http.Request) {
	var req androidTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, msg := validateMint(req.TTL, "", "")
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	a, _, ok := s.androidNow(w)
	if !ok {
		return
	}
	if req.Serial == "" {
		if err := s.life.CheckMint(r.Context(), enroll.UserRef(strings.ToLower(req.Email))); errors.Is(err, enroll.ErrRestricted) {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
	}
	t, err := a.Token(r.Context(), req.Serial, req.Email, ttl)
	if s.failed(w, err) {
		return
	}
	s.log.Info("android: token minted", "name", t.Name, "for", t.For, "policy", t.Policy)
	writeJSON(w, http.StatusCreated, t)
}

// androidSync serves POST /api/v1/android/sync: policies put, devices
// listed and bound.
func (s *server) androidSync(w http.ResponseWriter, r *http.Request) {
	a, _, ok := s.androidNow(w)
	if !ok {
		return
	}
	policies, err := a.SyncPolicies(r.Context())
	if s.failed(w, err) {
		return
	}
	seen, refused, err := a.Sync(r.Context())
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"policies": policies, "devices": seen, "refused": refused})
}

// androidPush serves POST /android/pubsub: Google's Pub/Sub push
// subscription, authenticated by the secret in its URL.
func (s *server) androidPush(w http.ResponseWriter, r *http.Request) {
	a, cfg, ok := s.androidUnchecked()
	if !ok {
		http.Error(w, "no Android enterprise bound", http.StatusServiceUnavailable)
		return
	}
	(&zerotouch.PushHandler{Secret: cfg.PushSecret, Handle: a.HandlePush, Logger: s.log}).ServeHTTP(w, r)
}

type zeroTouchConfigRequest struct {
	Name    string `json:"name"`
	Company string `json:"company"`
	Email   string `json:"email,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Message string `json:"message,omitempty"`
	Default bool   `json:"default,omitempty"`
}

// zeroTouchConfigure serves POST /api/v1/zerotouch/configurations: a
// token for the default policy (valid for a year, not one-time) and a
// configuration carrying it.
func (s *server) zeroTouchConfigure(w http.ResponseWriter, r *http.Request) {
	var req zeroTouchConfigRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Name == "" || req.Company == "" {
		writeError(w, http.StatusBadRequest, "name and company are required")
		return
	}
	a, cfg, ok := s.androidNow(w)
	if !ok {
		return
	}
	if a.Provisioning == nil {
		writeError(w, http.StatusConflict, "no zero-touch customer bound: custody android bind --customer customers/ID")
		return
	}
	tok, err := a.Management.CreateToken(r.Context(), zerotouch.TokenSpec{PolicyID: enroll.DefaultAndroidPolicy,
		Duration: 365 * 24 * time.Hour, PersonalUsage: zerotouch.PersonalUsageDisallowed, AdditionalData: enroll.SourceZeroTouch})
	if s.failed(w, err) {
		return
	}
	c, err := a.Provisioning.CreateConfiguration(r.Context(), zerotouch.ConfigSpec{Name: req.Name, Company: req.Company,
		ContactEmail: req.Email, ContactPhone: req.Phone, Message: req.Message, TokenValue: tok.Value, Default: req.Default})
	if s.failed(w, err) {
		return
	}
	s.android.mu.Lock()
	cfg.ZeroTouchConfig = c.Name
	s.android.mu.Unlock()
	s.data.saveAndroid(cfg)
	writeJSON(w, http.StatusCreated, map[string]string{"configuration": c.Name, "token": tok.Name})
}

type zeroTouchApplyRequest struct {
	Serial        string `json:"serial,omitempty"`
	IMEI          string `json:"imei,omitempty"`
	Manufacturer  string `json:"manufacturer,omitempty"`
	Configuration string `json:"configuration,omitempty"`
	Remove        bool   `json:"remove,omitempty"`
}

// zeroTouchApply serves POST /api/v1/zerotouch/apply.
func (s *server) zeroTouchApply(w http.ResponseWriter, r *http.Request) {
	var req zeroTouchApplyRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, cfg, ok := s.androidNow(w)
	if !ok {
		return
	}
	if a.Provisioning == nil {
		writeError(w, http.StatusConflict, "no zero-touch customer bound")
		return
	}
	id := zerotouch.DeviceID{IMEI: req.IMEI, Serial: req.Serial, Manufacturer: req.Manufacturer}
	var err error
	if req.Remove {
		err = a.Provisioning.Remove(r.Context(), id)
	} else {
		config := req.Configuration
		if config == "" {
			config = cfg.ZeroTouchConfig
		}
		if config == "" {
			writeError(w, http.StatusBadRequest, "configuration: none given and none configured (custody zerotouch configure)")
			return
		}
		err = a.Provisioning.Apply(r.Context(), config, id)
	}
	if errors.Is(err, zerotouch.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.failed(w, err) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// zeroTouchSync serves POST /api/v1/zerotouch/sync {"group": G}.
func (s *server) zeroTouchSync(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Group string `json:"group,omitempty"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, _, ok := s.androidNow(w)
	if !ok {
		return
	}
	if a.Provisioning == nil {
		writeError(w, http.StatusConflict, "no zero-touch customer bound")
		return
	}
	n, err := a.SyncZeroTouch(r.Context(), req.Group)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"devices": n})
}

// androidCommand sends an enqueue request's command to Android devices
// (serial numbers of enrolled Android records): WIPE (or EraseDevice)
// deletes the device; any other type is an Android Management command
// whose keys are the Command's fields.
func (s *server) androidCommand(w http.ResponseWriter, r *http.Request, a *enroll.Android, serials []string, requestType string, keys map[string]any) {
	out := map[string]string{}
	for _, sn := range serials {
		if requestType == "WIPE" || requestType == "EraseDevice" {
			err := a.Wipe(r.Context(), sn, "Wiped by the administrator")
			if s.failed(w, err) {
				return
			}
			out[sn] = "wiped"
			continue
		}
		raw, _ := json.Marshal(keys)
		var c am.Command
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			writeError(w, http.StatusBadRequest, "android command keys: "+err.Error())
			return
		}
		c.Type = requestType
		op, err := a.Command(r.Context(), sn, &c)
		if s.failed(w, err) {
			return
		}
		out[sn] = op.Name
	}
	writeJSON(w, http.StatusCreated, map[string]any{"request_type": requestType, "operations": out})
}
