package mdm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
)

// Check-ins and results reach a webhook receiver, signed; the receiver can
// tell a forged or replayed request.
func TestWebhook(t *testing.T) {
	secret := []byte("s3cret")
	got := make(chan mdm.WebhookEvent, 10)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := mdm.VerifyWebhook(secret, r.Header.Get(mdm.WebhookSignatureHeader), body, time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev mdm.WebhookEvent
		json.Unmarshal(body, &ev)
		got <- ev
	}))
	defer receiver.Close()

	s := newServer(t)
	hook := mdm.NewWebhook(receiver.URL, secret, s.svc.Logger)
	s.svc.Events = hook
	ctx := context.Background()
	d := s.device(t)
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	uuid := s.enqueue(t, d.UDID, &mdm.DeviceInformation{Queries: []string{"UDID"}})
	d.Poll(ctx)
	hook.Close()

	var evs []mdm.WebhookEvent
	for len(got) > 0 {
		evs = append(evs, <-got)
	}
	if len(evs) != 3 || evs[0].MessageType != "Authenticate" || evs[1].MessageType != "TokenUpdate" ||
		evs[2].Type != "result" || evs[2].CommandUUID != uuid || evs[2].RequestType != "DeviceInformation" ||
		evs[2].Status != "Acknowledged" || len(evs[2].Plist) == 0 || evs[2].EnrollmentID != d.UDID {
		t.Fatalf("webhook events = %+v", evs)
	}

	body := []byte(`{"type":"checkin"}`)
	good := mdm.SignWebhook(secret, time.Now(), body)
	if err := mdm.VerifyWebhook([]byte("wrong"), good, body, time.Minute); err == nil {
		t.Error("a signature with another secret verified")
	}
	if err := mdm.VerifyWebhook(secret, good, []byte(`{"type":"result"}`), time.Minute); err == nil {
		t.Error("a signature over another body verified")
	}
	old := mdm.SignWebhook(secret, time.Now().Add(-time.Hour), body)
	if err := mdm.VerifyWebhook(secret, old, body, time.Minute); err == nil {
		t.Error("a replayed (old) signature verified")
	}
	if err := mdm.VerifyWebhook(secret, "garbage", body, time.Minute); err == nil {
		t.Error("a malformed header verified")
	}
}
