package mdm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"
)

// A Pusher wakes enrolled devices so they check in and fetch their commands.
type Pusher interface {
	Push(ctx context.Context, ids []string) ([]PushResult, error)
}

// A PushResult is the outcome of one push.
type PushResult struct {
	EnrollmentID string
	APNsID       string // Apple's id for the notification
	Err          error  // nil when APNs accepted the push
}

// ErrNoPushToken is the Err of a push to an enrollment without a usable
// push token (never sent TokenUpdate, checked out, or unregistered).
var ErrNoPushToken = errors.New("mdm: no valid push token")

// oidUID is the userId attribute; Apple puts the MDM push topic there.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// PushTopic returns the APNs topic of an MDM push certificate (the UID in
// its subject, com.apple.mgmt.External.<uuid>).
func PushTopic(cert *x509.Certificate) (string, error) {
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(oidUID) {
			if s, ok := n.Value.(string); ok && s != "" {
				return s, nil
			}
		}
	}
	return "", errors.New("mdm: push certificate has no UID (topic) in its subject")
}

// APNs pushes MDM notifications (push type mdm, payload {"mdm": PushMagic})
// through Apple's Push Notification service, or any host that speaks its
// HTTP/2 provider API.
type APNs struct {
	client  *apns2.Client
	store   Store
	workers int
	log     *slog.Logger
}

// APNsConfig configures NewAPNs.
type APNsConfig struct {
	// Certificate is the MDM push certificate and key. Without one (a
	// development server) pushes carry no client certificate.
	Certificate tls.Certificate
	// Host is the APNs URL; Apple's production host when empty (MDM push
	// certificates are production certificates).
	Host string
	// RootCAs verify Host's certificate; the system's when nil.
	RootCAs *x509.CertPool
	// Workers bounds concurrent pushes; 16 when zero.
	Workers int
	Logger  *slog.Logger
}

// NewAPNs returns a pusher that reads push details from store and marks
// tokens that APNs reports unregistered (410) invalid there.
func NewAPNs(cfg APNsConfig, store Store) *APNs {
	tlsConfig := &tls.Config{RootCAs: cfg.RootCAs}
	if len(cfg.Certificate.Certificate) > 0 {
		tlsConfig.Certificates = []tls.Certificate{cfg.Certificate}
	}
	client := &apns2.Client{
		Host:        apns2.HostProduction, // not apns2.DefaultHost, a mutable var set to development
		Certificate: cfg.Certificate,
		HTTPClient: &http.Client{
			Transport: &http2.Transport{TLSClientConfig: tlsConfig, ReadIdleTimeout: 15 * time.Second},
			Timeout:   30 * time.Second,
		},
	}
	if cfg.Host != "" {
		client.Host = cfg.Host
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = 16
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &APNs{client: client, store: store, workers: workers, log: log}
}

// Push sends one notification per enrollment, concurrently. Per-device
// failures are in the results; the error is for a failure of the whole.
func (a *APNs) Push(ctx context.Context, ids []string) ([]PushResult, error) {
	results := make([]PushResult, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(a.workers, len(ids)) {
		wg.Go(func() {
			for i := range next {
				results[i] = a.pushOne(ctx, ids[i])
			}
		})
	}
	for i := range ids {
		select {
		case next <- i:
		case <-ctx.Done():
			close(next)
			wg.Wait()
			return results, ctx.Err()
		}
	}
	close(next)
	wg.Wait()
	return results, nil
}

func (a *APNs) pushOne(ctx context.Context, id string) PushResult {
	r := PushResult{EnrollmentID: id}
	e, err := a.store.Enrollment(ctx, id)
	if err != nil {
		r.Err = err
		return r
	}
	if len(e.Token) == 0 || e.PushMagic == "" || e.TokenInvalid || !e.Enabled {
		r.Err = ErrNoPushToken
		return r
	}
	resp, err := a.client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: hex.EncodeToString(e.Token),
		Topic:       e.Topic,
		PushType:    apns2.PushTypeMDM,
		Payload:     []byte(fmt.Sprintf(`{"mdm":%q}`, e.PushMagic)),
		Expiration:  time.Now().Add(7 * 24 * time.Hour),
		Priority:    apns2.PriorityHigh,
	})
	if err != nil {
		r.Err = fmt.Errorf("mdm: push to %s: %w", id, err)
		return r
	}
	r.APNsID = resp.ApnsID
	if resp.Sent() {
		return r
	}
	r.Err = fmt.Errorf("mdm: APNs refused the push to %s: %d %s", id, resp.StatusCode, resp.Reason)
	if resp.StatusCode == http.StatusGone || resp.Reason == apns2.ReasonUnregistered || resp.Reason == apns2.ReasonBadDeviceToken {
		err := a.store.Update(ctx, id, func(e *Enrollment) error { e.TokenInvalid = true; return nil })
		if err != nil {
			a.log.Error("mdm: mark push token invalid", "enrollment", id, "err", err)
		}
		a.log.Info("mdm: push token invalid", "enrollment", id, "reason", resp.Reason)
	}
	return r
}
