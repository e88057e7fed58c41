package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
)

// Apple Automated Device Enrollment in the reference server: the keypair
// server tokens are encrypted to, the tokens, a syncer per token, and the
// admin API that drives them.

const (
	fileDEPCert = "dep.pem" // the public key uploaded to Apple Business Manager
	fileDEPKey  = "dep.key"
	// depKeyValidity: Apple Business Manager takes the certificate once,
	// to encrypt the token; the key must outlive the token (a year).
	depKeyValidity = 5 * 365 * 24 * time.Hour
)

// depKeyPair returns the data dir's ADE keypair, creating it on first use.
func (d *dataDir) depKeyPair() (*x509.Certificate, crypto.Signer, error) {
	cert, key, err := loadPair(d.file(fileDEPCert), d.file(fileDEPKey))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return cert, key, err
	}
	c, k, err := dep.NewKeyPair("custody-ade", depKeyValidity)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(d.file(fileDEPKey), pemKey(k), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(d.file(fileDEPCert), pemCert(c), 0o644); err != nil {
		return nil, nil, err
	}
	return c, k, nil
}

// depRunner syncs one token: periodically, and on demand through the API.
// mu serialises its syncs.
type depRunner struct {
	mu     sync.Mutex
	tok    *dep.Token
	client *dep.Client
	last   *enroll.ADEStats
	lastAt time.Time
	err    error
}

// depManager holds the runners of the server's tokens.
type depManager struct {
	s        *server
	interval time.Duration
	ctx      context.Context // the server's lifetime, set by start

	mu      sync.Mutex
	runners map[string]*depRunner
}

func (m *depManager) client(tok *dep.Token) *dep.Client {
	return dep.NewClient(tok.OAuth, dep.Options{BaseURL: tok.BaseURL, Logger: m.s.log})
}

// start begins syncing every stored token until ctx ends. Each token's
// sync runs under a lease, on one of the servers sharing the database, and
// every server looks for tokens another has stored at each interval.
func (m *depManager) start(ctx context.Context) error {
	m.ctx = ctx
	if err := m.load(ctx); err != nil {
		return err
	}
	if m.interval > 0 {
		go func() {
			t := time.NewTicker(m.interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if err := m.load(ctx); err != nil && ctx.Err() == nil {
					m.s.log.Warn("ade: reading tokens", "err", err)
				}
			}
		}()
	}
	return nil
}

// load installs a runner for each stored token, or updates its token.
func (m *depManager) load(ctx context.Context) error {
	var toks []*dep.Token
	if err := m.s.st.DEP.Tokens(ctx, func(t *dep.Token) bool { toks = append(toks, t); return true }); err != nil {
		return err
	}
	for _, t := range toks {
		m.add(t)
	}
	return nil
}

// add installs (or replaces) a token's runner and starts its loop.
func (m *depManager) add(tok *dep.Token) *depRunner {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runners == nil {
		m.runners = map[string]*depRunner{}
	}
	if r := m.runners[tok.Name]; r != nil {
		r.mu.Lock()
		if !tok.UpdatedAt.Equal(r.tok.UpdatedAt) || tok.DefaultProfile != r.tok.DefaultProfile || tok.Group != r.tok.Group {
			r.tok, r.client = tok, m.client(tok)
		}
		r.mu.Unlock()
		return r
	}
	r := &depRunner{tok: tok, client: m.client(tok)}
	m.runners[tok.Name] = r
	if m.ctx != nil && m.interval > 0 {
		go m.s.underLease(m.ctx, "ade:"+tok.Name, func(ctx context.Context) { m.loop(ctx, r) })
	}
	return r
}

func (m *depManager) loop(ctx context.Context, r *depRunner) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.sync(ctx, r, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync runs one round for a runner's token.
func (m *depManager) sync(ctx context.Context, r *depRunner, full bool) (*enroll.ADEStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := m.s.ade.Sync(ctx, r.tok, r.client, full)
	r.last, r.lastAt, r.err = st, time.Now().UTC(), err
	if err != nil && ctx.Err() == nil {
		m.s.log.Error("ade: sync", "token", r.tok.Name, "err", err, "stats", st)
	} else if err == nil {
		m.s.log.Info("ade: synced", "token", r.tok.Name, "stats", st)
	}
	return st, err
}

// runner returns the runner of a token by name, or the only one when name
// is empty.
func (m *depManager) runner(name string) (*depRunner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == "" {
		if len(m.runners) == 1 {
			for _, r := range m.runners {
				return r, nil
			}
		}
		if len(m.runners) == 0 {
			return nil, fmt.Errorf("%w: no ADE server token uploaded", dep.ErrNotFound)
		}
		return nil, errSeveralTokens
	}
	if r := m.runners[name]; r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("%w: no ADE server token named %q", dep.ErrNotFound, name)
}

func (m *depManager) all() []*depRunner {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*depRunner, 0, len(m.runners))
	for _, r := range m.runners {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *depRunner) int { return strings.Compare(a.tok.Name, b.tok.Name) })
	return out
}

func (s *server) depKeyPair(w http.ResponseWriter, r *http.Request) {
	cert, _, err := s.data.depKeyPair()
	if err != nil {
		s.log.Error("ade keypair", "err", err)
		writeError(w, http.StatusInternalServerError, "could not create the ADE keypair")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pem": string(pemCert(cert)), "not_after": cert.NotAfter})
}

type depTokenRequest struct {
	Name    string `json:"name"`
	Token   []byte `json:"token"` // the .p7m, or the decrypted JSON
	BaseURL string `json:"base_url,omitempty"`
	Group   string `json:"group,omitempty"`
}

// uploadDEPToken serves POST /api/v1/dep/tokens: it decrypts the token
// (or reads a decrypted one), checks it with GET /account, stores it and
// starts syncing it.
func (s *server) uploadDEPToken(w http.ResponseWriter, r *http.Request) {
	var req depTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Name == "" || len(req.Name) > 64 || strings.ContainsAny(req.Name, "/ \x00") {
		writeError(w, http.StatusBadRequest, "name: give 1 to 64 characters without spaces or slashes")
		return
	}
	if len(req.Token) == 0 {
		writeError(w, http.StatusBadRequest, "token: give the .p7m from Apple Business Manager or the decrypted JSON")
		return
	}
	oauth, err := dep.ParseToken(req.Token)
	if err != nil {
		cert, key, kerr := s.data.depKeyPair()
		if kerr != nil {
			s.log.Error("ade keypair", "err", kerr)
			writeError(w, http.StatusInternalServerError, "could not read the ADE keypair")
			return
		}
		oauth, err = dep.DecryptToken(req.Token, cert, key)
	}
	if s.failed(w, err) {
		return
	}
	tok := &dep.Token{Name: req.Name, OAuth: *oauth, BaseURL: strings.TrimRight(req.BaseURL, "/"), Group: req.Group}
	now := time.Now().UTC()
	if old, err := s.st.DEP.Token(r.Context(), req.Name); err == nil {
		tok.DefaultProfile, tok.CreatedAt = old.DefaultProfile, old.CreatedAt
		if tok.Group == "" {
			tok.Group = old.Group
		}
	} else {
		tok.CreatedAt = now
	}
	tok.UpdatedAt = now
	acct, err := s.dep.client(tok).Account(r.Context())
	if s.failed(w, err) {
		return
	}
	tok.Account = acct
	if err := s.st.DEP.PutToken(r.Context(), tok); err != nil {
		s.log.Error("ade token", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the token")
		return
	}
	s.dep.add(tok)
	s.log.Info("ade: server token stored", "name", tok.Name, "server", acct.ServerName, "org", acct.OrgName, "expires", oauth.AccessTokenExpiry)
	writeJSON(w, http.StatusCreated, depTokenJSON(tok, nil))
}

type depStatusJSON struct {
	Name           string           `json:"name"`
	BaseURL        string           `json:"base_url,omitempty"`
	Server         string           `json:"server,omitempty"`
	Org            string           `json:"org,omitempty"`
	TokenExpiry    time.Time        `json:"token_expiry"`
	DefaultProfile string           `json:"default_profile,omitempty"`
	Group          string           `json:"group,omitempty"`
	Fetched        bool             `json:"fetched"`
	CursorAt       time.Time        `json:"cursor_updated_at,omitzero"`
	LastSync       time.Time        `json:"last_sync,omitzero"`
	LastError      string           `json:"last_error,omitempty"`
	LastStats      *enroll.ADEStats `json:"last_stats,omitempty"`
	Devices        int              `json:"devices"`
	ProfileOK      int              `json:"profile_assigned"`
	AssignFailed   int              `json:"assign_failed"`
	Deleted        int              `json:"deleted"`
	Enrolled       int              `json:"enrolled"`
}

func depTokenJSON(t *dep.Token, r *depRunner) depStatusJSON {
	j := depStatusJSON{Name: t.Name, BaseURL: t.BaseURL, TokenExpiry: t.OAuth.AccessTokenExpiry, DefaultProfile: t.DefaultProfile, Group: t.Group}
	if t.Account != nil {
		j.Server, j.Org = t.Account.ServerName, t.Account.OrgName
	}
	if r != nil {
		j.LastSync, j.LastStats = r.lastAt, r.last
		if r.err != nil {
			j.LastError = r.err.Error()
		}
	}
	return j
}

// depStatus serves GET /api/v1/dep/status: each token with its account,
// cursor, last sync and device counts.
func (s *server) depStatus(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	out := []depStatusJSON{}
	index := map[string]int{}
	for _, run := range s.dep.all() {
		run.mu.Lock()
		j := depTokenJSON(run.tok, run)
		run.mu.Unlock()
		if c, err := s.st.DEP.Cursor(ctx, j.Name); err == nil {
			j.Fetched, j.CursorAt = c.Fetched, c.UpdatedAt
		}
		index[j.Name] = len(out)
		out = append(out, j)
	}
	err := s.st.Records.Records(ctx, func(rec *enroll.Record) bool {
		if rec.ADE == nil {
			return true
		}
		i, ok := index[rec.ADE.Token]
		if !ok {
			return true
		}
		j := &out[i]
		j.Devices++
		switch {
		case !rec.ADE.DeletedAt.IsZero():
			j.Deleted++
		case j.DefaultProfile != "" && rec.ADE.ProfileUUID == j.DefaultProfile:
			j.ProfileOK++
		case rec.ADE.AssignResult != "" && rec.ADE.AssignResult != dep.ResultSuccess:
			j.AssignFailed++
		}
		if rec.Status == enroll.StatusEnrolled {
			j.Enrolled++
		}
		return true
	})
	if err != nil {
		s.log.Error("ade status", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read records")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

type depSyncRequest struct {
	Name string `json:"name,omitempty"`
	Full bool   `json:"full,omitempty"`
}

// depSync serves POST /api/v1/dep/sync: a round now, answered with its
// stats.
func (s *server) depSync(w http.ResponseWriter, r *http.Request) {
	var req depSyncRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	run, err := s.dep.runner(req.Name)
	if s.failed(w, err) {
		return
	}
	st, err := s.dep.sync(r.Context(), run, req.Full)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": run.tok.Name, "stats": st})
}

type depProfileRequest struct {
	Name    string          `json:"name,omitempty"`
	Profile json.RawMessage `json:"profile"`
	// Default makes it the profile new devices get (the first profile
	// defined becomes the default anyway).
	Default bool `json:"default,omitempty"`
}

// depDefineProfile serves POST /api/v1/dep/profiles.
func (s *server) depDefineProfile(w http.ResponseWriter, r *http.Request) {
	var req depProfileRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var p dep.Profile
	dec := json.NewDecoder(strings.NewReader(string(req.Profile)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		writeError(w, http.StatusBadRequest, "profile: "+err.Error())
		return
	}
	if p.ProfileName == "" {
		writeError(w, http.StatusBadRequest, "profile: profile_name is required")
		return
	}
	if p.URL == "" {
		p.URL = s.baseURL + "/ade/enroll"
	}
	run, err := s.dep.runner(req.Name)
	if s.failed(w, err) {
		return
	}
	res, err := run.client.DefineProfile(r.Context(), &p)
	if s.failed(w, err) {
		return
	}
	run.mu.Lock()
	tok := *run.tok
	if req.Default || tok.DefaultProfile == "" {
		tok.DefaultProfile, tok.UpdatedAt = res.ProfileUUID, time.Now().UTC()
		if err := s.st.DEP.PutToken(r.Context(), &tok); err != nil {
			run.mu.Unlock()
			writeError(w, http.StatusInternalServerError, "could not store the token")
			return
		}
		run.tok = &tok
	}
	run.mu.Unlock()
	s.log.Info("ade: profile defined", "token", tok.Name, "profile", res.ProfileUUID, "default", tok.DefaultProfile == res.ProfileUUID, "url", p.URL)
	writeJSON(w, http.StatusCreated, map[string]any{"profile_uuid": res.ProfileUUID, "default": tok.DefaultProfile == res.ProfileUUID,
		"url": p.URL, "devices": res.Devices})
}

type depSerialsRequest struct {
	Name    string   `json:"name,omitempty"`
	Profile string   `json:"profile,omitempty"` // assign: the token's default when empty
	Serials []string `json:"serials"`
}

func (s *server) depSerials(w http.ResponseWriter, r *http.Request) (*depSerialsRequest, *depRunner, bool) {
	var req depSerialsRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	if len(req.Serials) == 0 || len(req.Serials) > 1000 {
		writeError(w, http.StatusBadRequest, "serials: give 1 to 1000 serial numbers")
		return nil, nil, false
	}
	for i, sn := range req.Serials {
		n, err := enroll.NormalizeSerial(sn)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return nil, nil, false
		}
		req.Serials[i] = n
	}
	run, err := s.dep.runner(req.Name)
	if s.failed(w, err) {
		return nil, nil, false
	}
	return &req, run, true
}

// depAssign serves POST /api/v1/dep/assign.
func (s *server) depAssign(w http.ResponseWriter, r *http.Request) {
	req, run, ok := s.depSerials(w, r)
	if !ok {
		return
	}
	profile := req.Profile
	if profile == "" {
		run.mu.Lock()
		profile = run.tok.DefaultProfile
		run.mu.Unlock()
	}
	if profile == "" {
		writeError(w, http.StatusBadRequest, "profile: the token has no default profile; define one or name one")
		return
	}
	res, err := s.ade.AssignProfile(r.Context(), run.client, profile, req.Serials)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"profile_uuid": profile, "devices": res})
}

// depDisown serves POST /api/v1/dep/disown.
func (s *server) depDisown(w http.ResponseWriter, r *http.Request) {
	req, run, ok := s.depSerials(w, r)
	if !ok {
		return
	}
	res, err := s.ade.Disown(r.Context(), run.client, req.Serials)
	if s.failed(w, err) {
		return
	}
	s.log.Info("ade: disowned", "token", run.tok.Name, "results", res)
	writeJSON(w, http.StatusOK, map[string]any{"devices": res})
}

// resetRecord serves POST /api/v1/records/{serial}/reset.
func (s *server) resetRecord(w http.ResponseWriter, r *http.Request) {
	rec, err := s.life.Reset(r.Context(), r.PathValue("serial"))
	if s.failed(w, err) {
		return
	}
	s.log.Info("record reset", "serial", rec.Serial)
	writeJSON(w, http.StatusOK, recordRow(rec, nil))
}
