package bolt

import (
	"context"
	"encoding/json"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/scep"
)

var (
	bucketChallenges   = []byte("scep.challenges")   // SHA-256 of secret → Challenge
	bucketChallengeIDs = []byte("scep.challengeids") // challenge id → SHA-256 of secret
	bucketCerts        = []byte("scep.certs")        // fingerprint → IssuedCert
	bucketSerials      = []byte("scep.serials")      // serial (hex) → fingerprint
	bucketRevoked      = []byte("scep.revoked")      // fingerprint → revocation time
)

// SCEPStore implements scep.Store.
type SCEPStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ scep.Store = (*SCEPStore)(nil)

// SCEP returns the database's scep.Store.
func (d *DB) SCEP() *SCEPStore { return &SCEPStore{db: d.db, writes: d.writes} }

// PutChallenge implements scep.Store.
func (s *SCEPStore) PutChallenge(ctx context.Context, c *scep.Challenge) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketChallengeIDs).Put([]byte(c.ID), c.Hash); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketChallenges), c.Hash, c)
	})
}

// ChallengeByID implements scep.Store.
func (s *SCEPStore) ChallengeByID(ctx context.Context, id string) (*scep.Challenge, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var hash []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		if h := tx.Bucket(bucketChallengeIDs).Get([]byte(id)); h != nil {
			hash = append([]byte(nil), h...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if hash == nil {
		return nil, scep.ErrNotFound
	}
	return s.Challenge(ctx, hash)
}

// indexChallenges fills the challenge-id index of a database made before
// it existed.
func indexChallenges(tx *bbolt.Tx) error {
	ids := tx.Bucket(bucketChallengeIDs)
	if k, _ := ids.Cursor().First(); k != nil {
		return nil
	}
	return tx.Bucket(bucketChallenges).ForEach(func(hash, v []byte) error {
		var c scep.Challenge
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		return ids.Put([]byte(c.ID), hash)
	})
}

// Challenge implements scep.Store.
func (s *SCEPStore) Challenge(ctx context.Context, hash []byte) (*scep.Challenge, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var c scep.Challenge
	err := s.db.View(func(tx *bbolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketChallenges), hash, &c)
		if err == nil && !ok {
			err = scep.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// ConsumeChallenge implements scep.Store.
func (s *SCEPStore) ConsumeChallenge(ctx context.Context, hash []byte, now time.Time, cert *scep.IssuedCert) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChallenges)
		var c scep.Challenge
		ok, err := getJSON(b, hash, &c)
		switch {
		case err != nil:
			return err
		case !ok:
			return scep.ErrNotFound
		}
		if err := c.Consume(now, cert.Fingerprint); err != nil {
			return err
		}
		if err := putCert(tx, cert); err != nil {
			return err
		}
		return putJSON(b, hash, &c)
	})
}

// PutCert implements scep.Store.
func (s *SCEPStore) PutCert(ctx context.Context, cert *scep.IssuedCert) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error { return putCert(tx, cert) })
}

func putCert(tx *bbolt.Tx, cert *scep.IssuedCert) error {
	serials := tx.Bucket(bucketSerials)
	if serials.Get([]byte(cert.Serial)) != nil {
		return scep.ErrDuplicateSerial
	}
	if err := serials.Put([]byte(cert.Serial), []byte(cert.Fingerprint)); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketCerts), []byte(cert.Fingerprint), cert)
}

// Cert implements scep.Store.
func (s *SCEPStore) Cert(ctx context.Context, fingerprint string) (*scep.IssuedCert, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var c scep.IssuedCert
	err := s.db.View(func(tx *bbolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketCerts), []byte(fingerprint), &c)
		if err == nil && !ok {
			err = scep.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Certs implements scep.Store.
func (s *SCEPStore) Certs(ctx context.Context, fn func(*scep.IssuedCert) bool) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketCerts).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec scep.IssuedCert
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			if !fn(&rec) {
				return nil
			}
		}
		return nil
	})
}

// RevokeCert implements scep.Store.
func (s *SCEPStore) RevokeCert(ctx context.Context, fingerprint string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		var c scep.IssuedCert
		ok, err := getJSON(b, []byte(fingerprint), &c)
		switch {
		case err != nil:
			return err
		case !ok:
			return scep.ErrNotFound
		case c.Revoked():
			return scep.ErrAlreadyRevoked
		}
		c.RevokedAt = at.UTC()
		if err := tx.Bucket(bucketRevoked).Put([]byte(fingerprint), []byte(c.RevokedAt.Format(time.RFC3339))); err != nil {
			return err
		}
		return putJSON(b, []byte(fingerprint), &c)
	})
}

// Revoked implements scep.Store with a key lookup in the revocation index.
func (s *SCEPStore) Revoked(ctx context.Context, fingerprint string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var revoked bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		revoked = tx.Bucket(bucketRevoked).Get([]byte(fingerprint)) != nil
		return nil
	})
	return revoked, err
}
