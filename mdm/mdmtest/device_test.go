package mdmtest_test

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

// identity returns a device certificate issued by ca.
func identity(t *testing.T, ca *scep.CA) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := scep.NewCSR(key, pkix.Name{CommonName: "mdmtest"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignCSR(context.Background(), csr)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newCA(t *testing.T) *scep.CA {
	t.Helper()
	ca, err := scep.NewCA("mdmtest CA", 2048, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// A seen request is what a recording server got.
type seen struct {
	path, method, contentType, userAgent string
	signed                               bool
	body                                 map[string]any
}

type recorder struct {
	mu   sync.Mutex
	reqs []seen
	// answer, when set, answers a request instead of an empty 200.
	answer func(w http.ResponseWriter, body map[string]any) bool
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	plist.Unmarshal(raw, &body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{r.URL.Path, r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"),
		r.Header.Get("Mdm-Signature") != "", body})
	rec.mu.Unlock()
	if rec.answer != nil && rec.answer(w, body) {
		return
	}
}

func (rec *recorder) take() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

// Each request goes where Apple's devices send it, with their content
// types, User-Agent and signature, and the keys of the device's platform.
func TestWireFormat(t *testing.T) {
	ca := newCA(t)
	rec := &recorder{}
	hs := httptest.NewServer(rec)
	defer hs.Close()
	ctx := context.Background()

	cert, key := identity(t, ca)
	for _, d := range []*mdmtest.Device{mdmtest.NewDevice(cert, key), mdmtest.NewMac(cert, key)} {
		d.CheckInURL, d.ServerURL, d.Topic = hs.URL+"/checkin", hs.URL+"/mdm", "com.apple.mgmt.External.x"
		d.IMEI = "35 209900 176148 1"
		if err := d.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.TokenUpdate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.CheckOut(ctx); err != nil {
			t.Fatal(err)
		}
		ua := "MDM/1.0"
		if d.Platform == mdmtest.PlatformMacOS {
			ua = "MDM-OSX/1.0 mdmclient/1090"
		}
		want := []struct{ path, contentType, kind string }{
			{"/checkin", mdmtest.ContentTypeCheckin, "Authenticate"},
			{"/checkin", mdmtest.ContentTypeCheckin, "TokenUpdate"},
			{"/mdm", mdmtest.ContentTypeMDM, "Idle"},
			{"/checkin", mdmtest.ContentTypeCheckin, "CheckOut"},
		}
		got := rec.take()
		if len(got) != len(want) {
			t.Fatalf("%s sent %d requests, want %d", d.Platform, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			kind, _ := g.body["MessageType"].(string)
			if kind == "" {
				kind, _ = g.body["Status"].(string)
			}
			if g.path != w.path || g.method != http.MethodPut || g.contentType != w.contentType || g.userAgent != ua || !g.signed || kind != w.kind {
				t.Errorf("%s request %d: %+v, want %s to %s as %s", d.Platform, i, g, w.kind, w.path, w.contentType)
			}
		}
		auth := got[0].body
		switch d.Platform {
		case mdmtest.PlatformIOS:
			if auth["Model"] != nil || auth["DeviceName"] != nil || auth["IMEI"] != d.IMEI || auth["ProductName"] != "iPhone15,2" {
				t.Errorf("an iPhone's Authenticate: %v", auth)
			}
		case mdmtest.PlatformMacOS:
			if auth["Model"] != "Mac14,2" || auth["DeviceName"] != "Test Mac" || auth["IMEI"] != nil {
				t.Errorf("a Mac's Authenticate: %v", auth)
			}
			if got[1].body["UnlockToken"] != nil {
				t.Errorf("a Mac sent an UnlockToken: %v", got[1].body)
			}
		}
	}

	// A User Enrollment names itself by EnrollmentID only.
	byod := mdmtest.NewDevice(cert, key)
	byod.ServerURL, byod.Topic, byod.EnrollmentID = hs.URL+"/mdm", "t", "A7F3C2E1B4D5968776A5B4C3D2E1F0A9B8C7D6E5"
	byod.Authenticate(ctx)
	byod.Poll(ctx)
	for _, g := range rec.take() {
		if g.body["UDID"] != nil || g.body["SerialNumber"] != nil || g.body["EnrollmentID"] != byod.EnrollmentID {
			t.Errorf("a User Enrollment sent %v", g.body)
		}
	}
}

// A device with SignMessage false presents its identity as the TLS client
// certificate, and mdm.Service takes it from the connection.
func TestMutualTLS(t *testing.T) {
	ca := newCA(t)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	svc := &mdm.Service{Store: db.MDM(), Auth: &mdm.Authenticator{Roots: roots}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var signed bool
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		signed = signed || r.Header.Get("Mdm-Signature") != ""
		svc.ServeHTTP(w, r)
	}))
	// The device's certificate is verified by the service, not the TLS
	// layer, as behind a server that asks every client for one.
	hs.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	hs.StartTLS()
	defer hs.Close()

	cert, key := identity(t, ca)
	d := mdmtest.NewDevice(cert, key)
	d.SignMessage, d.ServerURL, d.Topic, d.HTTPClient = false, hs.URL+"/mdm", "t", hs.Client()
	ctx := context.Background()
	if err := d.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := db.MDM().Enrollment(ctx, d.UDID)
	if err != nil || !e.Enabled || e.CertFingerprint != mdm.CertFingerprint(cert) {
		t.Fatalf("enrollment over mutual TLS: %+v, %v", e, err)
	}
	if signed {
		t.Error("a device with SignMessage false sent Mdm-Signature")
	}
	// Without a client certificate the service refuses it.
	anon := mdmtest.NewDevice(cert, key)
	anon.SignMessage, anon.ServerURL, anon.HTTPClient = true, hs.URL+"/mdm", hs.Client()
	anon.Tamper = func(r *http.Request, body []byte) []byte { r.Header.Del("Mdm-Signature"); return body }
	var he *mdmtest.HTTPError
	if _, err := anon.Poll(ctx); !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Errorf("no signature and no client certificate: %v, want 400", err)
	}
}

// UserAuthenticate's two steps, with each answer a server may give.
func TestUserAuthenticate(t *testing.T) {
	ca := newCA(t)
	cert, key := identity(t, ca)
	const realm, nonce = "custody", "dcd98b7102dd2f0e8b11d0f600bfb0c093"
	ha := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	want := ha(ha("ana:"+realm+":s3cret") + ":" + nonce + ":" + ha("PUT:/"))
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, body map[string]any) bool
		err    error
		token  string
	}{
		{"declined", func(w http.ResponseWriter, body map[string]any) bool {
			w.WriteHeader(http.StatusGone)
			return true
		}, mdmtest.ErrUserDeclined, ""},
		{"zero-length challenge", func(w http.ResponseWriter, body map[string]any) bool {
			if body["DigestResponse"] != nil {
				t.Error("a second UserAuthenticate after a zero-length challenge")
			}
			b, _ := plist.Marshal(map[string]string{"DigestChallenge": ""})
			w.Write(b)
			return true
		}, nil, ""},
		{"digest", func(w http.ResponseWriter, body map[string]any) bool {
			resp, _ := body["DigestResponse"].(string)
			var b []byte
			if resp == "" {
				b, _ = plist.Marshal(map[string]string{"DigestChallenge": fmt.Sprintf(`Digest realm="%s", nonce="%s"`, realm, nonce)})
			} else if m := regexp.MustCompile(`response="([0-9a-f]+)"`).FindStringSubmatch(resp); m != nil && m[1] == want {
				b, _ = plist.Marshal(map[string]string{"AuthToken": "token-for-ana"})
			} else {
				http.Error(w, "bad digest "+resp, http.StatusForbidden)
				return true
			}
			w.Write(b)
			return true
		}, nil, "token-for-ana"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answer: tc.answer}
			hs := httptest.NewServer(rec)
			defer hs.Close()
			mac := mdmtest.NewMac(cert, key)
			mac.ServerURL, mac.Topic = hs.URL, "t"
			u := mac.User("7A1C7E4B-9D2F-4E35-B6A8-1F0C3D5E7A9B", "ana", "Ana Lima")
			u.Password = "s3cret"
			err := u.Authenticate(context.Background())
			if !errors.Is(err, tc.err) || u.AuthToken() != tc.token {
				t.Fatalf("Authenticate: %v, token %q; want %v, %q", err, u.AuthToken(), tc.err, tc.token)
			}
			for _, g := range rec.take() {
				if g.contentType != mdmtest.ContentTypeCheckin || g.body["UDID"] != mac.UDID || g.body["UserID"] != u.UserID {
					t.Errorf("UserAuthenticate request %+v", g)
				}
			}
		})
	}
	// The user channel's own messages.
	rec := &recorder{}
	hs := httptest.NewServer(rec)
	defer hs.Close()
	mac := mdmtest.NewMac(cert, key)
	mac.ServerURL, mac.Topic = hs.URL, "t"
	u := mac.User("7A1C7E4B-9D2F-4E35-B6A8-1F0C3D5E7A9B", "ana", "Ana Lima")
	u.TokenUpdate(context.Background())
	u.Poll(context.Background())
	got := rec.take()
	if len(got) != 2 || got[0].body["NotOnConsole"] != false || got[0].body["UserShortName"] != "ana" ||
		got[1].body["UserID"] != u.UserID || got[1].contentType != mdmtest.ContentTypeMDM {
		t.Errorf("user channel requests: %+v", got)
	}
}

// A command the device cannot read is answered CommandFormatError.
func TestCommandFormatError(t *testing.T) {
	ca := newCA(t)
	cert, key := identity(t, ca)
	var reports []map[string]any
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		plist.Unmarshal(raw, &body)
		reports = append(reports, body)
		if body["Status"] == "Idle" {
			// DeviceLock's PIN is a string; an array is malformed.
			io.WriteString(w, `<plist><dict><key>CommandUUID</key><string>BAD-1</string><key>Command</key><dict>`+
				`<key>RequestType</key><string>DeviceLock</string><key>PIN</key><array/></dict></dict></plist>`)
		}
	}))
	defer hs.Close()
	d := mdmtest.NewDevice(cert, key)
	d.ServerURL = hs.URL
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[1]["Status"] != "CommandFormatError" || reports[1]["CommandUUID"] != "BAD-1" {
		t.Errorf("reports: %v", reports)
	}
}
