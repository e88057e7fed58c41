package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
)

// Migration campaigns in the reference server: rings, their invitation
// and reminder jobs (run by campaign.Campaigns in the background), the
// webhook channel and the templates, kept in the data dir.

const (
	fileWebhook   = "webhook.json"
	fileTemplates = "templates.json"
)

// maxRingBody caps a ring request (members named one by one).
const maxRingBody = 16 << 20

func webhookSecret(s *campaign.WebhookSettings) *string { return &s.Secret }

// storedTemplates is templates.json: the administrator's own templates;
// a kind without one uses campaign.DefaultTemplates.
type storedTemplates map[string]campaign.Templates

func (d *dataDir) loadTemplates() (storedTemplates, error) {
	var st storedTemplates
	ok, err := readJSONFile(d.file(fileTemplates), &st)
	if err != nil || !ok {
		return storedTemplates{}, err
	}
	return st, nil
}

func (s *server) newCampaigns() *campaign.Campaigns {
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_campaign_messages_total",
		Help: "Campaign messages by channel, kind (invitation, reminder) and outcome (sent, failed, deferred).",
	}, []string{"channel", "kind", "outcome"})
	s.reg.MustRegister(messages)
	return &campaign.Campaigns{
		Store: s.st.Campaigns, Lifecycle: s.life, Logger: s.log,
		Link: s.campaignLink, Open: s.campaignSender, Content: s.campaignContent,
		Observe: func(channel, kind, outcome string) { messages.WithLabelValues(channel, kind, outcome).Inc() },
	}
}

// campaignLink mints what a message carries: for an Android device, an
// enrollment token's link (and, for a company-owned one, the provisioning
// JSON as its QR code); otherwise the record's or user's one-time Apple
// enrollment link.
func (s *server) campaignLink(ctx context.Context, t *campaign.Target, ttl time.Duration) (*campaign.Link, error) {
	serial, email := enroll.ParseRef(t.Ref)
	if t.Platform == enroll.PlatformAndroid {
		s.android.mu.Lock()
		a := s.android.a
		s.android.mu.Unlock()
		if a == nil {
			return nil, errors.New("an Android device, and no Android enterprise is bound (custody android bind)")
		}
		tok, err := a.Token(ctx, serial, "", ttl)
		if err != nil {
			return nil, err
		}
		l := &campaign.Link{URL: tok.Link, Token: tok.Name}
		if t.Ownership == enroll.OwnershipCorporate {
			l.QR = string(tok.QR)
		}
		return l, nil
	}
	tok, secret, err := s.life.MintLink(ctx, serial, email, ttl, "campaign")
	if err != nil {
		return nil, err
	}
	return &campaign.Link{URL: s.baseURL + "/enroll/" + secret, Token: tok.ID}, nil
}

// campaignSender opens a channel with its current settings.
func (s *server) campaignSender(ctx context.Context, channel string) (campaign.Sender, error) {
	switch channel {
	case campaign.ChannelEmail:
		ms, err := s.data.loadMail()
		if err != nil {
			return nil, err
		}
		if ms == nil {
			return nil, errors.New("no mail settings: custody mail set")
		}
		return campaign.NewMailer(*ms)
	case campaign.ChannelWebhook:
		ws, err := loadSealed(s.data, fileWebhook, webhookSecret)
		if err != nil {
			return nil, err
		}
		if ws == nil {
			return nil, errors.New("no webhook settings: custody webhook set")
		}
		return campaign.NewWebhook(*ws, nil)
	}
	return nil, fmt.Errorf("unknown channel %q", channel)
}

func (s *server) campaignContent(ctx context.Context) (*campaign.Content, error) {
	st, err := s.data.loadTemplates()
	if err != nil {
		return nil, err
	}
	var c campaign.Content
	for kind, dst := range map[string]**campaign.Renderer{campaign.KindInvitation: &c.Invitation, campaign.KindReminder: &c.Reminder} {
		t, ok := st[kind]
		if !ok {
			t = campaign.DefaultTemplates
		}
		if *dst, err = campaign.NewRenderer(t); err != nil {
			return nil, fmt.Errorf("%s template: %w", kind, err)
		}
	}
	return &c, nil
}

// ringJSON is a ring with its counts and its latest job.
type ringJSON struct {
	*campaign.Ring
	Counts   campaign.Counts         `json:"counts"`
	LastJob  *campaign.JobProgress   `json:"last_job,omitempty"`
	Targets  []campaign.TargetStatus `json:"targets,omitempty"`
	Timeline []campaign.Point        `json:"timeline,omitempty"`
}

// createRing serves POST /api/v1/rings: a campaign.Ring, whose
// created_at and deadline_acted are the server's. Members must name
// records and users that exist.
func (s *server) createRing(w http.ResponseWriter, r *http.Request) {
	var ring campaign.Ring
	if err := decodeJSON(r, &ring); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	var unknown []string
	for _, m := range ring.Members {
		serial, email := enroll.ParseRef(m)
		var err error
		switch {
		case serial != "":
			_, err = s.life.Records.Record(ctx, serial)
		case email != "":
			_, err = s.life.Records.User(ctx, email)
		default:
			continue // Check names it
		}
		if errors.Is(err, enroll.ErrNotFound) {
			unknown = append(unknown, m)
		} else if s.failed(w, err) {
			return
		}
	}
	if len(unknown) > 0 {
		more := ""
		if len(unknown) > 10 {
			more = fmt.Sprintf(" and %d more", len(unknown)-10)
			unknown = unknown[:10]
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d members have no record or user: %s%s (import them first)",
			len(unknown), strings.Join(unknown, ", "), more))
		return
	}
	ring.CreatedAt, ring.DeadlineActed = time.Time{}, time.Time{}
	if !ring.NotBefore.IsZero() {
		ring.NotBefore = ring.NotBefore.UTC()
	}
	if !ring.Deadline.IsZero() {
		ring.Deadline = ring.Deadline.UTC()
	}
	if s.failed(w, s.campaigns.CreateRing(ctx, &ring)) {
		return
	}
	out, err := s.ringStatus(ctx, &ring, "")
	if s.failed(w, err) {
		return
	}
	s.log.Info("ring created", "ring", ring.Name, "group", ring.Group, "members", len(ring.Members), "targets", out.Counts.Targets)
	writeJSON(w, http.StatusCreated, out)
}

// ringStatus computes a ring's counts, its latest job, and the targets
// a filter asks for: "all", or a state ("not-enrolled", "pre-approved",
// "invited", "failed", "enrolled", "overdue").
func (s *server) ringStatus(ctx context.Context, ring *campaign.Ring, targets string) (*ringJSON, error) {
	p, err := campaign.RingProgress(ctx, s.campaigns.Store, s.life.Records, ring, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	out := &ringJSON{Ring: ring, Counts: p.Counts, Timeline: p.Timeline}
	last := 0
	s.campaigns.Store.Jobs(ctx, ring.Name, func(j *campaign.Job) bool { last = j.ID; return true })
	if last > 0 {
		if out.LastJob, err = s.campaigns.Progress(ctx, ring.Name, last); err != nil {
			return nil, err
		}
	}
	if targets != "" {
		out.Targets = []campaign.TargetStatus{}
		for _, t := range p.Targets {
			if keepTarget(t, targets) {
				out.Targets = append(out.Targets, t)
			}
		}
	}
	return out, nil
}

func keepTarget(t campaign.TargetStatus, filter string) bool {
	switch filter {
	case "all":
		return true
	case "not-enrolled":
		return t.State != campaign.StateEnrolled
	case "overdue":
		return t.Overdue
	}
	return t.State == filter
}

var targetFilters = []string{"all", "not-enrolled", "overdue", campaign.StatePreApproved, campaign.StateInvited, campaign.StateFailed, campaign.StateEnrolled}

// ring looks up the ring of a request's path, or writes a 404.
func (s *server) ring(w http.ResponseWriter, r *http.Request) (*campaign.Ring, bool) {
	ring, err := s.campaigns.Store.Ring(r.Context(), r.PathValue("ring"))
	return ring, !s.failed(w, err)
}

// listRings serves GET /api/v1/rings.
func (s *server) listRings(w http.ResponseWriter, r *http.Request) {
	out, err := s.allRings(r.Context())
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// allRings returns every ring with its counts and last job (no timeline),
// in name order.
func (s *server) allRings(ctx context.Context) ([]*ringJSON, error) {
	var rings []*campaign.Ring
	if err := s.campaigns.Store.Rings(ctx, func(ring *campaign.Ring) bool { rings = append(rings, ring); return true }); err != nil {
		return nil, err
	}
	out := []*ringJSON{}
	for _, ring := range rings {
		rj, err := s.ringStatus(ctx, ring, "")
		if err != nil {
			return nil, err
		}
		rj.Timeline = nil
		out = append(out, rj)
	}
	return out, nil
}

// getRing serves GET /api/v1/rings/{ring}[?targets=FILTER].
func (s *server) getRing(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("targets")
	if filter != "" && !slices.Contains(targetFilters, filter) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("targets=%q: want one of %s", filter, strings.Join(targetFilters, ", ")))
		return
	}
	ring, ok := s.ring(w, r)
	if !ok {
		return
	}
	out, err := s.ringStatus(r.Context(), ring, filter)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// exportRing serves GET /api/v1/rings/{ring}/export[?targets=FILTER]: the
// targets and where they stand, as CSV.
func (s *server) exportRing(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("targets")
	if filter == "" {
		filter = "all"
	}
	if !slices.Contains(targetFilters, filter) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("targets=%q: want one of %s", filter, strings.Join(targetFilters, ", ")))
		return
	}
	ring, ok := s.ring(w, r)
	if !ok {
		return
	}
	out, err := s.ringStatus(r.Context(), ring, filter)
	if s.failed(w, err) {
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", ring.Name+".csv"))
	cw := csv.NewWriter(w)
	cw.Write([]string{"serial", "email", "name", "mobile", "platform", "ownership", "device_name", "state", "record_status",
		"overdue", "invited_at", "enrolled_at", "reminders", "error"})
	rfc3339 := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	for _, t := range out.Targets {
		serial, _ := enroll.ParseRef(t.Ref)
		cw.Write([]string{serial, t.Email, t.Name, t.Mobile, string(t.Platform), string(t.Ownership), t.Device, t.State,
			string(t.RecordStatus), strconv.FormatBool(t.Overdue), rfc3339(t.InvitedAt), rfc3339(t.EnrolledAt),
			strconv.Itoa(t.Reminders), t.Error})
	}
	cw.Flush()
}

// deleteRing serves DELETE /api/v1/rings/{ring}.
func (s *server) deleteRing(w http.ResponseWriter, r *http.Request) {
	err := s.campaigns.DeleteRing(r.Context(), r.PathValue("ring"))
	if s.failed(w, err) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type jobRequest struct {
	Kind string `json:"kind"`
	campaign.Options
	DryRun bool `json:"dry_run,omitempty"`
}

type dryRunJSON struct {
	DryRun  bool              `json:"dry_run"`
	Kind    string            `json:"kind"`
	Total   int               `json:"total"`
	Targets []campaign.Target `json:"targets"`
}

// startJob serves POST /api/v1/rings/{ring}/jobs: start (or resume) an
// invitation or reminder job, or with dry_run say whom it would reach.
func (s *server) startJob(w http.ResponseWriter, r *http.Request) {
	var req jobRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ring := r.PathValue("ring")
	if req.DryRun {
		_, targets, err := s.campaigns.Plan(r.Context(), ring, req.Kind, req.Options)
		if s.failed(w, err) {
			return
		}
		writeJSON(w, http.StatusOK, dryRunJSON{DryRun: true, Kind: req.Kind, Total: len(targets), Targets: targets})
		return
	}
	j, err := s.campaigns.Start(r.Context(), ring, req.Kind, req.Options)
	if s.failed(w, err) {
		return
	}
	if j.ID == 0 {
		writeJSON(w, http.StatusOK, &campaign.JobProgress{Job: j})
		return
	}
	p, err := s.campaigns.Progress(r.Context(), ring, j.ID)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

// jobID reads the job number of a request's path, or writes a 400.
func jobID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("job"))
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("job %q: want a job number", r.PathValue("job")))
		return 0, false
	}
	return id, true
}

// listJobs serves GET /api/v1/rings/{ring}/jobs.
func (s *server) listJobs(w http.ResponseWriter, r *http.Request) {
	ring, ok := s.ring(w, r)
	if !ok {
		return
	}
	var ids []int
	if s.failed(w, s.campaigns.Store.Jobs(r.Context(), ring.Name, func(j *campaign.Job) bool { ids = append(ids, j.ID); return true })) {
		return
	}
	out := []*campaign.JobProgress{}
	for _, id := range ids {
		p, err := s.campaigns.Progress(r.Context(), ring.Name, id)
		if s.failed(w, err) {
			return
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, out)
}

// jobAction serves GET /api/v1/rings/{ring}/jobs/{job} and POST
// .../pause and .../resume.
func (s *server) jobAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := jobID(w, r)
		if !ok {
			return
		}
		ring := r.PathValue("ring")
		var err error
		switch action {
		case "pause":
			_, err = s.campaigns.Pause(r.Context(), ring, id)
		case "resume":
			_, err = s.campaigns.Resume(r.Context(), ring, id)
		}
		if s.failed(w, err) {
			return
		}
		p, err := s.campaigns.Progress(r.Context(), ring, id)
		if s.failed(w, err) {
			return
		}
		writeJSON(w, http.StatusOK, p)
	}
}

// templateKind reads the template kind of a request's path, or writes a
// 404.
func templateKind(w http.ResponseWriter, r *http.Request) (string, bool) {
	kind := r.PathValue("kind")
	if kind != campaign.KindInvitation && kind != campaign.KindReminder {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no template %q: want invitation or reminder", kind))
		return "", false
	}
	return kind, true
}

type templateJSON struct {
	campaign.Templates
	Custom bool `json:"custom"`
}

// getTemplate serves GET /api/v1/templates/{kind}.
func (s *server) getTemplate(w http.ResponseWriter, r *http.Request) {
	kind, ok := templateKind(w, r)
	if !ok {
		return
	}
	st, err := s.data.loadTemplates()
	if s.failed(w, err) {
		return
	}
	t, custom := st[kind]
	if !custom {
		t = campaign.DefaultTemplates
	}
	writeJSON(w, http.StatusOK, templateJSON{Templates: t, Custom: custom})
}

// putTemplate serves PUT /api/v1/templates/{kind}: the templates must
// parse and render a sample invitation.
func (s *server) putTemplate(w http.ResponseWriter, r *http.Request) {
	kind, ok := templateKind(w, r)
	if !ok {
		return
	}
	var t campaign.Templates
	if err := decodeJSON(r, &t); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(t.Subject) == "" || strings.TrimSpace(t.Text) == "" {
		writeError(w, http.StatusBadRequest, "a template needs a subject and a text body (HTML is optional)")
		return
	}
	rd, err := campaign.NewRenderer(t)
	if err == nil {
		_, err = rd.Render(&campaign.Invitation{Name: "Ana Lima", Email: "ana@example.com", Link: s.baseURL + "/enroll/sample",
			Platform: "ios", Ring: "sample", Deadline: time.Now().Add(7 * 24 * time.Hour), HelpDesk: "help desk",
			Reminder: kind == campaign.KindReminder})
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.failed(w, s.data.updateTemplates(func(st storedTemplates) { st[kind] = t })) {
		return
	}
	s.log.Info("template stored", "kind", kind)
	writeJSON(w, http.StatusOK, templateJSON{Templates: t, Custom: true})
}

// deleteTemplate serves DELETE /api/v1/templates/{kind}: back to the
// default.
func (s *server) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	kind, ok := templateKind(w, r)
	if !ok {
		return
	}
	if s.failed(w, s.data.updateTemplates(func(st storedTemplates) { delete(st, kind) })) {
		return
	}
	writeJSON(w, http.StatusOK, templateJSON{Templates: campaign.DefaultTemplates})
}

func (d *dataDir) updateTemplates(fn func(storedTemplates)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.loadTemplates()
	if err != nil {
		return err
	}
	fn(st)
	return writeJSONFile(d.file(fileTemplates), st)
}

type webhookRequest struct {
	URL    string  `json:"url"`
	Secret string  `json:"secret,omitempty"`
	Rate   float64 `json:"rate,omitempty"`
}

type webhookJSON struct {
	URL       string  `json:"url"`
	HasSecret bool    `json:"has_secret"`
	Rate      float64 `json:"rate,omitempty"`
}

// putWebhook serves PUT /api/v1/webhook: the webhook channel's settings.
func (s *server) putWebhook(w http.ResponseWriter, r *http.Request) {
	var req webhookRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ws := &campaign.WebhookSettings{URL: req.URL, Secret: req.Secret, Rate: req.Rate}
	if err := ws.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.failed(w, saveSealed(s.data, fileWebhook, ws, webhookSecret)) {
		return
	}
	s.log.Info("webhook channel stored", "url", ws.URL)
	writeJSON(w, http.StatusOK, webhookJSON{URL: ws.URL, HasSecret: ws.Secret != "", Rate: ws.Rate})
}

// getWebhook serves GET /api/v1/webhook (never the secret).
func (s *server) getWebhook(w http.ResponseWriter, r *http.Request) {
	ws, err := loadSealed(s.data, fileWebhook, webhookSecret)
	switch {
	case s.failed(w, err):
	case ws == nil:
		writeError(w, http.StatusNotFound, "no webhook settings: custody webhook set")
	default:
		writeJSON(w, http.StatusOK, webhookJSON{URL: ws.URL, HasSecret: ws.Secret != "", Rate: ws.Rate})
	}
}
