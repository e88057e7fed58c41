package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/zerotouch"
)

// maxAPIBody caps admin API request bodies.
const maxAPIBody = 1 << 20

// server is the reference server: the protocol handlers and the admin API
// over one database and one data dir.
type server struct {
	data      *dataDir
	st        storage.Stores
	baseURL   string
	scep      *scep.Server
	mdm       *mdm.Service
	profile   *enroll.ProfileServer
	life      *enroll.Lifecycle
	ade       *enroll.ADE
	adeSrv    *enroll.ADEServer
	dep       *depManager
	android   androidState
	campaigns *campaign.Campaigns
	dir       *directory.Directory
	scim      *scim.Server
	google    googleSync
	// offboardingInterval is how often due offboardings are looked for.
	offboardingInterval time.Duration
	// replica names this process in leases; leaseTTL is their length.
	replica     string
	leaseTTL    time.Duration
	leaseEvents *prometheus.CounterVec
	apns        mdm.APNsConfig            // host and trust; the certificate comes from push
	push        atomic.Pointer[pushState] // replaced when a push certificate is uploaded
	log         *slog.Logger
	reg         *prometheus.Registry
	httpReq     *prometheus.CounterVec
	httpDur     *prometheus.HistogramVec
}

func newServer(data *dataDir, st storage.Stores, log *slog.Logger, baseURL string, apns mdm.APNsConfig) (*server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &server{
		data: data, st: st, log: log, reg: reg, baseURL: strings.TrimRight(baseURL, "/"), apns: apns,
		httpReq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		replica: replicaName(),
		leaseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_lease_events_total", Help: "Background jobs' leases taken and lost by this replica, by job.",
		}, []string{"job", "event"}),
		httpDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "custody_http_request_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 1.5, 20), // 0.25 ms to 0.55 s
		}, []string{"route"}),
	}
	reg.MustRegister(s.httpReq, s.httpDur, s.leaseEvents)
	s.scep = &scep.Server{
		Store: st.SCEP, Signer: data.ca,
		RACert: data.ra, RAKey: data.raKey, CACerts: []*x509.Certificate{data.ca.Cert},
		Logger: log, Metrics: scep.NewMetrics(reg),
	}
	certs := st.SCEP
	roots := x509.NewCertPool()
	roots.AddCert(data.ca.Cert)
	s.mdm = &mdm.Service{
		Store: st.MDM,
		Auth: &mdm.Authenticator{
			Roots:     roots,
			IsRevoked: certs.Revoked,
		},
		RenewedFrom: func(ctx context.Context, fp string) (string, error) {
			c, err := certs.Cert(ctx, fp)
			if errors.Is(err, scep.ErrNotFound) {
				return "", nil
			}
			if err != nil {
				return "", err
			}
			return c.RenewedFrom, nil
		},
		Logger: log,
	}
	s.profile = &enroll.ProfileServer{
		Tokens: st.Enroll, Challenges: certs,
		Profile: enroll.ProfileConfig{
			Identifier: "com.custodymdm.enroll", DisplayName: "Custody MDM", Organization: "Custody",
			SCEPURL: s.baseURL + "/scep", MDMServerURL: s.baseURL + "/mdm", Topic: data.topic,
			ServerCapabilities: []string{"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"},
		},
		SignerCert: data.profile, SignerKey: data.profileKey, Chain: []*x509.Certificate{data.ca.Cert},
		Topic:  func() string { return s.push.Load().topic },
		Logger: log,
	}
	s.life = &enroll.Lifecycle{
		Records: st.Records, Assignments: st.Assignments, Settings: st.Settings,
		Tokens: st.Enroll, Certs: certs, MDM: st.MDM,
		SignerCert: data.profile, SignerKey: data.profileKey, Chain: []*x509.Certificate{data.ca.Cert},
		Push: s.pushLater, Logger: log,
	}
	s.mdm.Admit = s.life.Admit
	s.mdm.Events = s.life
	s.ade = &enroll.ADE{Records: st.Records, Tokens: st.DEP, Logger: log}
	s.adeSrv = &enroll.ADEServer{Profiles: s.profile, Lifecycle: s.life, Logger: log}
	s.dep = &depManager{s: s}
	s.campaigns = s.newCampaigns()
	s.newDirectory()
	if cfg, err := data.loadAndroid(); err != nil {
		return nil, err
	} else if cfg != nil {
		if err := s.setAndroid(cfg); err != nil {
			return nil, fmt.Errorf("android binding: %w", err)
		}
	}
	push, err := s.loadPush()
	if err != nil {
		return nil, err
	}
	s.push.Store(push)
	return s, nil
}

// pushLater wakes devices in the background, so that a device's own
// request (its TokenUpdate) does not wait for APNs.
func (s *server) pushLater(_ context.Context, ids []string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		results, err := s.push.Load().pusher.Push(ctx, ids)
		if err != nil {
			s.log.Warn("push interrupted", "err", err)
			return
		}
		for i, res := range results {
			if res.Err != nil {
				s.log.Warn("push failed", "enrollment", ids[i], "err", res.Err)
			}
		}
	}()
}

// eventFanout gives each event to several handlers in turn.
type eventFanout []mdm.EventHandler

func (f eventFanout) HandleEvent(ctx context.Context, e *mdm.Event) {
	for _, h := range f {
		h.HandleEvent(ctx, e)
	}
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern, name string, h http.Handler) {
		mux.Handle(pattern, s.instrument(name, h))
	}
	route("/scep", "scep", s.scep)
	route("/mdm", "mdm", s.mdm)
	route("GET /enroll/{token}", "enroll", s.profile)
	route("/ade/enroll", "ade", s.adeSrv)
	route("GET /android/callback", "android", http.HandlerFunc(s.androidCallback))
	route("/android/pubsub", "android-push", http.HandlerFunc(s.androidPush))
	route("/scim/v2/", "scim", http.StripPrefix("/scim/v2", s.scim))
	route("GET /healthz", "healthz", http.HandlerFunc(s.healthz))
	route("GET /metrics", "metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	route("GET /ui/login", "ui", http.HandlerFunc(s.uiLogin))
	route("POST /ui/login", "ui", http.HandlerFunc(s.uiLogin))
	route("POST /ui/logout", "ui", s.ui(s.uiLogout))
	route("GET /ui/", "ui", s.ui(s.uiRings))
	route("GET /ui/rings/{ring}", "ui", s.ui(s.uiRing))
	route("POST /ui/rings/{ring}/remind", "ui", s.ui(s.uiRemind))
	route("GET /ui/devices", "ui", s.ui(s.uiDevices))
	api := http.NewServeMux()
	api.HandleFunc("POST /api/v1/challenges", s.createChallenge)
	api.HandleFunc("POST /api/v1/enrollments", s.createEnrollment)
	api.HandleFunc("GET /api/v1/devices", s.listDevices)
	api.HandleFunc("GET /api/v1/devices/{id}", s.getDevice)
	api.HandleFunc("GET /api/v1/devices/{id}/commands", s.deviceCommands)
	api.HandleFunc("POST /api/v1/commands", s.enqueueCommand)
	api.HandleFunc("POST /api/v1/push", s.pushHandler)
	api.HandleFunc("POST /api/v1/pushcert", s.uploadPushCert)
	api.HandleFunc("GET /api/v1/certs", s.listCerts)
	api.HandleFunc("GET /api/v1/certs/{fingerprint}", s.getCert)
	api.HandleFunc("POST /api/v1/certs/{fingerprint}/revoke", s.revokeCert)
	api.HandleFunc("POST /api/v1/records/import", s.importCSV(false))
	api.HandleFunc("POST /api/v1/users/import", s.importCSV(true))
	api.HandleFunc("GET /api/v1/inventory", s.listInventory)
	api.HandleFunc("GET /api/v1/inventory/{key}", s.getInventory)
	api.HandleFunc("GET /api/v1/settings", s.getSettings)
	api.HandleFunc("PATCH /api/v1/settings", s.putSettings)
	api.HandleFunc("POST /api/v1/links", s.createLink)
	api.HandleFunc("GET /api/v1/groups", s.listGroups)
	api.HandleFunc("POST /api/v1/groups/{group}/members", s.addMembers)
	api.HandleFunc("POST /api/v1/assignments", s.createAssignment)
	api.HandleFunc("GET /api/v1/assignments", s.listAssignments)
	api.HandleFunc("DELETE /api/v1/assignments/{id}", s.deleteAssignment)
	api.HandleFunc("GET /api/v1/trace/{key}", s.getTrace)
	api.HandleFunc("POST /api/v1/records/{serial}/reset", s.resetRecord)
	api.HandleFunc("GET /api/v1/dep/keypair", s.depKeyPair)
	api.HandleFunc("POST /api/v1/dep/tokens", s.uploadDEPToken)
	api.HandleFunc("GET /api/v1/dep/status", s.depStatus)
	api.HandleFunc("POST /api/v1/dep/sync", s.depSync)
	api.HandleFunc("POST /api/v1/dep/profiles", s.depDefineProfile)
	api.HandleFunc("POST /api/v1/dep/assign", s.depAssign)
	api.HandleFunc("POST /api/v1/dep/disown", s.depDisown)
	api.HandleFunc("POST /api/v1/android/bind", s.androidBind)
	api.HandleFunc("POST /api/v1/android/tokens", s.androidToken)
	api.HandleFunc("POST /api/v1/android/sync", s.androidSync)
	api.HandleFunc("POST /api/v1/zerotouch/configurations", s.zeroTouchConfigure)
	api.HandleFunc("POST /api/v1/zerotouch/apply", s.zeroTouchApply)
	api.HandleFunc("POST /api/v1/zerotouch/sync", s.zeroTouchSync)
	api.HandleFunc("PUT /api/v1/mail", s.putMail)
	api.HandleFunc("GET /api/v1/mail", s.getMail)
	api.HandleFunc("POST /api/v1/mail/test", s.testMail)
	api.HandleFunc("PUT /api/v1/webhook", s.putWebhook)
	api.HandleFunc("GET /api/v1/webhook", s.getWebhook)
	api.HandleFunc("GET /api/v1/templates/{kind}", s.getTemplate)
	api.HandleFunc("PUT /api/v1/templates/{kind}", s.putTemplate)
	api.HandleFunc("DELETE /api/v1/templates/{kind}", s.deleteTemplate)
	api.HandleFunc("POST /api/v1/rings", s.createRing)
	api.HandleFunc("GET /api/v1/rings", s.listRings)
	api.HandleFunc("GET /api/v1/rings/{ring}", s.getRing)
	api.HandleFunc("DELETE /api/v1/rings/{ring}", s.deleteRing)
	api.HandleFunc("GET /api/v1/rings/{ring}/export", s.exportRing)
	api.HandleFunc("POST /api/v1/rings/{ring}/jobs", s.startJob)
	api.HandleFunc("GET /api/v1/rings/{ring}/jobs", s.listJobs)
	api.HandleFunc("GET /api/v1/rings/{ring}/jobs/{job}", s.jobAction(""))
	api.HandleFunc("POST /api/v1/rings/{ring}/jobs/{job}/pause", s.jobAction("pause"))
	api.HandleFunc("POST /api/v1/rings/{ring}/jobs/{job}/resume", s.jobAction("resume"))
	api.HandleFunc("POST /api/v1/scim/tokens", s.createSCIMToken)
	api.HandleFunc("GET /api/v1/scim/tokens", s.listSCIMTokens)
	api.HandleFunc("DELETE /api/v1/scim/tokens/{id}", s.revokeSCIMToken)
	api.HandleFunc("GET /api/v1/directory/settings", s.getDirectorySettings)
	api.HandleFunc("PATCH /api/v1/directory/settings", s.patchDirectorySettings)
	api.HandleFunc("GET /api/v1/directory/groups", s.listDirectoryGroups)
	api.HandleFunc("GET /api/v1/directory/audit", s.listAudit)
	api.HandleFunc("GET /api/v1/offboardings", s.listOffboardings)
	api.HandleFunc("GET /api/v1/offboardings/{id}", s.getOffboarding)
	api.HandleFunc("POST /api/v1/offboardings/{id}/cancel", s.cancelOffboarding)
	api.HandleFunc("PUT /api/v1/google", s.putGoogle)
	api.HandleFunc("GET /api/v1/google", s.getGoogle)
	api.HandleFunc("POST /api/v1/google/sync", s.syncGoogle)
	api.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	route("/api/v1/", "api", s.requireToken(api))
	return mux
}

func (s *server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		d := time.Since(start)
		s.httpReq.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		s.httpDur.WithLabelValues(route).Observe(d.Seconds())
		level := slog.LevelDebug
		if sw.code >= 500 {
			level = slog.LevelError
		} else if sw.code >= 400 {
			level = slog.LevelInfo
		}
		if s.log.Enabled(r.Context(), level) {
			s.log.Log(r.Context(), level, "http", "method", r.Method, "path", r.URL.Path, "status", sw.code,
				"duration", d, "remote", r.RemoteAddr)
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	// A read transaction proves the database is open and readable.
	err := s.st.SCEP.Certs(r.Context(), func(*scep.IssuedCert) bool { return false })
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// requireToken refuses API requests without the admin bearer token.
func (s *server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		switch {
		case auth == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
			writeError(w, http.StatusUnauthorized, "missing Authorization: Bearer token")
		case !ok || !s.data.checkToken(strings.TrimSpace(token)):
			w.Header().Set("WWW-Authenticate", `Bearer realm="custody", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid admin token")
		default:
			r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r.URL.Path))
			h.ServeHTTP(w, r)
		}
	})
}

// errSeveralTokens asks for a token's name where several are uploaded.
var errSeveralTokens = errors.New("several ADE server tokens: name one")

// failed writes the response for an error of the enrollment lifecycle or
// of a call to Apple or Google, and reports whether there was one. It is
// the one place that maps their errors to HTTP statuses.
func (s *server) failed(w http.ResponseWriter, err error) bool {
	var appleErr *dep.Error
	var googleErr *zerotouch.Error
	var netErr *url.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, enroll.ErrNotFound), errors.Is(err, dep.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, enroll.ErrInvalid), errors.Is(err, dep.ErrTokenFormat), errors.Is(err, dep.ErrTokenDecrypt),
		errors.Is(err, errSeveralTokens):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, campaign.ErrExists), errors.Is(err, campaign.ErrBusy):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, mdm.ErrNotFound):
		writeError(w, http.StatusConflict, "a record's enrollment is gone: "+err.Error())
	case errors.Is(err, dep.ErrBadToken):
		writeError(w, http.StatusBadGateway, "Apple refused the server token: "+err.Error())
	case errors.As(err, &appleErr):
		writeError(w, http.StatusBadGateway, "Apple refused the request: "+err.Error())
	case errors.As(err, &googleErr):
		writeError(w, http.StatusBadGateway, "Google refused the request: "+err.Error())
	case errors.As(err, &netErr):
		s.log.Warn("upstream unreachable", "err", err)
		writeError(w, http.StatusBadGateway, "the service could not be reached: "+err.Error())
	default:
		s.log.Error("request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "could not complete the request")
	}
	return true
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decodeJSON reads a request body into v, refusing unknown fields. An empty
// body leaves v at its zero value. Numbers in untyped values (command keys)
// stay json.Numbers, for normalizeJSON to tell integers from reals.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &tooBig):
		return fmt.Errorf("request body larger than %d bytes", tooBig.Limit)
	default:
		return fmt.Errorf("request body: %v", err)
	}
}

// serveListener serves on ln until ctx is cancelled, then drains in-flight
// requests.
func (s *server) serveListener(ctx context.Context, hs *http.Server, ln net.Listener, tlsCert, tlsKey string) error {
	errc := make(chan error, 1)
	go func() {
		if tlsCert != "" {
			errc <- hs.ServeTLS(ln, tlsCert, tlsKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return hs.Shutdown(shutdown)
}
