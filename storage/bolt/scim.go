package bolt

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll/scim"
)

var (
	bucketSCIM       = []byte("scim.resources") // type, 0, id → Stored
	bucketSCIMKeys   = []byte("scim.keys")      // type, 0, unique key → id
	bucketSCIMTokens = []byte("scim.tokens")    // id → Token
)

// SCIMStore implements scim.Store.
type SCIMStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ scim.Store = (*SCIMStore)(nil)

// SCIM returns the database's scim.Store.
func (d *DB) SCIM() *SCIMStore { return &SCIMStore{db: d.db, writes: d.writes} }

func scimKey(typ, id string) []byte { return append(append([]byte(typ), 0), id...) }

// Create implements scim.Store.
func (s *SCIMStore) Create(ctx context.Context, st *scim.Stored) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		keys := tx.Bucket(bucketSCIMKeys)
		if st.Key != "" {
			if keys.Get(scimKey(st.Type, st.Key)) != nil {
				return fmt.Errorf("%w: %s", scim.ErrUniqueness, st.Key)
			}
			if err := keys.Put(scimKey(st.Type, st.Key), []byte(st.ID)); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketSCIM)
		if b.Get(scimKey(st.Type, st.ID)) != nil {
			return fmt.Errorf("%w: id %s", scim.ErrUniqueness, st.ID)
		}
		return putJSON(b, scimKey(st.Type, st.ID), st)
	})
}

// Get implements scim.Store.
func (s *SCIMStore) Get(ctx context.Context, typ, id string) (*scim.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st scim.Stored
	err := s.db.View(func(tx *bbolt.Tx) error {
		ok, err := getJSONNumbers(tx.Bucket(bucketSCIM), scimKey(typ, id), &st)
		if err == nil && !ok {
			err = fmt.Errorf("%w: %s %s", scim.ErrNotFound, typ, id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Update implements scim.Store.
func (s *SCIMStore) Update(ctx context.Context, typ, id string, fn func(*scim.Stored) (*scim.Stored, error)) (*scim.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *scim.Stored
	err := s.writes.update(func(tx *bbolt.Tx) error {
		b, keys := tx.Bucket(bucketSCIM), tx.Bucket(bucketSCIMKeys)
		var have scim.Stored
		ok, err := getJSONNumbers(b, scimKey(typ, id), &have)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s %s", scim.ErrNotFound, typ, id)
		}
		next, err := fn(&have)
		if err != nil || next == nil {
			out = &have
			return err
		}
		if next.Key != have.Key {
			if next.Key != "" {
				if owner := keys.Get(scimKey(typ, next.Key)); owner != nil && string(owner) != id {
					return fmt.Errorf("%w: %s", scim.ErrUniqueness, next.Key)
				}
				if err := keys.Put(scimKey(typ, next.Key), []byte(id)); err != nil {
					return err
				}
			}
			if have.Key != "" {
				if err := keys.Delete(scimKey(typ, have.Key)); err != nil {
					return err
				}
			}
		}
		out = next
		return putJSON(b, scimKey(typ, id), next)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements scim.Store.
func (s *SCIMStore) Delete(ctx context.Context, typ, id string) (*scim.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st scim.Stored
	err := s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSCIM)
		ok, err := getJSONNumbers(b, scimKey(typ, id), &st)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s %s", scim.ErrNotFound, typ, id)
		}
		if st.Key != "" {
			if err := tx.Bucket(bucketSCIMKeys).Delete(scimKey(typ, st.Key)); err != nil {
				return err
			}
		}
		return b.Delete(scimKey(typ, id))
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// List implements scim.Store.
func (s *SCIMStore) List(ctx context.Context, typ string, fn func(*scim.Stored) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	prefix := scimKey(typ, "")
	return s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSCIM).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var st scim.Stored
			if err := decodeNumbers(v, &st); err != nil {
				return fmt.Errorf("bolt: %s %q: %w", bucketSCIM, k, err)
			}
			if !fn(&st) {
				return nil
			}
		}
		return nil
	})
}

// PutToken implements scim.Store.
func (s *SCIMStore) PutToken(ctx context.Context, t *scim.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		return putJSON(tx.Bucket(bucketSCIMTokens), []byte(t.ID), t)
	})
}

// Tokens implements scim.Store.
func (s *SCIMStore) Tokens(ctx context.Context) ([]*scim.Token, error) {
	var out []*scim.Token
	err := each(ctx, s.db, bucketSCIMTokens, func(t *scim.Token) bool { out = append(out, t); return true })
	return out, err
}

// DeleteToken implements scim.Store.
func (s *SCIMStore) DeleteToken(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSCIMTokens)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("%w: token %s", scim.ErrNotFound, id)
		}
		return b.Delete([]byte(id))
	})
}
