package bolt

import (
	"context"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
)

var (
	bucketDEPTokens  = []byte("dep.tokens")  // name → Token
	bucketDEPCursors = []byte("dep.cursors") // name → Cursor
)

// DEPStore implements dep.Store.
type DEPStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ dep.Store = (*DEPStore)(nil)

// DEP returns the database's dep.Store.
func (d *DB) DEP() *DEPStore { return &DEPStore{db: d.db, writes: d.writes} }

// Cursor implements dep.CursorStore.
func (s *DEPStore) Cursor(ctx context.Context, name string) (*dep.Cursor, error) {
	var c dep.Cursor
	err := get(ctx, s.db, bucketDEPCursors, name, &c)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	return &c, nil
}

// PutCursor implements dep.CursorStore.
func (s *DEPStore) PutCursor(ctx context.Context, name string, c *dep.Cursor) error {
	return s.put(ctx, bucketDEPCursors, name, c)
}

// PutToken implements dep.Store.
func (s *DEPStore) PutToken(ctx context.Context, t *dep.Token) error {
	return s.put(ctx, bucketDEPTokens, t.Name, t)
}

// Token implements dep.Store.
func (s *DEPStore) Token(ctx context.Context, name string) (*dep.Token, error) {
	var t dep.Token
	if err := get(ctx, s.db, bucketDEPTokens, name, &t); err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: token %s", dep.ErrNotFound, name)
		}
		return nil, err
	}
	return &t, nil
}

// Tokens implements dep.Store.
func (s *DEPStore) Tokens(ctx context.Context, fn func(*dep.Token) bool) error {
	return each(ctx, s.db, bucketDEPTokens, fn)
}

func (s *DEPStore) put(ctx context.Context, bucket []byte, key string, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error { return putJSON(tx.Bucket(bucket), []byte(key), v) })
}

func isNotFound(err error) bool { return errors.Is(err, enroll.ErrNotFound) }
