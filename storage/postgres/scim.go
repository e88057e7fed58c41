package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll/scim"
)

// SCIMStore implements scim.Store. A resource's attributes hold arbitrary
// JSON, read with numbers kept as json.Number.
type SCIMStore struct{ d *DB }

var _ scim.Store = (*SCIMStore)(nil)

// SCIM returns the database's scim.Store.
func (d *DB) SCIM() *SCIMStore { return &SCIMStore{d} }

// uniqueness maps a violation of a resource's unique key or ID to
// scim.ErrUniqueness.
func uniqueness(err error, st *scim.Stored) error {
	switch {
	case uniqueViolation(err, "scim_resources_key"):
		return fmt.Errorf("%w: %s", scim.ErrUniqueness, st.Key)
	case uniqueViolation(err, "scim_resources_pkey"):
		return fmt.Errorf("%w: id %s", scim.ErrUniqueness, st.ID)
	}
	return err
}

// Create implements scim.Store.
func (s *SCIMStore) Create(ctx context.Context, st *scim.Stored) error {
	doc, err := jsonDoc(st)
	if err != nil {
		return err
	}
	_, err = s.d.pool.Exec(ctx, `INSERT INTO scim_resources (type, id, key, doc) VALUES ($1, $2, $3, $4)`, st.Type, st.ID, st.Key, doc)
	return uniqueness(err, st)
}

// Get implements scim.Store.
func (s *SCIMStore) Get(ctx context.Context, typ, id string) (*scim.Stored, error) {
	return s.get(ctx, s.d.pool, `SELECT doc FROM scim_resources WHERE type = $1 AND id = $2`, typ, id)
}

// get returns the resource a query on type and id returns, or ErrNotFound.
func (s *SCIMStore) get(ctx context.Context, q querier, sql, typ, id string) (*scim.Stored, error) {
	var st scim.Stored
	ok, err := getDocNumbers(ctx, q, &st, sql, typ, id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s %s", scim.ErrNotFound, typ, id)
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Update implements scim.Store. fn may run more than once.
func (s *SCIMStore) Update(ctx context.Context, typ, id string, fn func(*scim.Stored) (*scim.Stored, error)) (*scim.Stored, error) {
	var out *scim.Stored
	err := s.d.tx(ctx, func(tx pgx.Tx) error {
		have, err := s.get(ctx, tx, `SELECT doc FROM scim_resources WHERE type = $1 AND id = $2 FOR UPDATE`, typ, id)
		if err != nil {
			return err
		}
		out = have
		next, err := fn(have)
		if err != nil || next == nil {
			return err
		}
		doc, err := jsonDoc(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE scim_resources SET key = $3, doc = $4 WHERE type = $1 AND id = $2`, typ, id, next.Key, doc)
		out = next
		return uniqueness(err, next)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements scim.Store.
func (s *SCIMStore) Delete(ctx context.Context, typ, id string) (*scim.Stored, error) {
	return s.get(ctx, s.d.pool, `DELETE FROM scim_resources WHERE type = $1 AND id = $2 RETURNING doc`, typ, id)
}

// List implements scim.Store.
func (s *SCIMStore) List(ctx context.Context, typ string, fn func(*scim.Stored) bool) error {
	return eachNumbers(ctx, s.d.pool, fn, `SELECT doc FROM scim_resources WHERE type = $1 ORDER BY id`, typ)
}

// PutToken implements scim.Store.
func (s *SCIMStore) PutToken(ctx context.Context, t *scim.Token) error {
	return tableSCIMTokens.put(ctx, s.d.pool, t.ID, t)
}

// Tokens implements scim.Store.
func (s *SCIMStore) Tokens(ctx context.Context) ([]*scim.Token, error) {
	var out []*scim.Token
	err := eachKV(ctx, s.d.pool, tableSCIMTokens, func(t *scim.Token) bool { out = append(out, t); return true })
	return out, err
}

// DeleteToken implements scim.Store.
func (s *SCIMStore) DeleteToken(ctx context.Context, id string) error {
	ok, err := tableSCIMTokens.delete(ctx, s.d.pool, id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: token %s", scim.ErrNotFound, id)
	}
	return err
}
