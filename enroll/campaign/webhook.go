package campaign

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// WebhookSettings say where the webhook channel posts: an SMS gateway,
// a Teams or Slack workflow, or any bridge that takes JSON.
type WebhookSettings struct {
	URL string `json:"url"`
	// Secret, when set, signs each body: the header
	// Custody-Signature: sha256=HEX is HMAC-SHA256 of the body under it.
	Secret string `json:"-"` // kept encrypted at rest by the server
	// Rate is the most messages posted per second (no limit when zero).
	Rate float64 `json:"rate,omitempty"`
	// Timeout bounds each request (30 s when zero).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// ErrWebhookSettings is returned for webhook settings that cannot work.
var ErrWebhookSettings = errors.New("campaign: webhook settings")

// Check validates the settings.
func (s *WebhookSettings) Check() error {
	u, err := url.Parse(s.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%w: url %q is not an http(s) URL", ErrWebhookSettings, s.URL)
	case s.Rate < 0:
		return fmt.Errorf("%w: the rate cannot be negative", ErrWebhookSettings)
	}
	return nil
}

// A WebhookMessage is the JSON body the webhook channel posts. Text is
// the whole message (so a Slack or Teams incoming webhook shows it as
// is); the other fields let a bridge build its own (an SMS to Mobile).
type WebhookMessage struct {
	Text    string `json:"text"`
	To      string `json:"to"`
	Name    string `json:"name,omitempty"`
	Mobile  string `json:"mobile,omitempty"`
	Subject string `json:"subject"`
	Link    string `json:"link,omitempty"`
	Ring    string `json:"ring,omitempty"`
	Kind    string `json:"kind,omitempty"` // invitation or reminder
}

// SignatureHeader carries the body's HMAC-SHA256 under the webhook's
// secret, as "sha256=" and the hex digest.
const SignatureHeader = "Custody-Signature"

// Sign returns the signature header value of a body under a secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// A Webhook posts messages to a URL.
type Webhook struct {
	s     WebhookSettings
	hc    *http.Client
	limit *rate.Limiter
}

// NewWebhook checks settings and returns the channel.
func NewWebhook(s WebhookSettings, hc *http.Client) (*Webhook, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if hc == nil {
		timeout := s.Timeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		hc = &http.Client{Timeout: timeout}
	}
	w := &Webhook{s: s, hc: hc}
	if s.Rate > 0 {
		w.limit = rate.NewLimiter(rate.Limit(s.Rate), 1)
	}
	return w, nil
}

// Send posts a message. A 2xx answer delivers it; 429 and 5xx are
// temporary failures (a Retry-After is left to the job's backoff), any
// other status a permanent one.
func (w *Webhook) Send(ctx context.Context, msg *Message) error {
	body, err := json.Marshal(WebhookMessage{
		Text: msg.Subject + "\n\n" + msg.Text, To: msg.To, Name: msg.ToName, Mobile: msg.Mobile,
		Subject: msg.Subject, Link: msg.Link, Ring: msg.Ring, Kind: msg.Kind,
	})
	if err != nil {
		return err
	}
	if w.limit != nil {
		if err := w.limit.Wait(ctx); err != nil {
			return &SendError{Temporary: true, Unsent: true, Err: err}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.s.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(w.s.Secret, body))
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return &SendError{Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &SendError{
		Code: resp.StatusCode, Unsent: true,
		Temporary: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
		Err:       fmt.Errorf("%s %s: %s", strconv.Itoa(resp.StatusCode), http.StatusText(resp.StatusCode), bytes.TrimSpace(reply)),
	}
}

// Close implements Sender.
func (w *Webhook) Close() error { return nil }
