package zerotouch

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

func push(typ, data string) string {
	return `{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) + `","attributes":{"notificationType":"` + typ +
		`"},"messageId":"1","publishTime":"2026-11-21T18:00:00.123Z"},"subscription":"projects/p/subscriptions/s"}`
}

// The fake's devices push ENROLLMENT, COMMAND and STATUS_REPORT to the
// handler, as Google's push subscription does.
func TestPushHandler(t *testing.T) {
	var got []*Notification
	h := &PushHandler{Secret: "s3cret", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handle: func(_ context.Context, n *Notification) error { got = append(got, n); return nil }}
	srv := httptest.NewServer(h)
	defer srv.Close()
	fake := zerotouchtest.New()
	defer fake.Close()
	fake.PushURL = srv.URL + "/?token=s3cret"
	ctx := context.Background()
	m, _ := NewManagement(ctx, fake.AddEnterprise("E"), option.WithEndpoint(fake.URL+"/"), option.WithoutAuthentication())
	m.PutPolicy(ctx, "p", &am.Policy{})
	tok, _ := m.CreateToken(ctx, TokenSpec{PolicyID: "p"})
	d, err := fake.ScanQR(QRPayload(tok.Value), zerotouchtest.DeviceInfo{Serial: "S1"})
	if err != nil {
		t.Fatal(err)
	}
	m.IssueCommand(ctx, d.Name, &am.Command{Type: "LOCK"})
	if _, err := d.Poll(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Type != NotifyEnrollment || got[0].Device.HardwareInfo.SerialNumber != "S1" ||
		got[1].Type != NotifyCommand || !got[1].Operation.Done || got[2].Type != NotifyStatusReport {
		t.Fatalf("notifications %+v", got)
	}

	for _, tc := range []struct {
		name, url, body string
		code            int
	}{
		{"no token", "/", push("test", ""), 403},
		{"wrong token", "/?token=nope", push("test", ""), 403},
		{"not JSON", "/?token=s3cret", "hello", 400},
		{"no message", "/?token=s3cret", `{"subscription":"s"}`, 400},
		{"bad base64", "/?token=s3cret", `{"message":{"data":"***","attributes":{"notificationType":"test"}}}`, 400},
		{"unknown type", "/?token=s3cret", push("SOMETHING_NEW", "{}"), 400},
		{"no type", "/?token=s3cret", `{"message":{"data":""}}`, 400},
		{"device is not a device", "/?token=s3cret", push("ENROLLMENT", "[1,2]"), 400},
		{"bad publishTime", "/?token=s3cret", strings.Replace(push("test", ""), "2026-11-21T18:00:00.123Z", "yesterday", 1), 400},
		{"test message", "/?token=s3cret", push("test", ""), 204},
	} {
		resp, err := http.Post(srv.URL+tc.url, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
	}
	h.Handle = func(context.Context, *Notification) error { return errors.New("database down") }
	resp, _ := http.Post(srv.URL+"/?token=s3cret", "application/json", strings.NewReader(push("test", "")))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a failing handler: HTTP %d, want 503 so Pub/Sub redelivers", resp.StatusCode)
	}
}

// FuzzParsePush: malformed pushes are ErrBadPush, never a panic.
func FuzzParsePush(f *testing.F) {
	f.Add([]byte(push("ENROLLMENT", `{"name":"enterprises/e/devices/d"}`)))
	f.Add([]byte(push("COMMAND", `{"name":"enterprises/e/devices/d/operations/o","done":true}`)))
	f.Add([]byte(`{"message":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParsePush(body)
		if err != nil {
			if !errors.Is(err, ErrBadPush) {
				t.Fatalf("error that is not ErrBadPush: %v", err)
			}
			return
		}
		if n.Type == "" || (n.Type == NotifyCommand) != (n.Operation != nil) {
			t.Fatalf("accepted %+v", n)
		}
	})
}
