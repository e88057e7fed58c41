package mdm_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

// A push wakes the device, which fetches and runs its command; a token APNs
// calls unregistered is not pushed to again.
func TestPushWakesDevice(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	fake := mdmtest.NewAPNs()
	defer fake.Close()
	pusher := mdm.NewAPNs(mdm.APNsConfig{Host: fake.URL, RootCAs: fake.RootCAs(), Logger: s.svc.Logger}, s.store)

	d := s.device(t)
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	fake.Register(d)
	lock := s.enqueue(t, d.UDID, &mdm.DeviceLock{Message: "pushed"})

	results, err := pusher.Push(ctx, []string{d.UDID, "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Err != nil || results[0].APNsID == "" {
		t.Fatalf("push to the device: %+v", results[0])
	}
	if !errors.Is(results[1].Err, mdm.ErrNotFound) {
		t.Errorf("push to an unknown enrollment: %v", results[1].Err)
	}
	select {
	case w := <-fake.Wakes:
		if w.Err != nil || len(w.Commands) != 1 || w.Commands[0].CommandUUID != lock {
			t.Fatalf("woken device ran %v (%v), want the DeviceLock", w.Commands, w.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the push did not wake the device")
	}
	p := fake.Pushes()
	if len(p) != 1 || p[0].PushMagic != d.PushMagic || p[0].Topic != d.Topic || p[0].PushType != "mdm" {
		t.Errorf("APNs saw %+v", p)
	}

	fake.Unregister(d)
	results, _ = pusher.Push(ctx, []string{d.UDID})
	if results[0].Err == nil {
		t.Fatal("push to an unregistered token succeeded")
	}
	if e, _ := s.store.Enrollment(ctx, d.UDID); !e.TokenInvalid {
		t.Error("410 Unregistered did not mark the token invalid")
	}
	results, _ = pusher.Push(ctx, []string{d.UDID})
	if !errors.Is(results[0].Err, mdm.ErrNoPushToken) {
		t.Errorf("push after 410: %v, want ErrNoPushToken", results[0].Err)
	}
	// A new TokenUpdate makes the token valid again.
	d.TokenUpdate(ctx)
	if e, _ := s.store.Enrollment(ctx, d.UDID); e.TokenInvalid {
		t.Error("TokenUpdate did not clear TokenInvalid")
	}
}

func TestPushTopic(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		Subject: pkix.Name{CommonName: "APSP:2f6c1b9e", ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "com.apple.mgmt.External.2f6c1b9e-3d4a"},
		}},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	if topic, err := mdm.PushTopic(cert); err != nil || topic != "com.apple.mgmt.External.2f6c1b9e-3d4a" {
		t.Errorf("PushTopic = %q, %v", topic, err)
	}
	tmpl.Subject.ExtraNames = nil
	der, _ = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ = x509.ParseCertificate(der)
	if _, err := mdm.PushTopic(cert); err == nil {
		t.Error("PushTopic of a certificate without UID succeeded")
	}
}
