package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/custodymdm/custody/enroll/campaign"
)

// Outgoing mail settings in the reference server: the SMTP server of the
// organisation, kept in the data dir with the password encrypted under the
// data dir's secret key.

const (
	fileMail      = "mail.json"
	fileSecretKey = "secret.key" // AES-256 key that encrypts secrets at rest
)

// sealedSettings is a settings file whose one secret (a password, a
// webhook's key) is kept sealed: AES-256-GCM under the data dir's secret
// key, nonce then ciphertext, with the file's label as associated data.
type sealedSettings[T any] struct {
	Settings T      `json:"settings"`
	Sealed   []byte `json:"secret_sealed,omitempty"`
}

// loadSealed reads a settings file and opens its secret into the field
// secret points at; nil when there is no file.
func loadSealed[T any](d *dataDir, name string, secret func(*T) *string) (*T, error) {
	var st sealedSettings[T]
	ok, err := readJSONFile(d.file(name), &st)
	if err != nil || !ok {
		return nil, err
	}
	if len(st.Sealed) > 0 {
		p, err := d.open(st.Sealed, []byte(name))
		if err != nil {
			return nil, fmt.Errorf("%s: the secret does not open with %s: %w", name, fileSecretKey, err)
		}
		*secret(&st.Settings) = string(p)
	}
	return &st.Settings, nil
}

// saveSealed writes a settings file with its secret sealed.
func saveSealed[T any](d *dataDir, name string, v *T, secret func(*T) *string) error {
	st := sealedSettings[T]{Settings: *v}
	if p := *secret(v); p != "" {
		sealed, err := d.seal([]byte(p), []byte(name))
		if err != nil {
			return err
		}
		st.Sealed = sealed
	}
	return writeJSONFile(d.file(name), &st)
}

// secretKey returns the data dir's secret key, creating it on first use;
// it is read once (every dashboard request and sealed secret uses it).
func (d *dataDir) secretKey() ([]byte, error) {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	if d.key != nil {
		return d.key, nil
	}
	key, err := os.ReadFile(d.file(fileSecretKey))
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		err = writeFileAtomic(d.file(fileSecretKey), key, 0o600)
	}
	if err == nil && len(key) != 32 {
		err = fmt.Errorf("%s: want 32 bytes", fileSecretKey)
	}
	if err != nil {
		return nil, err
	}
	d.key = key
	return key, nil
}

// seal encrypts a secret with the data dir's key.
func (d *dataDir) seal(plain, label []byte) ([]byte, error) {
	gcm, err := d.gcm()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, label), nil
}

// open decrypts what seal encrypted with the same label.
func (d *dataDir) open(sealed, label []byte) ([]byte, error) {
	gcm, err := d.gcm()
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed secret too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], label)
}

func (d *dataDir) gcm() (cipher.AEAD, error) {
	key, err := d.secretKey()
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func mailPassword(s *campaign.MailSettings) *string { return &s.Password }

// loadMail returns the mail settings with the password opened, or nil
// when none are stored.
func (d *dataDir) loadMail() (*campaign.MailSettings, error) {
	return loadSealed(d, fileMail, mailPassword)
}

func (d *dataDir) saveMail(s *campaign.MailSettings) error {
	return saveSealed(d, fileMail, s, mailPassword)
}

type mailRequest struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	TLS      string `json:"tls"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	From     string `json:"from"`
	FromName string `json:"from_name,omitempty"`
	CAPEM    string `json:"ca_pem,omitempty"`
	// Rate is the most messages per second (0: no limit); PerConnection
	// how many one SMTP session carries (0: campaign.DefaultPerConnection).
	Rate          float64 `json:"rate,omitempty"`
	PerConnection int     `json:"per_connection,omitempty"`
}

type mailJSON struct {
	Host          string  `json:"host"`
	Port          int     `json:"port"`
	TLS           string  `json:"tls"`
	Username      string  `json:"username,omitempty"`
	HasPassword   bool    `json:"has_password"`
	From          string  `json:"from"`
	FromName      string  `json:"from_name,omitempty"`
	CustomCA      bool    `json:"custom_ca"`
	Rate          float64 `json:"rate,omitempty"`
	PerConnection int     `json:"per_connection,omitempty"`
}

func toMailJSON(s *campaign.MailSettings) mailJSON {
	return mailJSON{Host: s.Host, Port: s.Port, TLS: s.TLS, Username: s.Username, HasPassword: s.Password != "",
		From: s.From, FromName: s.FromName, CustomCA: len(s.CAPEM) > 0, Rate: s.Rate, PerConnection: s.PerConnection}
}

// putMail serves PUT /api/v1/mail.
func (s *server) putMail(w http.ResponseWriter, r *http.Request) {
	var req mailRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ms := &campaign.MailSettings{Host: req.Host, Port: req.Port, TLS: req.TLS, Username: req.Username, Password: req.Password,
		From: req.From, FromName: req.FromName, CAPEM: []byte(req.CAPEM), Rate: req.Rate, PerConnection: req.PerConnection}
	if err := ms.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.data.saveMail(ms); err != nil {
		s.log.Error("mail settings", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the mail settings")
		return
	}
	s.log.Info("mail settings stored", "host", ms.Host, "port", ms.Port, "tls", ms.TLS, "from", ms.From)
	writeJSON(w, http.StatusOK, toMailJSON(ms))
}

// getMail serves GET /api/v1/mail (the password is never returned).
func (s *server) getMail(w http.ResponseWriter, r *http.Request) {
	ms, err := s.data.loadMail()
	switch {
	case err != nil:
		s.log.Error("mail settings", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	case ms == nil:
		writeError(w, http.StatusNotFound, "no mail settings: custody mail set")
	default:
		writeJSON(w, http.StatusOK, toMailJSON(ms))
	}
}

type mailTestRequest struct {
	To      string `json:"to"`
	Subject string `json:"subject,omitempty"`
	Message string `json:"message,omitempty"`
}

// testMail serves POST /api/v1/mail/test: one mail, and on failure the
// server's exact reply (502).
func (s *server) testMail(w http.ResponseWriter, r *http.Request) {
	var req mailTestRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.To == "" || strings.ContainsAny(req.To, "<> ") {
		writeError(w, http.StatusBadRequest, "to: give a bare email address")
		return
	}
	ms, err := s.data.loadMail()
	if err != nil || ms == nil {
		writeError(w, http.StatusConflict, "no mail settings: custody mail set")
		return
	}
	m, err := campaign.NewMailer(*ms)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	defer m.Close()
	if req.Subject == "" {
		req.Subject = "Custody test mail"
	}
	if req.Message == "" {
		req.Message = "This is a test mail from Custody: the outgoing mail settings work."
	}
	start := time.Now()
	err = m.Send(r.Context(), &campaign.Message{To: req.To, Subject: req.Subject, Text: req.Message})
	if err != nil {
		s.log.Warn("test mail failed", "to", req.To, "err", err)
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	s.log.Info("test mail sent", "to", req.To, "took", time.Since(start))
	writeJSON(w, http.StatusOK, map[string]string{"sent_to": req.To})
}
