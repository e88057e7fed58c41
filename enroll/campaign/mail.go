// Package campaign runs migration campaigns: outgoing mail through the
// organisation's own SMTP server, and (in later steps) rings of users,
// invitations with their links and QR codes, and reminders.
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
	"time"

	gomail "github.com/wneessen/go-mail"
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
}

// A Mailer sends mail through one SMTP server.
type Mailer struct {
	s MailSettings
}

// NewMailer checks settings and returns a mailer.
func NewMailer(s MailSettings) (*Mailer, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	return &Mailer{s: s}, nil
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

// A SendError is a message the server refused, with its reply.
type SendError struct {
	Code      int    // the SMTP reply code (0 when the session failed before one)
	Enhanced  string // the enhanced status code (5.7.8...)
	Temporary bool   // a 4xx reply: worth trying again later
	Err       error
}

func (e *SendError) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	if e.Code == 0 {
		return fmt.Sprintf("campaign: sending mail: %v", e.Err)
	}
	return fmt.Sprintf("campaign: the SMTP server refused the mail (%s, %d %s): %v", kind, e.Code, e.Enhanced, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Send sends one message in its own SMTP session.
func (m *Mailer) Send(ctx context.Context, msg *Message) error {
	c, err := m.client()
	if err != nil {
		return err
	}
	g, err := m.message(msg)
	if err != nil {
		return err
	}
	if err := c.DialAndSendWithContext(ctx, g); err != nil {
		return sendError(err)
	}
	return nil
}

func sendError(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return &SendError{Code: se.ErrorCode(), Enhanced: se.EnhancedStatusCode(), Temporary: se.IsTemp(), Err: err}
	}
	return &SendError{Err: err}
}
