package enroll

import (
	"context"
	"errors"
	"slices"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

// A Trace is the identity chain of one device, link by link, each as it
// was stored when its step happened: the record and its history, the
// enrollment link (token) the device used, the SCEP challenge the link
// minted, the identity certificate the challenge authorised (and its
// renewals), the MDM enrollment, and the commands queued for it with the
// device's results.
type Trace struct {
	Record    *Record         `json:"record"`
	User      *User           `json:"user,omitempty"`
	Token     *Token          `json:"token,omitempty"`
	Challenge *scep.Challenge `json:"challenge,omitempty"`
	// Certs are the device's identity certificates, the one it enrolled
	// with first, then its renewals.
	Certs      []*scep.IssuedCert   `json:"certs,omitempty"`
	Enrollment *mdm.Enrollment      `json:"enrollment,omitempty"`
	Queue      []*mdm.QueuedCommand `json:"queue,omitempty"`
	Results    []*mdm.Result        `json:"results,omitempty"`
}

// Trace returns the chain of the device with a serial number or an MDM
// enrollment ID, or ErrNotFound.
func (l *Lifecycle) Trace(ctx context.Context, key string) (*Trace, error) {
	rec, err := l.recordFor(ctx, key)
	if err != nil {
		return nil, err
	}
	tr := &Trace{Record: rec}
	if rec.UserEmail != "" {
		if tr.User, err = l.Records.User(ctx, rec.UserEmail); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	if rec.TokenID != "" {
		if tr.Token, err = l.Tokens.Token(ctx, rec.TokenID); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	if id := rec.EnrollmentID; id != "" {
		tr.Enrollment, err = l.MDM.Enrollment(ctx, id)
		switch {
		case errors.Is(err, mdm.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			if tr.Queue, err = l.MDM.Queue(ctx, id); err != nil {
				return nil, err
			}
			if tr.Results, err = l.MDM.Results(ctx, id); err != nil {
				return nil, err
			}
		}
	}
	if err := l.traceCerts(ctx, tr); err != nil {
		return nil, err
	}
	challengeID := ""
	if tr.Token != nil {
		challengeID = tr.Token.ChallengeID
	} else if len(tr.Certs) > 0 {
		challengeID = tr.Certs[0].ChallengeID
	}
	if challengeID != "" {
		if tr.Challenge, err = l.Certs.ChallengeByID(ctx, challengeID); err != nil && !errors.Is(err, scep.ErrNotFound) {
			return nil, err
		}
	}
	return tr, nil
}

// traceCerts collects the certificate the device enrolled with and its
// renewals up to the one its enrollment is bound to now.
func (l *Lifecycle) traceCerts(ctx context.Context, tr *Trace) error {
	fp := tr.Record.CertFingerprint
	if tr.Enrollment != nil && tr.Enrollment.CertFingerprint != "" {
		fp = tr.Enrollment.CertFingerprint
	}
	for i := 0; fp != "" && i < 1000; i++ {
		c, err := l.Certs.Cert(ctx, fp)
		if errors.Is(err, scep.ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		tr.Certs = append(tr.Certs, c)
		if fp == tr.Record.CertFingerprint {
			break
		}
		fp = c.RenewedFrom
	}
	slices.Reverse(tr.Certs)
	return nil
}

// recordFor finds the record of a serial number, or of the device of an
// enrollment ID.
func (l *Lifecycle) recordFor(ctx context.Context, key string) (*Record, error) {
	if serial, err := NormalizeSerial(key); err == nil {
		rec, err := l.Records.Record(ctx, serial)
		if !errors.Is(err, ErrNotFound) {
			return rec, err
		}
	}
	enr, err := l.MDM.Enrollment(ctx, key)
	if errors.Is(err, mdm.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	serial, err := NormalizeSerial(enr.SerialNumber)
	if err != nil {
		return nil, ErrNotFound
	}
	return l.Records.Record(ctx, serial)
}
