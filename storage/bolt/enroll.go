package bolt

import (
	"context"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll"
)

var (
	bucketTokens   = []byte("enroll.tokens")   // SHA-256 of secret → Token
	bucketTokenIDs = []byte("enroll.tokenids") // token id → hash
)

// EnrollStore implements enroll.Store.
type EnrollStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ enroll.Store = (*EnrollStore)(nil)

// Enroll returns the database's enroll.Store.
func (d *DB) Enroll() *EnrollStore { return &EnrollStore{db: d.db, writes: d.writes} }

// PutToken implements enroll.Store.
func (s *EnrollStore) PutToken(ctx context.Context, t *enroll.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketTokenIDs).Put([]byte(t.ID), t.Hash); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketTokens), t.Hash, t)
	})
}

// ConsumeToken implements enroll.Store.
func (s *EnrollStore) ConsumeToken(ctx context.Context, hash []byte, now time.Time, challengeID string) (*enroll.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var t enroll.Token
	err := s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		ok, err := getJSON(b, hash, &t)
		switch {
		case err != nil:
			return err
		case !ok:
			return enroll.ErrNotFound
		}
		if err := t.Consume(now, challengeID); err != nil {
			return err
		}
		return putJSON(b, hash, &t)
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenByHash implements enroll.Store.
func (s *EnrollStore) TokenByHash(ctx context.Context, hash []byte) (*enroll.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var t enroll.Token
	err := s.db.View(func(tx *bbolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketTokens), hash, &t)
		if err == nil && !ok {
			err = enroll.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Token implements enroll.Store.
func (s *EnrollStore) Token(ctx context.Context, id string) (*enroll.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var hash []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		hash = tx.Bucket(bucketTokenIDs).Get([]byte(id))
		if hash == nil {
			return enroll.ErrNotFound
		}
		hash = append([]byte(nil), hash...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.TokenByHash(ctx, hash)
}
