package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll"
)

// EnrollStore implements enroll.Store.
type EnrollStore struct{ d *DB }

var _ enroll.Store = (*EnrollStore)(nil)

// Enroll returns the database's enroll.Store.
func (d *DB) Enroll() *EnrollStore { return &EnrollStore{d} }

// PutToken implements enroll.Store.
func (s *EnrollStore) PutToken(ctx context.Context, t *enroll.Token) error {
	doc, err := jsonDoc(t)
	if err != nil {
		return err
	}
	_, err = s.d.pool.Exec(ctx, `INSERT INTO enroll_tokens (hash, id, doc) VALUES ($1, $2, $3)
		ON CONFLICT (hash) DO UPDATE SET id = excluded.id, doc = excluded.doc`, t.Hash, t.ID, doc)
	return err
}

// ConsumeToken implements enroll.Store. The token's row is locked until the
// transaction ends, so a token is consumed once however many replicas try.
func (s *EnrollStore) ConsumeToken(ctx context.Context, hash []byte, now time.Time, challengeID string) (*enroll.Token, error) {
	var t enroll.Token
	err := s.d.tx(ctx, func(tx pgx.Tx) error {
		ok, err := getDoc(ctx, tx, &t, `SELECT doc FROM enroll_tokens WHERE hash = $1 FOR UPDATE`, hash)
		switch {
		case err != nil:
			return err
		case !ok:
			return enroll.ErrNotFound
		}
		if err := t.Consume(now, challengeID); err != nil {
			return err
		}
		doc, err := jsonDoc(&t)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE enroll_tokens SET doc = $2 WHERE hash = $1`, hash, doc)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenByHash implements enroll.Store.
func (s *EnrollStore) TokenByHash(ctx context.Context, hash []byte) (*enroll.Token, error) {
	return s.token(ctx, `SELECT doc FROM enroll_tokens WHERE hash = $1`, hash)
}

// Token implements enroll.Store.
func (s *EnrollStore) Token(ctx context.Context, id string) (*enroll.Token, error) {
	return s.token(ctx, `SELECT doc FROM enroll_tokens WHERE id = $1`, id)
}

func (s *EnrollStore) token(ctx context.Context, sql string, arg any) (*enroll.Token, error) {
	var t enroll.Token
	ok, err := getDoc(ctx, s.d.pool, &t, sql, arg)
	if err == nil && !ok {
		err = enroll.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}
