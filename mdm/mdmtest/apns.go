package mdmtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/custodymdm/custody/mdm"
)

// A Push is a notification the fake APNs accepted.
type Push struct {
	Token     string // hex device token
	Topic     string
	PushType  string
	PushMagic string
}

// A Wake is a device's poll after a push woke it.
type Wake struct {
	Device   *Device
	Commands []*mdm.CommandPayload
	Err      error
}

// APNs is a fake Apple Push Notification service: an HTTP/2 TLS server
// speaking the provider API (POST /3/device/{token}). A push to a
// registered device wakes it: it polls its MDM server, as a real device
// does, and the outcome arrives on Wakes.
type APNs struct {
	*httptest.Server
	// Wakes receives one Wake per push delivered to a registered device.
	Wakes chan Wake

	mu           sync.Mutex
	devices      map[string]*Device
	unregistered map[string]bool
	pushes       []Push
}

// NewAPNs starts a fake APNs on a random port of 127.0.0.1 with a
// certificate of its own. Close it when done.
func NewAPNs() *APNs {
	return NewAPNsListener(nil, nil)
}

// NewAPNsListener starts a fake APNs on ln with the TLS certificate cert,
// so that a server configured once (its APNs host and the CA to trust) can
// reach fakes started later; nil for either takes NewAPNs's.
func NewAPNsListener(ln net.Listener, cert *tls.Certificate) *APNs {
	f := &APNs{Wakes: make(chan Wake, 1024), devices: map[string]*Device{}, unregistered: map[string]bool{}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	if ln != nil {
		f.Server.Listener.Close()
		f.Server.Listener = ln
	}
	if cert != nil {
		f.Server.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	f.Server.EnableHTTP2 = true
	f.Server.StartTLS()
	return f
}

// RootCAs returns a pool that trusts the fake's TLS certificate.
func (f *APNs) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.Certificate())
	return p
}

// Register makes pushes to the device's token wake it.
func (f *APNs) Register(d *Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[hex.EncodeToString(d.Token)] = d
}

// Unregister makes APNs answer 410 Unregistered for the device's token, as
// it does for an app that was removed.
func (f *APNs) Unregister(d *Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregistered[hex.EncodeToString(d.Token)] = true
}

// Pushes returns the notifications accepted so far.
func (f *APNs) Pushes() []Push {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Push(nil), f.pushes...)
}

func apnsError(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]any{"reason": reason}
	if code == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	json.NewEncoder(w).Encode(body)
}

func (f *APNs) serve(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	switch {
	case r.ProtoMajor != 2:
		apnsError(w, http.StatusBadRequest, "BadProtocol")
		return
	case r.Method != http.MethodPost || !ok:
		apnsError(w, http.StatusNotFound, "BadPath")
		return
	case r.Header.Get("apns-push-type") != "mdm":
		apnsError(w, http.StatusBadRequest, "InvalidPushType")
		return
	case r.Header.Get("apns-topic") == "":
		apnsError(w, http.StatusBadRequest, "MissingTopic")
		return
	}
	var payload struct {
		MDM string `json:"mdm"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4097))
	if len(body) > 4096 {
		apnsError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	}
	if err := json.Unmarshal(body, &payload); err != nil || payload.MDM == "" {
		apnsError(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	f.mu.Lock()
	d := f.devices[token]
	gone := f.unregistered[token] || d == nil
	if !gone {
		f.pushes = append(f.pushes, Push{Token: token, Topic: r.Header.Get("apns-topic"), PushType: "mdm", PushMagic: payload.MDM})
	}
	f.mu.Unlock()
	if gone {
		apnsError(w, http.StatusGone, "Unregistered")
		return
	}
	if payload.MDM != d.PushMagic || r.Header.Get("apns-topic") != d.Topic {
		// Apple delivers it; the device ignores a push not meant for it.
		w.Header().Set("apns-id", newAPNsID())
		return
	}
	w.Header().Set("apns-id", newAPNsID())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmds, err := d.Poll(ctx)
		f.Wakes <- Wake{Device: d, Commands: cmds, Err: err}
	}()
}

func newAPNsID() string { return strings.ToUpper(uuid.NewString()) }
