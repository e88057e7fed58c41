package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
)

// fileGoogle holds the Google Workspace sync settings, the service
// account key sealed.
const fileGoogle = "google.json"

// newDirectory wires the identity-provider side of the server: the SCIM
// service provider and the directory that mirrors it.
func (s *server) newDirectory() {
	s.life.EnrollmentProfile = s.profile.Profile.Identifier
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_directory_events_total",
		Help: "Directory events by action: users created, deactivated…, offboardings started, done, cancelled (what the audit log records).",
	}, []string{"action"})
	s.reg.MustRegister(events)
	s.dir = &directory.Directory{
		Lifecycle: s.life, Store: countingStore{s.st.Directory, events}, Logger: s.log,
		Android: func() *enroll.Android { a, _, _ := s.androidUnchecked(); return a },
	}
	s.scim = &scim.Server{
		Store: s.st.SCIM, BaseURL: s.baseURL + "/scim/v2", Logger: s.log,
		Changed: s.dir.SCIMChanged(s.st.SCIM),
	}
}

// countingStore counts the audit log's entries by action.
type countingStore struct {
	directory.Store
	events *prometheus.CounterVec
}

func (c countingStore) Audit(ctx context.Context, entries ...*directory.AuditEntry) error {
	err := c.Store.Audit(ctx, entries...)
	if err == nil {
		for _, e := range entries {
			c.events.WithLabelValues(e.Action).Inc()
		}
	}
	return err
}

// runDirectory repairs the SCIM mirror (a change the server stopped
// before applying), then carries out due offboardings and Google syncs
// until ctx ends.
func (s *server) runDirectory(ctx context.Context) {
	if st, err := s.dir.SyncSCIM(ctx, s.st.SCIM, "scim (start-up)"); err != nil {
		s.log.Error("directory: SCIM mirror at start-up", "err", err)
	} else if st.Created+st.Updated+st.Deactivated+st.Reactivated+st.Unlinked > 0 {
		s.log.Info("directory: SCIM mirror repaired at start-up", "stats", st)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.dir.Run(ctx, s.offboardingInterval) }()
	s.google.run(ctx, s)
	wg.Wait()
}

// googleSettings are the Google Workspace sync settings.
type googleSettings struct {
	directory.GoogleConfig
	Credentials string `json:"-"` // the service account's JSON key, sealed at rest
	// Every is how often to sync ("1h"); empty syncs only when asked.
	Every string `json:"every,omitempty"`
	// Endpoint overrides Google's (for tests against a fake).
	Endpoint string `json:"endpoint,omitempty"`
}

func (g *googleSettings) secret() *string { return &g.Credentials }

// googleSync runs Google Workspace syncs one at a time and remembers the
// last one.
type googleSync struct {
	mu      sync.Mutex // held by a sync under way
	wake    chan struct{}
	stateMu sync.Mutex
	last    googleStatus
}

type googleStatus struct {
	Configured bool             `json:"configured"`
	Every      string           `json:"every,omitempty"`
	Subject    string           `json:"subject,omitempty"`
	Groups     []string         `json:"groups,omitempty"`
	OrgUnits   []string         `json:"org_units,omitempty"`
	LastSync   time.Time        `json:"last_sync,omitzero"`
	LastError  string           `json:"last_error,omitempty"`
	Users      int              `json:"users"`
	GroupCount int              `json:"group_count"`
	Stats      *directory.Stats `json:"stats,omitempty"`
	Took       string           `json:"took,omitempty"`
}

// sync reads the directory and applies it.
func (g *googleSync) sync(ctx context.Context, s *server) (*googleStatus, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, err := loadSealed(s.data, fileGoogle, (*googleSettings).secret)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: Google Workspace sync is not set up (custody google set)", enroll.ErrInvalid)
	}
	start := time.Now()
	cfg := st.GoogleConfig
	cfg.CredentialsJSON = []byte(st.Credentials)
	var opts []option.ClientOption
	if st.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimRight(st.Endpoint, "/")+"/"))
	}
	people, groups, err := directory.FetchGoogle(ctx, cfg, opts...)
	var stats *directory.Stats
	if err == nil {
		stats, err = s.dir.Sync(ctx, directory.SourceGoogle, people, groups, false, "google sync")
	}
	g.stateMu.Lock()
	defer g.stateMu.Unlock()
	g.last.LastSync, g.last.Took, g.last.Stats = time.Now().UTC(), time.Since(start).Round(time.Millisecond).String(), stats
	g.last.LastError = ""
	if err != nil {
		g.last.LastError = err.Error()
		s.log.Error("google: sync", "err", err)
		return nil, err
	}
	g.last.Users, g.last.GroupCount = len(people), len(groups)
	s.log.Info("google: synced", "users", len(people), "groups", len(groups), "stats", stats, "took", g.last.Took)
	out := g.last
	return &out, nil
}

// status returns the settings (without the key) and the last sync.
func (g *googleSync) status(s *server) (*googleStatus, error) {
	st, err := loadSealed(s.data, fileGoogle, (*googleSettings).secret)
	if err != nil {
		return nil, err
	}
	g.stateMu.Lock()
	out := g.last
	g.stateMu.Unlock()
	if st != nil {
		out.Configured, out.Every, out.Subject, out.Groups, out.OrgUnits = true, st.Every, st.Subject, st.Groups, st.OrgUnits
	}
	return &out, nil
}

// run syncs on the configured schedule until ctx ends; kick wakes it when
// the settings change.
func (g *googleSync) run(ctx context.Context, s *server) {
	for {
		wait := time.Duration(0)
		if st, err := loadSealed(s.data, fileGoogle, (*googleSettings).secret); err == nil && st != nil && st.Every != "" {
			if every, err := time.ParseDuration(st.Every); err == nil && every > 0 {
				wait = every
				g.stateMu.Lock()
				last := g.last.LastSync
				g.stateMu.Unlock()
				if due := time.Until(last.Add(every)); due <= 0 {
					g.sync(ctx, s)
					continue
				} else {
					wait = due
				}
			}
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-timer:
		case <-g.kick():
		}
	}
}

func (g *googleSync) kick() chan struct{} {
	g.stateMu.Lock()
	defer g.stateMu.Unlock()
	if g.wake == nil {
		g.wake = make(chan struct{}, 1)
	}
	return g.wake
}

// API

type scimTokenJSON struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Token   string    `json:"token,omitempty"` // only when minted
}

// createSCIMToken serves POST /api/v1/scim/tokens.
func (s *server) createSCIMToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 64 {
		writeError(w, http.StatusBadRequest, "name: give the token a name of 1 to 64 characters (the identity provider it is for)")
		return
	}
	t, value, err := scim.NewToken(r.Context(), s.st.SCIM, req.Name, time.Now().UTC())
	if s.failed(w, err) {
		return
	}
	s.log.Info("scim: token created", "id", t.ID, "name", t.Name)
	s.audit(r.Context(), "scim-token-created", t.ID, t.Name)
	writeJSON(w, http.StatusCreated, scimTokenJSON{ID: t.ID, Name: t.Name, Created: t.Created, Token: value})
}

// listSCIMTokens serves GET /api/v1/scim/tokens.
func (s *server) listSCIMTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.st.SCIM.Tokens(r.Context())
	if s.failed(w, err) {
		return
	}
	out := []scimTokenJSON{}
	for _, t := range tokens {
		out = append(out, scimTokenJSON{ID: t.ID, Name: t.Name, Created: t.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeSCIMToken serves DELETE /api/v1/scim/tokens/{id}: the id, or a
// name that only one token has.
func (s *server) revokeSCIMToken(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	tokens, err := s.st.SCIM.Tokens(r.Context())
	if s.failed(w, err) {
		return
	}
	var match []*scim.Token
	for _, t := range tokens {
		if t.ID == ref || t.Name == ref {
			match = append(match, t)
		}
	}
	switch {
	case len(match) == 0:
		writeError(w, http.StatusNotFound, "no SCIM token "+ref)
		return
	case len(match) > 1:
		writeError(w, http.StatusConflict, fmt.Sprintf("%d tokens are named %s: give the id", len(match), ref))
		return
	}
	if s.failed(w, s.st.SCIM.DeleteToken(r.Context(), match[0].ID)) {
		return
	}
	s.log.Info("scim: token revoked", "id", match[0].ID, "name", match[0].Name)
	s.audit(r.Context(), "scim-token-revoked", match[0].ID, match[0].Name)
	writeJSON(w, http.StatusOK, scimTokenJSON{ID: match[0].ID, Name: match[0].Name, Created: match[0].Created})
}

// audit records an administrator's action in the directory's audit log.
func (s *server) audit(ctx context.Context, action, subject, detail string) {
	err := s.st.Directory.Audit(ctx, &directory.AuditEntry{At: time.Now().UTC(), Actor: "admin", Action: action, Subject: subject, Detail: detail})
	if err != nil {
		s.log.Error("audit", "action", action, "err", err)
	}
}

// getDirectorySettings serves GET /api/v1/directory/settings.
func (s *server) getDirectorySettings(w http.ResponseWriter, r *http.Request) {
	st, err := s.st.Directory.Settings(r.Context())
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// patchDirectorySettings serves PATCH /api/v1/directory/settings: the
// fields given replace the stored ones.
func (s *server) patchDirectorySettings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Scope    *[]string           `json:"scope"`
		Grace    *directory.Duration `json:"grace"`
		DryRun   *bool               `json:"dry_run"`
		Disabled *bool               `json:"disabled"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := s.st.Directory.Settings(r.Context())
	if s.failed(w, err) {
		return
	}
	if req.Scope != nil {
		st.Scope = nil
		for _, g := range *req.Scope {
			if g = strings.TrimSpace(g); g != "" {
				st.Scope = append(st.Scope, g)
			}
		}
	}
	if req.Grace != nil {
		if time.Duration(*req.Grace) > 90*24*time.Hour {
			writeError(w, http.StatusBadRequest, "grace: at most 90 days")
			return
		}
		st.Grace = *req.Grace
	}
	if req.DryRun != nil {
		st.DryRun = *req.DryRun
	}
	if req.Disabled != nil {
		st.Disabled = *req.Disabled
	}
	if s.failed(w, s.st.Directory.PutSettings(r.Context(), st)) {
		return
	}
	s.audit(r.Context(), "directory-settings", "settings", fmt.Sprintf("scope %q grace %s dry-run %v offboarding-disabled %v",
		st.Scope, time.Duration(st.Grace), st.DryRun, st.Disabled))
	writeJSON(w, http.StatusOK, st)
}

// listDirectoryGroups serves GET /api/v1/directory/groups.
func (s *server) listDirectoryGroups(w http.ResponseWriter, r *http.Request) {
	out := []*directory.GroupRecord{}
	err := s.st.Directory.Groups(r.Context(), func(g *directory.GroupRecord) bool { out = append(out, g); return true })
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// listAudit serves GET /api/v1/directory/audit?after=SEQ&limit=N.
func (s *server) listAudit(w http.ResponseWriter, r *http.Request) {
	after, limit := uint64(0), 1000
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after: not a sequence number: "+v)
			return
		}
		after = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit: give 1 to 10000")
			return
		}
		limit = n
	}
	out := []*directory.AuditEntry{}
	err := s.st.Directory.AuditLog(r.Context(), after, func(e *directory.AuditEntry) bool {
		out = append(out, e)
		return len(out) < limit
	})
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// listOffboardings serves GET /api/v1/offboardings?state=S.
func (s *server) listOffboardings(w http.ResponseWriter, r *http.Request) {
	state := directory.OffboardingState(r.URL.Query().Get("state"))
	out := []*directory.Offboarding{}
	err := s.st.Directory.Offboardings(r.Context(), func(o *directory.Offboarding) bool {
		if state == "" || o.State == state {
			out = append(out, o)
		}
		return true
	})
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// getOffboarding serves GET /api/v1/offboardings/{id}.
func (s *server) getOffboarding(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var found *directory.Offboarding
	err := s.st.Directory.Offboardings(r.Context(), func(o *directory.Offboarding) bool {
		if o.ID == id {
			found = o
		}
		return found == nil
	})
	switch {
	case s.failed(w, err):
	case found == nil:
		writeError(w, http.StatusNotFound, "no offboarding "+id)
	default:
		writeJSON(w, http.StatusOK, found)
	}
}

// cancelOffboarding serves POST /api/v1/offboardings/{id}/cancel.
func (s *server) cancelOffboarding(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o, err := s.dir.Cancel(r.Context(), r.PathValue("id"), "admin", req.Reason)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, directory.ErrNotPending):
		writeError(w, http.StatusConflict, err.Error()+": only a pending offboarding can be cancelled")
	case !s.failed(w, err):
		writeJSON(w, http.StatusOK, o)
	}
}

type googleRequest struct {
	Credentials string   `json:"credentials"` // the service account's JSON key
	Subject     string   `json:"subject"`
	Customer    string   `json:"customer"`
	Groups      []string `json:"groups"`
	OrgUnits    []string `json:"org_units"`
	Every       string   `json:"every"`
	Endpoint    string   `json:"endpoint"`
}

// putGoogle serves PUT /api/v1/google.
func (s *server) putGoogle(w http.ResponseWriter, r *http.Request) {
	var req googleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := enroll.NormalizeEmail(req.Subject); err != nil {
		writeError(w, http.StatusBadRequest, "subject: the Workspace administrator the service account acts as: "+err.Error())
		return
	}
	if req.Credentials == "" {
		writeError(w, http.StatusBadRequest, "credentials: the service account's JSON key is required")
		return
	}
	if req.Every != "" {
		if d, err := time.ParseDuration(req.Every); err != nil || d < time.Minute {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("every: %q is not a duration of a minute or more", req.Every))
			return
		}
	}
	for _, ou := range req.OrgUnits {
		if !strings.HasPrefix(ou, "/") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("org_units: %q is not a path like /Sales", ou))
			return
		}
	}
	st := &googleSettings{GoogleConfig: directory.GoogleConfig{Subject: req.Subject, Customer: req.Customer, Groups: req.Groups, OrgUnits: req.OrgUnits},
		Credentials: req.Credentials, Every: req.Every, Endpoint: req.Endpoint}
	if _, err := google.JWTConfigFromJSON([]byte(req.Credentials)); err != nil {
		writeError(w, http.StatusBadRequest, "credentials: not a service account's JSON key: "+err.Error())
		return
	}
	if s.failed(w, saveSealed(s.data, fileGoogle, st, (*googleSettings).secret)) {
		return
	}
	s.audit(r.Context(), "google-settings", req.Subject, fmt.Sprintf("groups %q org units %q every %q", req.Groups, req.OrgUnits, req.Every))
	select {
	case s.google.kick() <- struct{}{}:
	default:
	}
	s.getGoogle(w, r)
}

// getGoogle serves GET /api/v1/google.
func (s *server) getGoogle(w http.ResponseWriter, r *http.Request) {
	st, err := s.google.status(s)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// syncGoogle serves POST /api/v1/google/sync.
func (s *server) syncGoogle(w http.ResponseWriter, r *http.Request) {
	st, err := s.google.sync(r.Context(), s)
	if err != nil && !errors.Is(err, enroll.ErrInvalid) && !errors.Is(err, enroll.ErrNotFound) {
		writeError(w, http.StatusBadGateway, "Google Workspace sync failed: "+err.Error())
		return
	}
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, st)
}
