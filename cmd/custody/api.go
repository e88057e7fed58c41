package main

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/scep"
)

// Admin API handlers: decode, call the scep package or its store, encode.

type challengeRequest struct {
	TTL  string `json:"ttl,omitempty"` // Go duration; scep.DefaultChallengeTTL when empty
	Note string `json:"note,omitempty"`
	For  string `json:"for,omitempty"`
}

type challengeResponse struct {
	ID        string    `json:"id"`
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expires_at"`
	Note      string    `json:"note,omitempty"`
	For       string    `json:"for,omitempty"`
}

// maxMintTTL bounds how long a challenge or an enrollment link may live.
const maxMintTTL = 90 * 24 * time.Hour

// validateMint checks the fields shared by the requests that mint a
// challenge or an enrollment link. It returns the TTL (zero for the
// default) or a message for a 400.
func validateMint(ttlText, note, mintedFor string) (time.Duration, string) {
	var ttl time.Duration
	if ttlText != "" {
		var err error
		ttl, err = time.ParseDuration(ttlText)
		if err != nil || ttl <= 0 || ttl > maxMintTTL {
			return 0, "ttl: want a positive duration up to 2160h, such as 30m or 24h"
		}
	}
	if len(note) > 1024 || len(mintedFor) > 256 {
		return 0, "note (1024 bytes) or for (256 bytes) too long"
	}
	return ttl, ""
}

func (s *server) createChallenge(w http.ResponseWriter, r *http.Request) {
	var req challengeRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, msg := validateMint(req.TTL, req.Note, req.For)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if !s.checkMint(w, r, req.For) {
		return
	}
	c, secret, err := scep.NewChallenge(r.Context(), s.st.SCEP, ttl, req.Note, req.For)
	if err != nil {
		s.log.Error("create challenge", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the challenge")
		return
	}
	s.log.Info("challenge created", "challenge_id", c.ID, "for", c.For, "expires_at", c.ExpiresAt)
	writeJSON(w, http.StatusCreated, challengeResponse{ID: c.ID, Challenge: secret, ExpiresAt: c.ExpiresAt, Note: c.Note, For: c.For})
}

type certJSON struct {
	Fingerprint string     `json:"fingerprint"`
	Serial      string     `json:"serial"`
	Subject     string     `json:"subject"`
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	IssuedAt    time.Time  `json:"issued_at"`
	ChallengeID string     `json:"challenge_id,omitempty"`
	For         string     `json:"for,omitempty"`
	RenewedFrom string     `json:"renewed_from,omitempty"`
	Revoked     bool       `json:"revoked"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	PEM         string     `json:"pem,omitempty"`
}

func toCertJSON(c *scep.IssuedCert, withPEM bool) certJSON {
	j := certJSON{
		Fingerprint: c.Fingerprint, Serial: c.Serial, Subject: c.Subject,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, IssuedAt: c.IssuedAt,
		ChallengeID: c.ChallengeID, For: c.For, RenewedFrom: c.RenewedFrom, Revoked: c.Revoked(),
	}
	if c.Revoked() {
		at := c.RevokedAt
		j.RevokedAt = &at
	}
	if withPEM {
		j.PEM = string(pemBlock("CERTIFICATE", c.DER))
	}
	return j
}

func (s *server) listCerts(w http.ResponseWriter, r *http.Request) {
	certs := []certJSON{}
	err := s.st.SCEP.Certs(r.Context(), func(c *scep.IssuedCert) bool {
		certs = append(certs, toCertJSON(c, false))
		return true
	})
	if err != nil {
		s.log.Error("list certs", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read certificates")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"certs": certs})
}

// normalizeFingerprint accepts a SHA-256 fingerprint as lower- or upper-case
// hex, with or without colons, as openssl and browsers print it.
func normalizeFingerprint(s string) (string, bool) {
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if len(s) != 64 {
		return "", false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return s, true
}

func (s *server) certFromPath(w http.ResponseWriter, r *http.Request) (string, bool) {
	fp, ok := normalizeFingerprint(r.PathValue("fingerprint"))
	if !ok {
		writeError(w, http.StatusBadRequest, "fingerprint: want the 64 hex digits of a SHA-256 certificate fingerprint")
	}
	return fp, ok
}

func (s *server) getCert(w http.ResponseWriter, r *http.Request) {
	fp, ok := s.certFromPath(w, r)
	if !ok {
		return
	}
	c, err := s.st.SCEP.Cert(r.Context(), fp)
	if errors.Is(err, scep.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no certificate with fingerprint "+fp)
		return
	}
	if err != nil {
		s.log.Error("get cert", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the certificate")
		return
	}
	writeJSON(w, http.StatusOK, toCertJSON(c, true))
}

func (s *server) revokeCert(w http.ResponseWriter, r *http.Request) {
	fp, ok := s.certFromPath(w, r)
	if !ok {
		return
	}
	err := s.st.SCEP.RevokeCert(r.Context(), fp, time.Now())
	switch {
	case errors.Is(err, scep.ErrNotFound):
		writeError(w, http.StatusNotFound, "no certificate with fingerprint "+fp)
	case errors.Is(err, scep.ErrAlreadyRevoked):
		writeError(w, http.StatusConflict, "certificate "+fp+" is already revoked")
	case err != nil:
		s.log.Error("revoke cert", "err", err)
		writeError(w, http.StatusInternalServerError, "could not revoke the certificate")
	default:
		s.log.Info("certificate revoked", "fingerprint", fp)
		c, _ := s.st.SCEP.Cert(r.Context(), fp)
		writeJSON(w, http.StatusOK, toCertJSON(c, false))
	}
}

type enrollmentRequest struct {
	TTL  string `json:"ttl,omitempty"` // Go duration; enroll.DefaultTokenTTL when empty
	Note string `json:"note,omitempty"`
	For  string `json:"for,omitempty"`
}

type enrollmentResponse struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
	For       string    `json:"for,omitempty"`
}

func (s *server) createEnrollment(w http.ResponseWriter, r *http.Request) {
	var req enrollmentRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, msg := validateMint(req.TTL, req.Note, req.For)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if !s.checkMint(w, r, req.For) {
		return
	}
	t, secret, err := enroll.NewToken(r.Context(), s.st.Enroll, ttl, req.Note, req.For)
	if err != nil {
		s.log.Error("create enrollment", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the enrollment token")
		return
	}
	s.log.Info("enrollment link created", "token_id", t.ID, "for", t.For, "expires_at", t.ExpiresAt)
	writeJSON(w, http.StatusCreated, enrollmentResponse{ID: t.ID, URL: s.baseURL + "/enroll/" + secret, ExpiresAt: t.ExpiresAt, For: t.For})
}

// checkMint refuses, with 403, to mint a link or challenge that the
// pre-enrolled-only restriction forbids, and reports whether it may be
// minted.
func (s *server) checkMint(w http.ResponseWriter, r *http.Request, mintedFor string) bool {
	err := s.life.CheckMint(r.Context(), mintedFor)
	switch {
	case errors.Is(err, enroll.ErrRestricted):
		writeError(w, http.StatusForbidden, err.Error())
	case err != nil:
		s.log.Error("check mint", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the settings")
	default:
		return true
	}
	return false
}
