package postgres

import (
	"context"
	"fmt"

	"github.com/custodymdm/custody/dep"
)

// DEPStore implements dep.Store.
type DEPStore struct{ d *DB }

var _ dep.Store = (*DEPStore)(nil)

// DEP returns the database's dep.Store.
func (d *DB) DEP() *DEPStore { return &DEPStore{d} }

// Cursor implements dep.CursorStore.
func (s *DEPStore) Cursor(ctx context.Context, name string) (*dep.Cursor, error) {
	var c dep.Cursor
	if _, err := tableDEPCursors.get(ctx, s.d.pool, name, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// PutCursor implements dep.CursorStore.
func (s *DEPStore) PutCursor(ctx context.Context, name string, c *dep.Cursor) error {
	return tableDEPCursors.put(ctx, s.d.pool, name, c)
}

// PutToken implements dep.Store.
func (s *DEPStore) PutToken(ctx context.Context, t *dep.Token) error {
	return tableDEPTokens.put(ctx, s.d.pool, t.Name, t)
}

// Token implements dep.Store.
func (s *DEPStore) Token(ctx context.Context, name string) (*dep.Token, error) {
	var t dep.Token
	ok, err := tableDEPTokens.get(ctx, s.d.pool, name, &t)
	if err == nil && !ok {
		err = fmt.Errorf("%w: token %s", dep.ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Tokens implements dep.Store.
func (s *DEPStore) Tokens(ctx context.Context, fn func(*dep.Token) bool) error {
	return eachKV(ctx, s.d.pool, tableDEPTokens, fn)
}
