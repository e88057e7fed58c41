package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/scep"
)

// SCEPStore implements scep.Store.
type SCEPStore struct{ d *DB }

var _ scep.Store = (*SCEPStore)(nil)

// SCEP returns the database's scep.Store.
func (d *DB) SCEP() *SCEPStore { return &SCEPStore{d} }

// PutChallenge implements scep.Store.
func (s *SCEPStore) PutChallenge(ctx context.Context, c *scep.Challenge) error {
	doc, err := jsonDoc(c)
	if err != nil {
		return err
	}
	_, err = s.d.pool.Exec(ctx, `INSERT INTO scep_challenges (hash, id, doc) VALUES ($1, $2, $3)
		ON CONFLICT (hash) DO UPDATE SET id = excluded.id, doc = excluded.doc`, c.Hash, c.ID, doc)
	return err
}

// Challenge implements scep.Store.
func (s *SCEPStore) Challenge(ctx context.Context, hash []byte) (*scep.Challenge, error) {
	return s.challenge(ctx, `SELECT doc FROM scep_challenges WHERE hash = $1`, hash)
}

// ChallengeByID implements scep.Store.
func (s *SCEPStore) ChallengeByID(ctx context.Context, id string) (*scep.Challenge, error) {
	return s.challenge(ctx, `SELECT doc FROM scep_challenges WHERE id = $1`, id)
}

func (s *SCEPStore) challenge(ctx context.Context, sql string, arg any) (*scep.Challenge, error) {
	var c scep.Challenge
	ok, err := getDoc(ctx, s.d.pool, &c, sql, arg)
	if err == nil && !ok {
		err = scep.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// ConsumeChallenge implements scep.Store. The challenge's row is locked
// until the transaction ends, so of two replicas consuming one challenge
// at once, the second sees it used.
func (s *SCEPStore) ConsumeChallenge(ctx context.Context, hash []byte, now time.Time, cert *scep.IssuedCert) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		var c scep.Challenge
		ok, err := getDoc(ctx, tx, &c, `SELECT doc FROM scep_challenges WHERE hash = $1 FOR UPDATE`, hash)
		switch {
		case err != nil:
			return err
		case !ok:
			return scep.ErrNotFound
		}
		if err := c.Consume(now, cert.Fingerprint); err != nil {
			return err
		}
		if err := putCert(ctx, tx, cert); err != nil {
			return err
		}
		doc, err := jsonDoc(&c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE scep_challenges SET doc = $2 WHERE hash = $1`, hash, doc)
		return err
	})
}

// PutCert implements scep.Store.
func (s *SCEPStore) PutCert(ctx context.Context, cert *scep.IssuedCert) error {
	return putCert(ctx, s.d.pool, cert)
}

// putCert inserts a certificate; ErrDuplicateSerial if its serial is taken.
// Inside a transaction, a failure aborts it, as the caller then wants.
func putCert(ctx context.Context, q querier, cert *scep.IssuedCert) error {
	doc, err := jsonDoc(cert)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO scep_certs (fingerprint, serial, revoked, doc) VALUES ($1, $2, $3, $4)`,
		cert.Fingerprint, cert.Serial, cert.Revoked(), doc)
	if uniqueViolation(err, "scep_certs_serial_key") {
		return scep.ErrDuplicateSerial
	}
	return err
}

// Cert implements scep.Store.
func (s *SCEPStore) Cert(ctx context.Context, fingerprint string) (*scep.IssuedCert, error) {
	var c scep.IssuedCert
	ok, err := getDoc(ctx, s.d.pool, &c, `SELECT doc FROM scep_certs WHERE fingerprint = $1`, fingerprint)
	if err == nil && !ok {
		err = scep.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Certs implements scep.Store.
func (s *SCEPStore) Certs(ctx context.Context, fn func(*scep.IssuedCert) bool) error {
	return each(ctx, s.d.pool, fn, `SELECT doc FROM scep_certs ORDER BY fingerprint`)
}

// RevokeCert implements scep.Store.
func (s *SCEPStore) RevokeCert(ctx context.Context, fingerprint string, at time.Time) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		var c scep.IssuedCert
		ok, err := getDoc(ctx, tx, &c, `SELECT doc FROM scep_certs WHERE fingerprint = $1 FOR UPDATE`, fingerprint)
		switch {
		case err != nil:
			return err
		case !ok:
			return scep.ErrNotFound
		case c.Revoked():
			return scep.ErrAlreadyRevoked
		}
		c.RevokedAt = at.UTC()
		doc, err := jsonDoc(&c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE scep_certs SET revoked = true, doc = $2 WHERE fingerprint = $1`, fingerprint, doc)
		return err
	})
}

// Revoked implements scep.Store: one primary-key lookup.
func (s *SCEPStore) Revoked(ctx context.Context, fingerprint string) (bool, error) {
	var revoked bool
	err := s.d.pool.QueryRow(ctx, `SELECT revoked FROM scep_certs WHERE fingerprint = $1`, fingerprint).Scan(&revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return revoked, err
}
