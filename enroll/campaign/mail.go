package campaign

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"golang.org/x/time/rate"
)

// TLS modes of an SMTP server.
const (
	TLSNone     = "none"     // plain text (a relay on the local network)
	TLSStartTLS = "starttls" // STARTTLS on the submission port, required
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
)

// MailSettings say how to reach the organisation's SMTP server.
type MailSettings struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	TLS      string `json:"tls"` // TLSNone, TLSStartTLS or TLSImplicit
	Username string `json:"username,omitempty"`
	Password string `json:"-"` // kept encrypted at rest by the server
	From     string `json:"from"`
	FromName string `json:"from_name,omitempty"`
	// CAPEM is a PEM bundle to trust for the server's certificate,
	// besides the system's.
	CAPEM []byte `json:"ca_pem,omitempty"`
	// Timeout bounds connecting and each SMTP exchange (30 s when zero).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Rate is the most messages sent per second (no limit when zero):
	// what the organisation's server or its provider allows.
	Rate float64 `json:"rate,omitempty"`
	// PerConnection is how many messages one SMTP session carries before
	// the mailer reconnects (DefaultPerConnection when zero).
	PerConnection int `json:"per_connection,omitempty"`
}

// ErrMailSettings is returned for settings that cannot work.
var ErrMailSettings = errors.New("campaign: mail settings")

// Check validates the settings.
func (s *MailSettings) Check() error {
	switch {
	case s.Host == "" || strings.ContainsAny(s.Host, " /"):
		return fmt.Errorf("%w: a host name is required", ErrMailSettings)
	case s.Port <= 0 || s.Port > 65535:
		return fmt.Errorf("%w: port %d", ErrMailSettings, s.Port)
	case s.TLS != TLSNone && s.TLS != TLSStartTLS && s.TLS != TLSImplicit:
		return fmt.Errorf("%w: tls %q (want none, starttls or tls)", ErrMailSettings, s.TLS)
	case s.Rate < 0 || s.PerConnection < 0:
		return fmt.Errorf("%w: rate and messages per connection cannot be negative", ErrMailSettings)
	case s.Username != "" && s.Password == "":
		return fmt.Errorf("%w: a user without a password", ErrMailSettings)
	}
	if a, err := mail.ParseAddress(s.From); err != nil || a.Address != s.From {
		return fmt.Errorf("%w: from %q is not a bare address", ErrMailSettings, s.From)
	}
	if len(s.CAPEM) > 0 && !x509.NewCertPool().AppendCertsFromPEM(s.CAPEM) {
		return fmt.Errorf("%w: the CA file holds no PEM certificates", ErrMailSettings)
	}
	return nil
}

// A Message is one mail: text and HTML bodies and inline images (a QR
// code the HTML refers to as cid:NAME).
type Message struct {
	To      string
	ToName  string
	Subject string
	Text    string
	HTML    string // optional
	Inline  map[string][]byte

	// What channels other than mail use: the recipient's mobile number,
	// the enrollment link, the ring and the kind of message.
	Mobile, Link, Ring, Kind string
}

// DefaultPerConnection is how many messages an SMTP session carries
// unless the settings say otherwise.
const DefaultPerConnection = 100

// A Mailer sends mail through one SMTP server, reusing its session. It is
// safe for concurrent use; messages go out one at a time.
type Mailer struct {
	s     MailSettings
	limit *rate.Limiter

	mu   sync.Mutex
	c    *gomail.Client // the open session, if any
	sent int            // messages sent in it
}

// NewMailer checks settings and returns a mailer.
func NewMailer(s MailSettings) (*Mailer, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	m := &Mailer{s: s}
	if s.Rate > 0 {
		m.limit = rate.NewLimiter(rate.Limit(s.Rate), 1)
	}
	return m, nil
}

func (m *Mailer) client() (*gomail.Client, error) {
	s := m.s
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	opts := []gomail.Option{gomail.WithPort(s.Port), gomail.WithTimeout(timeout)}
	tc := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if len(s.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(s.CAPEM)
		tc.RootCAs = pool
	}
	switch s.TLS {
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(tc))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSConfig(tc))
	}
	if s.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(s.Username), gomail.WithPassword(s.Password))
	}
	return gomail.NewClient(s.Host, opts...)
}

func (m *Mailer) message(msg *Message) (*gomail.Msg, error) {
	g := gomail.NewMsg()
	if err := g.FromFormat(m.s.FromName, m.s.From); err != nil {
		return nil, fmt.Errorf("campaign: from: %w", err)
	}
	if err := g.AddToFormat(msg.ToName, msg.To); err != nil {
		return nil, fmt.Errorf("campaign: recipient %q: %w", msg.To, err)
	}
	g.Subject(msg.Subject)
	g.SetBodyString(gomail.TypeTextPlain, msg.Text)
	if msg.HTML != "" {
		g.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	}
	for name, data := range msg.Inline {
		if err := g.EmbedReader(name, bytes.NewReader(data)); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// A SendError is a message the server (SMTP or webhook) did not take,
// with its reply.
type SendError struct {
	Code      int    // the SMTP reply code or HTTP status (0 when there was none)
	Enhanced  string // the enhanced status code (5.7.8...)
	Temporary bool   // worth trying again later: a 4xx SMTP reply, an HTTP 429 or 5xx, a connection failure
	// Unsent says the message certainly did not reach the server: it
	// refused it with a reply, or no connection could be made. Otherwise
	// (a connection lost during the exchange) it may have been delivered.
	Unsent bool
	Err    error
}

func (e *SendError) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	if e.Code == 0 {
		return fmt.Sprintf("campaign: sending: %v", e.Err)
	}
	if e.Enhanced == "" {
		return fmt.Sprintf("campaign: the server refused the message (%s, %d): %v", kind, e.Code, e.Err)
	}
	return fmt.Sprintf("campaign: the server refused the message (%s, %d %s): %v", kind, e.Code, e.Enhanced, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// A Sender delivers messages through one channel: the SMTP server
// (Mailer) or a webhook (Webhook). Send returns a *SendError for what the
// server did not take.
type Sender interface {
	Send(ctx context.Context, msg *Message) error
	Close() error
}

// Send sends one message, at most Rate per second, over an SMTP session
// it keeps open for PerConnection messages.
func (m *Mailer) Send(ctx context.Context, msg *Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.message(msg)
	if err != nil {
		return err
	}
	if m.limit != nil {
		if err := m.limit.Wait(ctx); err != nil {
			return &SendError{Temporary: true, Unsent: true, Err: err}
		}
	}
	if m.c != nil && m.sent >= m.perConnection() {
		m.hangUp()
	}
	if m.c == nil {
		c, err := m.client()
		if err != nil {
			return err
		}
		if err := c.DialWithContext(ctx); err != nil {
			se := sendError(err)
			se.Unsent = true
			if se.Code == 0 {
				se.Temporary = true
			}
			return se
		}
		m.c, m.sent = c, 0
	}
	m.sent++
	if err := m.c.Send(g); err != nil {
		se := sendError(err)
		if se.Code == 0 {
			m.hangUp() // the session's state is unknown: start the next afresh
		}
		return se
	}
	return nil
}

func (m *Mailer) perConnection() int {
	if m.s.PerConnection > 0 {
		return m.s.PerConnection
	}
	return DefaultPerConnection
}

func (m *Mailer) hangUp() {
	if m.c != nil {
		m.c.Close()
		m.c = nil
	}
}

// Close ends the SMTP session, if one is open.
func (m *Mailer) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hangUp()
	return nil
}

func sendError(err error) *SendError {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		return &SendError{Code: code, Enhanced: se.EnhancedStatusCode(), Temporary: se.IsTemp() || code == 0,
			Unsent: code != 0, Err: err}
	}
	return &SendError{Temporary: true, Err: err}
}
