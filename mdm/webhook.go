package mdm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebhookSignatureHeader carries a webhook request's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>".
const WebhookSignatureHeader = "X-Custody-Signature"

// WebhookEvent is the JSON body of a webhook request.
type WebhookEvent struct {
	Type         string    `json:"type"` // "checkin" or "result"
	EnrollmentID string    `json:"enrollment_id"`
	MessageType  string    `json:"message_type,omitempty"`
	CommandUUID  string    `json:"command_uuid,omitempty"`
	RequestType  string    `json:"request_type,omitempty"`
	Status       string    `json:"status,omitempty"`
	Plist        []byte    `json:"plist,omitempty"` // a result's raw plist
	Time         time.Time `json:"time"`
}

// A Webhook is an EventHandler that POSTs events to a URL, signed with a
// shared secret. Events are queued and sent in the background, in order,
// with retries, so a slow receiver never holds up a device; when the queue
// is full, events are dropped and logged.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	log    *slog.Logger
	queue  chan *WebhookEvent
	done   chan struct{}
	once   sync.Once
}

// NewWebhook starts a webhook sender. Close it to flush and stop.
func NewWebhook(url string, secret []byte, logger *slog.Logger) *Webhook {
	if logger == nil {
		logger = slog.Default()
	}
	w := &Webhook{
		url: url, secret: secret, log: logger,
		client: &http.Client{Timeout: 10 * time.Second},
		queue:  make(chan *WebhookEvent, 4096),
		done:   make(chan struct{}),
	}
	go w.run()
	return w
}

// HandleEvent implements EventHandler.
func (w *Webhook) HandleEvent(_ context.Context, e *Event) {
	ev := &WebhookEvent{Type: e.Type, EnrollmentID: e.EnrollmentID, MessageType: e.MessageType, Time: time.Now().UTC()}
	if r := e.Result; r != nil {
		ev.CommandUUID, ev.RequestType, ev.Status, ev.Plist = r.CommandUUID, r.RequestType, r.Status, r.Raw
	}
	select {
	case w.queue <- ev:
	default:
		w.log.Warn("mdm: webhook queue full, event dropped", "type", ev.Type, "enrollment", ev.EnrollmentID)
	}
}

// Close sends the queued events and stops.
func (w *Webhook) Close() {
	w.once.Do(func() { close(w.queue) })
	<-w.done
}

func (w *Webhook) run() {
	defer close(w.done)
	for ev := range w.queue {
		body, _ := json.Marshal(ev)
		for attempt := 0; attempt < 4; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt*attempt) * 250 * time.Millisecond)
			}
			if err := w.send(body); err != nil {
				w.log.Warn("mdm: webhook", "attempt", attempt+1, "err", err)
				continue
			}
			break
		}
	}
}

func (w *Webhook) send(body []byte) error {
	req, err := http.NewRequest(http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(WebhookSignatureHeader, SignWebhook(w.secret, time.Now(), body))
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// SignWebhook returns the signature header value for body sent at t.
func SignWebhook(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// VerifyWebhook checks a webhook request's signature header against its
// body, refusing signatures older than maxAge (a replay).
func VerifyWebhook(secret []byte, header string, body []byte, maxAge time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("mdm: webhook signature header malformed")
	}
	if age := time.Since(time.Unix(sec, 0)); age > maxAge || age < -maxAge {
		return errors.New("mdm: webhook signature too old")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, webhookMAC(secret, ts, body)) {
		return errors.New("mdm: webhook signature does not match")
	}
	return nil
}
