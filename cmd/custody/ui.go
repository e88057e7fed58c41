package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
)

// The dashboard: server-rendered pages under /ui/ (no scripts, nothing
// fetched from elsewhere) for an administrator watching a migration:
// rings with their progress over time, who has not enrolled with a
// button to remind them, and the device inventory with search. Login is
// with the admin token, which becomes a session cookie.

//go:embed ui/*.html
var uiFiles embed.FS

var uiTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"pct": func(n, of int) string {
		if of == 0 {
			return "0"
		}
		return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64)
	},
	"add": func(a, b int) int { return a + b },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}).ParseFS(uiFiles, "ui/*.html"))

const (
	sessionCookie = "custody_session"
	sessionTTL    = 12 * time.Hour
)

// sessionKey signs dashboard sessions; it derives from the data dir's
// secret key, so sessions outlive a restart and die with the key.
func (s *server) sessionKey() ([]byte, error) {
	key, err := s.data.secretKey()
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("custody dashboard session"))
	return mac.Sum(nil), nil
}

func (s *server) sign(parts ...string) (string, error) {
	key, err := s.sessionKey()
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// newSession returns a session cookie value: its expiry and signature.
func (s *server) newSession(now time.Time) (string, error) {
	exp := strconv.FormatInt(now.Add(sessionTTL).Unix(), 10)
	sig, err := s.sign("session", exp)
	return exp + "." + sig, err
}

// session returns the request's valid session, or "".
func (s *server) session(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	exp, sig, ok := strings.Cut(c.Value, ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || time.Now().Unix() > unix {
		return ""
	}
	want, err := s.sign("session", exp)
	if err != nil || !hmac.Equal([]byte(sig), []byte(want)) {
		return ""
	}
	return c.Value
}

// csrf is the token a session's forms carry.
func (s *server) csrf(session string) string {
	t, _ := s.sign("csrf", session)
	return t
}

// uiPage is what every page's layout shows.
type uiPage struct {
	Title string
	CSRF  string
	Flash string
	Error string
	Data  any
}

func (s *server) render(w http.ResponseWriter, code int, name string, p *uiPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := uiTemplates.ExecuteTemplate(w, name, p); err != nil {
		s.log.Error("dashboard page", "page", name, "err", err)
	}
}

// ui wraps the dashboard's pages: a valid session or the admin token as
// a bearer, else the login page; forms must carry the session's CSRF
// token.
func (s *server) ui(h func(w http.ResponseWriter, r *http.Request, p *uiPage)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.session(r)
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if sess == "" && (bearer == "" || !s.data.checkToken(strings.TrimSpace(bearer))) {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.render(w, http.StatusUnauthorized, "login.html", &uiPage{Title: "Sign in", Error: "Your session has expired: sign in again."})
			return
		}
		p := &uiPage{CSRF: s.csrf(sess), Flash: r.URL.Query().Get("flash")}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil || sess != "" && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(p.CSRF)) {
				s.render(w, http.StatusForbidden, "error.html", &uiPage{Title: "Refused", Error: "The form is stale or was not sent from this dashboard; reload the page and try again."})
				return
			}
		}
		h(w, r, p)
	}
}

// uiLogin serves GET and POST /ui/login.
func (s *server) uiLogin(w http.ResponseWriter, r *http.Request) {
	next := r.FormValue("next")
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") {
		next = "/ui/"
	}
	p := &uiPage{Title: "Sign in", Data: next}
	if r.Method == http.MethodGet {
		s.render(w, http.StatusOK, "login.html", p)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !s.data.checkToken(strings.TrimSpace(r.PostFormValue("token"))) {
		s.log.Warn("dashboard sign-in refused", "remote", r.RemoteAddr)
		p.Error = "That is not the admin token (it is in the data dir's admin.token)."
		s.render(w, http.StatusUnauthorized, "login.html", p)
		return
	}
	value, err := s.newSession(time.Now())
	if err != nil {
		s.log.Error("dashboard session", "err", err)
		s.render(w, http.StatusInternalServerError, "error.html", &uiPage{Title: "Error", Error: "Could not start a session."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/ui/", MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("dashboard sign-in", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// uiLogout serves POST /ui/logout.
func (s *server) uiLogout(w http.ResponseWriter, r *http.Request, _ *uiPage) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// uiRings serves GET /ui/: every ring and its counts.
func (s *server) uiRings(w http.ResponseWriter, r *http.Request, p *uiPage) {
	if r.URL.Path != "/ui/" {
		s.render(w, http.StatusNotFound, "error.html", &uiPage{Title: "Not found", Error: "No such page."})
		return
	}
	rows, err := s.allRings(r.Context())
	if err != nil {
		s.uiFailed(w, err)
		return
	}
	p.Title, p.Data = "Rings", rows
	s.render(w, http.StatusOK, "rings.html", p)
}

// uiRingData is a ring's page.
type uiRingData struct {
	*ringJSON
	Chart       *uiChart
	NotEnrolled []campaign.TargetStatus
	More        int // not enrolled beyond those listed
}

// uiRingListed bounds the not-enrolled list on a ring's page (the export
// has all of them).
const uiRingListed = 500

// uiRing serves GET /ui/rings/{ring}.
func (s *server) uiRing(w http.ResponseWriter, r *http.Request, p *uiPage) {
	ring, err := s.campaigns.Store.Ring(r.Context(), r.PathValue("ring"))
	if err != nil {
		s.uiFailed(w, err)
		return
	}
	rj, err := s.ringStatus(r.Context(), ring, "not-enrolled")
	if err != nil {
		s.uiFailed(w, err)
		return
	}
	d := &uiRingData{ringJSON: rj, Chart: newChart(rj.Timeline, rj.Counts.Targets, ring.Deadline), NotEnrolled: rj.Targets}
	if len(d.NotEnrolled) > uiRingListed {
		d.More, d.NotEnrolled = len(d.NotEnrolled)-uiRingListed, d.NotEnrolled[:uiRingListed]
	}
	p.Title, p.Data = "Ring "+ring.Name, d
	s.render(w, http.StatusOK, "ring.html", p)
}

// uiRemind serves POST /ui/rings/{ring}/remind: a reminder to those not
// enrolled.
func (s *server) uiRemind(w http.ResponseWriter, r *http.Request, p *uiPage) {
	ring := r.PathValue("ring")
	j, err := s.campaigns.Start(r.Context(), ring, campaign.KindReminder, campaign.Options{OnlyNotEnrolled: true})
	if err != nil {
		s.uiFailed(w, err)
		return
	}
	flash := "Everyone in this ring has enrolled: no reminder to send."
	if j.ID != 0 {
		flash = fmt.Sprintf("Reminder job %d started: %d reminders to users who have not enrolled.", j.ID, j.Total)
		s.log.Info("dashboard: reminder started", "ring", ring, "job", j.ID, "targets", j.Total)
	}
	http.Redirect(w, r, "/ui/rings/"+url.PathEscape(ring)+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// uiDevicesData is the inventory page.
type uiDevicesData struct {
	Query  string
	Rows   []inventoryJSON
	Total  int // matching
	Listed int
}

// uiDevicesListed bounds the inventory page.
const uiDevicesListed = 500

// uiDevices serves GET /ui/devices?q=TEXT: the inventory, searched by
// serial number, user, device name, status or enrollment ID.
func (s *server) uiDevices(w http.ResponseWriter, r *http.Request, p *uiPage) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	rows, err := s.inventory(r.Context(), "", "")
	if err != nil {
		s.uiFailed(w, err)
		return
	}
	d := &uiDevicesData{Query: q}
	needle := strings.ToLower(q)
	for _, row := range rows {
		if needle != "" && !strings.Contains(strings.ToLower(strings.Join([]string{row.Serial, row.UserEmail, row.UserName,
			row.DeviceName, row.Status, row.ID, string(row.Platform)}, "\x00")), needle) {
			continue
		}
		d.Total++
		if len(d.Rows) < uiDevicesListed {
			d.Rows = append(d.Rows, row)
		}
	}
	d.Listed = len(d.Rows)
	p.Title, p.Data = "Devices", d
	s.render(w, http.StatusOK, "devices.html", p)
}

func (s *server) uiFailed(w http.ResponseWriter, err error) {
	code, msg := http.StatusInternalServerError, "Something went wrong; the server log says what."
	switch {
	case errors.Is(err, enroll.ErrNotFound):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, campaign.ErrBusy), errors.Is(err, enroll.ErrInvalid):
		code, msg = http.StatusConflict, err.Error()
	case errors.Is(err, context.Canceled):
		return
	default:
		s.log.Error("dashboard", "err", err)
	}
	s.render(w, code, "error.html", &uiPage{Title: "Error", Error: msg})
}

// uiChart is a ring's progress over time as an SVG line chart.
type uiChart struct {
	W, H     int
	Series   []uiSeries
	YTicks   []uiTick
	XTicks   []uiTick
	Deadline float64 // x of the deadline, or -1
}

type uiSeries struct {
	Name, Colour, Points string
	Last                 int
}

type uiTick struct {
	At     float64
	Label  string
	Anchor string // of an x label: start, middle or end, so the edge ones stay inside
}

const (
	chartW, chartH      = 720, 240
	chartLeft, chartBot = 48, 24
)

// newChart lays out a ring's timeline: x is time, y the number of
// targets; nil without a timeline.
func newChart(tl []campaign.Point, total int, deadline time.Time) *uiChart {
	if len(tl) == 0 {
		return nil
	}
	c := &uiChart{W: chartW, H: chartH, Deadline: -1}
	t0, t1 := tl[0].At, tl[len(tl)-1].At
	if !deadline.IsZero() && deadline.After(t1) {
		t1 = deadline
	}
	span := t1.Sub(t0)
	if span <= 0 {
		span = time.Second
	}
	ymax := max(total, 1)
	x := func(t time.Time) float64 {
		return chartLeft + float64(chartW-chartLeft-8)*float64(t.Sub(t0))/float64(span)
	}
	y := func(n int) float64 {
		return float64(chartH-chartBot) - float64(chartH-chartBot-8)*float64(n)/float64(ymax)
	}
	for _, s := range []struct {
		name, colour string
		get          func(campaign.Point) int
	}{
		{"invited", "#4a78c2", func(p campaign.Point) int { return p.Invited }},
		{"enrolled", "#2e8b57", func(p campaign.Point) int { return p.Enrolled }},
		{"failed", "#c0392b", func(p campaign.Point) int { return p.Failed }},
		{"overdue", "#d68910", func(p campaign.Point) int { return p.Overdue }},
	} {
		var pts []string
		for _, p := range tl {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.At), y(s.get(p))))
		}
		c.Series = append(c.Series, uiSeries{Name: s.name, Colour: s.colour, Points: strings.Join(pts, " "), Last: s.get(tl[len(tl)-1])})
	}
	step := int(math.Max(1, math.Ceil(float64(ymax)/4)))
	for n := 0; n <= ymax; n += step {
		c.YTicks = append(c.YTicks, uiTick{At: y(n), Label: strconv.Itoa(n)})
	}
	for i := range 4 {
		t := t0.Add(span * time.Duration(i) / 3)
		label := t.UTC().Format("15:04")
		if span > 36*time.Hour {
			label = t.UTC().Format("2 Jan")
		}
		anchor := []string{"start", "middle", "middle", "end"}[i]
		c.XTicks = append(c.XTicks, uiTick{At: x(t), Label: label, Anchor: anchor})
	}
	if !deadline.IsZero() {
		c.Deadline = x(deadline)
	}
	return c
}
