package zerotouch

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
)

// Notification types the Android Management API publishes to the
// enterprise's Pub/Sub topic (the notificationType attribute).
const (
	NotifyEnrollment        = "ENROLLMENT"
	NotifyStatusReport      = "STATUS_REPORT"
	NotifyCommand           = "COMMAND"
	NotifyUsageLogs         = "USAGE_LOGS"
	NotifyEnterpriseUpgrade = "ENTERPRISE_UPGRADE"
	NotifyTest              = "test" // sent when the topic is set
)

// A Notification is one Pub/Sub message from the Android Management API.
type Notification struct {
	Type        string
	MessageID   string
	PublishTime time.Time
	// Device is set for ENROLLMENT and STATUS_REPORT, Operation for
	// COMMAND; Data is the decoded message data in every case.
	Device    *am.Device
	Operation *am.Operation
	Data      []byte
}

// ErrBadPush is returned for a push that is not a Pub/Sub delivery of a
// known Android Management notification.
var ErrBadPush = errors.New("zerotouch: bad Pub/Sub push")

// MaxPushBytes caps a push body.
const MaxPushBytes = 1 << 20

// ParsePush reads a Pub/Sub push delivery: {"message": {"data": base64,
// "attributes": {"notificationType": ...}, "messageId", "publishTime"},
// "subscription": ...}.
func ParsePush(body []byte) (*Notification, error) {
	var env struct {
		Message *struct {
			Data        string            `json:"data"`
			Attributes  map[string]string `json:"attributes"`
			MessageID   string            `json:"messageId"`
			PublishTime string            `json:"publishTime"`
		} `json:"message"`
		Subscription string `json:"subscription"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrBadPush, err)
	}
	if env.Message == nil {
		return nil, fmt.Errorf("%w: no message", ErrBadPush)
	}
	m := env.Message
	n := &Notification{Type: m.Attributes["notificationType"], MessageID: m.MessageID}
	if m.PublishTime != "" {
		t, err := time.Parse(time.RFC3339Nano, m.PublishTime)
		if err != nil {
			return nil, fmt.Errorf("%w: publishTime %q", ErrBadPush, m.PublishTime)
		}
		n.PublishTime = t
	}
	data, err := base64.StdEncoding.DecodeString(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: data is not base64", ErrBadPush)
	}
	n.Data = data
	switch n.Type {
	case NotifyEnrollment, NotifyStatusReport:
		n.Device = new(am.Device)
		if err := json.Unmarshal(data, n.Device); err != nil || n.Device.Name == "" {
			return nil, fmt.Errorf("%w: %s data is not a device", ErrBadPush, n.Type)
		}
	case NotifyCommand:
		n.Operation = new(am.Operation)
		if err := json.Unmarshal(data, n.Operation); err != nil || n.Operation.Name == "" {
			return nil, fmt.Errorf("%w: COMMAND data is not an operation", ErrBadPush)
		}
	case NotifyUsageLogs, NotifyEnterpriseUpgrade, NotifyTest:
	case "":
		return nil, fmt.Errorf("%w: no notificationType attribute", ErrBadPush)
	default:
		return nil, fmt.Errorf("%w: unknown notificationType %q", ErrBadPush, n.Type)
	}
	return n, nil
}

// A PushHandler is the HTTPS endpoint of a Pub/Sub push subscription. It
// answers 204 when Handle took the notification, 400 for a malformed push
// or an unknown notification type (logged), 403 without the shared
// secret, and 503 when Handle failed, so that Pub/Sub delivers it again.
type PushHandler struct {
	// Secret, when set, must be the push URL's token query parameter.
	Secret string
	Handle func(ctx context.Context, n *Notification) error
	Logger *slog.Logger
}

func (h *PushHandler) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *PushHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST Pub/Sub push deliveries here", http.StatusMethodNotAllowed)
		return
	}
	if h.Secret != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(h.Secret)) != 1 {
		h.log().Warn("android: push refused: wrong or missing token", "remote", r.RemoteAddr)
		http.Error(w, "push refused: wrong or missing token", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPushBytes+1))
	if err != nil || len(body) > MaxPushBytes {
		http.Error(w, fmt.Sprintf("push body unreadable or larger than %d bytes", MaxPushBytes), http.StatusBadRequest)
		return
	}
	n, err := ParsePush(body)
	if err != nil {
		h.log().Warn("android: push refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.Handle(r.Context(), n); err != nil {
		h.log().Error("android: push", "type", n.Type, "message", n.MessageID, "err", err)
		http.Error(w, "could not handle the notification; deliver it again", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
