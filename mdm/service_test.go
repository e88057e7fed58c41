package mdm_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

type server struct {
	store   mdm.Store
	svc     *mdm.Service
	url     string
	ca      *scep.CA
	revoked map[string]bool
	events  chan *mdm.Event
}

type eventSink chan *mdm.Event

func (c eventSink) HandleEvent(_ context.Context, e *mdm.Event) { c <- e }

// newServer is newBenchServer with the service's events captured.
func newServer(t *testing.T) *server {
	s := newBenchServer(t)
	s.svc.Events = eventSink(s.events)
	return s
}

func newBenchServer(t testing.TB) *server {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ca, err := scep.NewCA("Custody Device CA", 2048, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{store: db.MDM(), ca: ca, revoked: map[string]bool{}, events: make(chan *mdm.Event, 100)}
	s.svc = &mdm.Service{
		Store: s.store,
		Auth: &mdm.Authenticator{Roots: pool(ca), IsRevoked: func(_ context.Context, fp string) (bool, error) {
			return s.revoked[fp], nil
		}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	hs := httptest.NewServer(s.svc)
	t.Cleanup(hs.Close)
	s.url = hs.URL + "/mdm"
	return s
}

func (s *server) device(t testing.TB) *mdmtest.Device {
	id := newDevice(t, s.ca)
	d := mdmtest.NewDevice(id.cert, id.key)
	d.ServerURL, d.Topic = s.url, "com.apple.mgmt.External.test"
	return d
}

func (s *server) enqueue(t testing.TB, id string, c mdm.Command) string {
	t.Helper()
	uuid := strings.ToUpper(c.RequestType()) + "-" + time.Now().Format("150405.000000000")
	payload, err := mdm.MarshalCommand(uuid, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.Enqueue(context.Background(), []string{id}, &mdm.QueuedCommand{
		UUID: uuid, RequestType: c.RequestType(), Payload: payload, EnqueuedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	return uuid
}

// One device's story: it enrols, reports its push token, answers commands
// and is erased.
func TestDeviceStory(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	d := s.device(t)

	if err := d.Authenticate(ctx); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	e, err := s.store.Enrollment(ctx, d.UDID)
	if err != nil || e.Enabled || e.SerialNumber != d.SerialNumber || e.CertFingerprint != mdm.CertFingerprint(d.Cert) {
		t.Fatalf("after Authenticate: %+v, %v", e, err)
	}
	if err := d.TokenUpdate(ctx); err != nil {
		t.Fatalf("TokenUpdate: %v", err)
	}
	e, _ = s.store.Enrollment(ctx, d.UDID)
	if !e.Enabled || e.PushMagic != d.PushMagic || string(e.Token) != string(d.Token) || e.Topic != d.Topic {
		t.Fatalf("after TokenUpdate: %+v", e)
	}

	info := s.enqueue(t, d.UDID, &mdm.DeviceInformation{Queries: []string{"SerialNumber", "OSVersion"}})
	install := s.enqueue(t, d.UDID, &mdm.InstallProfile{Payload: []byte(`<plist><dict><key>PayloadIdentifier</key><string>com.example.wifi</string></dict></plist>`)})
	lock := s.enqueue(t, d.UDID, &mdm.DeviceLock{Message: "Lost"})
	future := s.enqueue(t, d.UDID, &mdm.RawCommand{Type: "SomethingNewer", Keys: map[string]any{"Level": 2}})

	done, err := d.Poll(ctx)
	if err != nil || len(done) != 4 {
		t.Fatalf("Poll ran %d commands: %v", len(done), err)
	}
	results, _ := s.store.Results(ctx, d.UDID)
	status := map[string]string{}
	for _, r := range results {
		status[r.CommandUUID] = r.Status
	}
	if status[info] != "Acknowledged" || status[install] != "Acknowledged" || status[lock] != "Acknowledged" || status[future] != "Error" {
		t.Errorf("results = %v", status)
	}
	for _, r := range results {
		if r.CommandUUID != info {
			continue
		}
		resp, err := mdm.DecodeResponse(r.Raw, "DeviceInformation")
		di, _ := resp.Typed.(*mdm.DeviceInformationResponse)
		if err != nil || di == nil || di.QueryResponses.SerialNumber != d.SerialNumber || di.QueryResponses.OSVersion != d.OSVersion {
			t.Errorf("stored DeviceInformation result does not match the device: %+v, %v", resp, err)
		}
	}
	if got := d.Profiles(); len(got) != 1 || got[0] != "com.example.wifi" {
		t.Errorf("device profiles = %v", got)
	}
	if q, _ := s.store.Queue(ctx, d.UDID); len(q) != 0 {
		t.Errorf("queue not empty: %d", len(q))
	}

	erase := s.enqueue(t, d.UDID, &mdm.EraseDevice{})
	if _, err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !d.Wiped() {
		t.Error("device not wiped after EraseDevice")
	}
	results, _ = s.store.Results(ctx, d.UDID)
	if last := results[len(results)-1]; last.CommandUUID != erase || last.Status != "Acknowledged" {
		t.Errorf("EraseDevice result = %+v", last)
	}
	if e, _ := s.store.Enrollment(ctx, d.UDID); e.WipedAt.IsZero() || e.Enabled {
		t.Errorf("enrollment after EraseDevice: wiped %v, enabled %v", e.WipedAt, e.Enabled)
	}
	if _, err := d.Poll(ctx); !errors.Is(err, mdmtest.ErrWiped) {
		t.Errorf("wiped device still talks: %v", err)
	}

	var kinds []string
	for len(s.events) > 0 {
		ev := <-s.events
		kinds = append(kinds, ev.Type+":"+ev.MessageType)
	}
	if len(kinds) != 7 || kinds[0] != "checkin:Authenticate" || kinds[1] != "checkin:TokenUpdate" || kinds[2] != "result:" {
		t.Errorf("events = %v", kinds)
	}
}

// NotNow does not block the rest of the queue, and the command comes back
// at the next Idle.
func TestNotNow(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	d := s.device(t)
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	first := s.enqueue(t, d.UDID, &mdm.DeviceLock{})
	second := s.enqueue(t, d.UDID, &mdm.ProfileList{})
	busy := true
	d.Busy = func(p *mdm.CommandPayload) bool { return busy && p.CommandUUID == first }
	done, err := d.Poll(ctx)
	if err != nil || len(done) != 2 || done[1].CommandUUID != second {
		t.Fatalf("first poll: %d commands, %v", len(done), err)
	}
	busy = false
	done, err = d.Poll(ctx)
	if err != nil || len(done) != 1 || done[0].CommandUUID != first {
		t.Fatalf("second poll: %v, %v; want the NotNow command again", done, err)
	}
}

// A device that reuses signatures signs a repeated idle body once; the
// server accepts the reused signature, and a new body gets a new one.
func TestReusedSignatures(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	d := s.device(t)
	d.ReuseSignatures = true
	var sigs []string
	d.Tamper = func(r *http.Request, body []byte) []byte {
		sigs = append(sigs, r.Header.Get("Mdm-Signature"))
		return body
	}
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	for range 3 {
		if _, err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	uuid := s.enqueue(t, d.UDID, &mdm.DeviceLock{})
	done, err := d.Poll(ctx)
	if err != nil || len(done) != 1 || done[0].CommandUUID != uuid {
		t.Fatalf("poll with a command: %v, %v", done, err)
	}
	// Authenticate, TokenUpdate, 4 Idle, 1 Result.
	if len(sigs) != 7 {
		t.Fatalf("%d requests, want 7", len(sigs))
	}
	if sigs[0] == sigs[1] || sigs[1] == sigs[2] || sigs[5] != sigs[2] || sigs[6] == sigs[5] {
		t.Error("idle signatures not reused, or a different body reused a signature")
	}
}

func TestRefusals(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	a, b := s.device(t), s.device(t)
	for _, d := range []*mdmtest.Device{a, b} {
		if err := d.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
		d.TokenUpdate(ctx)
	}
	aCmd := s.enqueue(t, a.UDID, &mdm.DeviceLock{})

	other, _ := scep.NewCA("Other CA", 2048, time.Hour)
	foreign := newDevice(t, other)
	want := func(name string, err error, code int) {
		t.Helper()
		var he *mdmtest.HTTPError
		if !errors.As(err, &he) || he.StatusCode != code {
			t.Errorf("%s: %v, want HTTP %d", name, err, code)
		}
	}

	// B's certificate speaking for A.
	impostor := b.Clone()
	impostor.UDID = a.UDID
	_, err := impostor.Poll(ctx)
	want("another enrollment's cert", err, http.StatusForbidden)
	err = impostor.Authenticate(ctx)
	want("Authenticate with another enrollment's cert", err, http.StatusForbidden)

	tampered := a.Clone()
	tampered.Tamper = func(r *http.Request, body []byte) []byte {
		return []byte(strings.Replace(string(body), "Idle", "Idle ", 1))
	}
	_, err = tampered.Poll(ctx)
	want("tampered body", err, http.StatusBadRequest)

	unsigned := a.Clone()
	unsigned.Tamper = func(r *http.Request, body []byte) []byte { r.Header.Del("Mdm-Signature"); return body }
	_, err = unsigned.Poll(ctx)
	want("unsigned", err, http.StatusBadRequest)

	garbage := a.Clone()
	garbage.Tamper = func(r *http.Request, body []byte) []byte {
		g := []byte("<plist><dict><key>Status")
		sig, _ := mdm.Sign(g, a.Cert, a.Key)
		r.Header.Set("Mdm-Signature", sig)
		return g
	}
	_, err = garbage.Poll(ctx)
	want("garbage plist", err, http.StatusBadRequest)

	stranger := a.Clone()
	stranger.Cert, stranger.Key = foreign.cert, foreign.key
	_, err = stranger.Poll(ctx)
	want("cert from another CA", err, http.StatusForbidden)

	// B answers A's command: refused, and A's command stays queued.
	thief := b.Clone()
	thief.Tamper = func(r *http.Request, body []byte) []byte {
		forged := strings.Replace(string(body), "<string>Idle</string>", "<string>Acknowledged</string><key>CommandUUID</key><string>"+aCmd+"</string>", 1)
		sig, _ := mdm.Sign([]byte(forged), b.Cert, b.Key)
		r.Header.Set("Mdm-Signature", sig)
		return []byte(forged)
	}
	_, err = thief.Poll(ctx)
	want("answering another device's command", err, http.StatusBadRequest)
	if q, _ := s.store.Queue(ctx, a.UDID); len(q) != 1 || q[0].UUID != aCmd {
		t.Errorf("A's queue after B's forgery: %+v", q)
	}
	// And B never sees A's command.
	if done, err := b.Poll(ctx); err != nil || len(done) != 0 {
		t.Errorf("B fetched %d commands (%v)", len(done), err)
	}

	s.revoked[mdm.CertFingerprint(a.Cert)] = true
	_, err = a.Poll(ctx)
	want("revoked cert", err, http.StatusForbidden)
}

func pool(cas ...*scep.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

type dmHandler struct {
	got chan *mdm.DeclarativeManagement
}

func (h dmHandler) DeclarativeManagement(_ context.Context, e *mdm.Enrollment, m *mdm.DeclarativeManagement) ([]byte, error) {
	h.got <- m
	return []byte(`{"SyncTokens":{"DeclarationsToken":"` + e.ID + `"}}`), nil
}

// DeclarativeManagement check-ins reach the pluggable handler, with the
// enrollment they come from; without a handler they are refused, not lost.
func TestDeclarativeManagement(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	d := s.device(t)
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	if _, err := d.DeclarativeManagement(ctx, "tokens", nil); err == nil {
		t.Error("DeclarativeManagement without a handler succeeded")
	}
	h := dmHandler{got: make(chan *mdm.DeclarativeManagement, 1)}
	s.svc.DM = h
	out, err := d.DeclarativeManagement(ctx, "status", []byte(`{"StatusItems":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	m := <-h.got
	if m.Endpoint != "status" || string(m.Data) != `{"StatusItems":{}}` || !strings.Contains(string(out), d.UDID) {
		t.Errorf("handler got %+v, device got %s", m, out)
	}
}

// Service.Admit sees every Authenticate before anything is stored: a
// refusal is a 403 and leaves no enrollment and no binding, and any other
// error is a 500.
func TestAdmit(t *testing.T) {
	s := newServer(t)
	var seen []string
	s.svc.Admit = func(_ context.Context, m *mdm.Authenticate, fp string) error {
		seen = append(seen, m.SerialNumber)
		switch m.SerialNumber {
		case "REFUSED":
			return fmt.Errorf("%w: serial number REFUSED is not pre-enrolled", mdm.ErrNotAdmitted)
		case "BROKEN":
			return errors.New("database unavailable")
		}
		if len(fp) != 64 {
			t.Errorf("Admit got fingerprint %q", fp)
		}
		return nil
	}
	ctx := context.Background()
	for serial, code := range map[string]int{"REFUSED": http.StatusForbidden, "BROKEN": http.StatusInternalServerError} {
		d := s.device(t)
		d.SerialNumber = serial
		err := d.Authenticate(ctx)
		var he *mdmtest.HTTPError
		if !errors.As(err, &he) || he.StatusCode != code {
			t.Errorf("%s: Authenticate = %v, want %d", serial, err, code)
		}
		if _, err := s.store.Enrollment(ctx, d.UDID); !errors.Is(err, mdm.ErrNotFound) {
			t.Errorf("%s: a refused device has an enrollment (%v)", serial, err)
		}
		if _, err := s.store.EnrollmentForCert(ctx, mdm.CertFingerprint(d.Cert)); !errors.Is(err, mdm.ErrNotFound) {
			t.Errorf("%s: a refused device's certificate is bound (%v)", serial, err)
		}
	}
	d := s.device(t)
	d.SerialNumber = "WELCOME"
	if err := d.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[2] != "WELCOME" {
		t.Errorf("Admit saw %v, want one call per Authenticate", seen)
	}
}
