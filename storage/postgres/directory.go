package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll/directory"
)

// settingsDirectory is the directory's row of the settings table.
const settingsDirectory = "directory"

// DirectoryStore implements directory.Store.
type DirectoryStore struct{ d *DB }

var _ directory.Store = (*DirectoryStore)(nil)

// Directory returns the database's directory.Store.
func (d *DB) Directory() *DirectoryStore { return &DirectoryStore{d} }

// Settings implements directory.Store.
func (s *DirectoryStore) Settings(ctx context.Context) (*directory.Settings, error) {
	st := directory.DefaultSettings()
	if _, err := tableSettings.get(ctx, s.d.pool, settingsDirectory, st); err != nil {
		return nil, err
	}
	return st, nil
}

// PutSettings implements directory.Store.
func (s *DirectoryStore) PutSettings(ctx context.Context, st *directory.Settings) error {
	return tableSettings.put(ctx, s.d.pool, settingsDirectory, st)
}

// PutGroup implements directory.Store.
func (s *DirectoryStore) PutGroup(ctx context.Context, g *directory.GroupRecord) error {
	return tableDirGroups.put(ctx, s.d.pool, g.Key, g)
}

// DeleteGroup implements directory.Store.
func (s *DirectoryStore) DeleteGroup(ctx context.Context, key string) error {
	ok, err := tableDirGroups.delete(ctx, s.d.pool, key)
	if err == nil && !ok {
		err = fmt.Errorf("%w: group %s", directory.ErrNotFound, key)
	}
	return err
}

// Groups implements directory.Store.
func (s *DirectoryStore) Groups(ctx context.Context, fn func(*directory.GroupRecord) bool) error {
	return eachKV(ctx, s.d.pool, tableDirGroups, fn)
}

// Link implements directory.Store.
func (s *DirectoryStore) Link(ctx context.Context, key string) (string, error) {
	var email string
	err := s.d.pool.QueryRow(ctx, `SELECT email FROM directory_links WHERE key = $1`, key).Scan(&email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return email, err
}

// SetLinks implements directory.Store. Rows are written in key order, so
// that concurrent calls lock them in the same order.
func (s *DirectoryStore) SetLinks(ctx context.Context, links map[string]string) error {
	if len(links) == 0 {
		return ctx.Err()
	}
	var keys, emails, unlinked []string
	for _, key := range slices.Sorted(maps.Keys(links)) {
		if email := links[key]; email != "" {
			keys, emails = append(keys, key), append(emails, email)
		} else {
			unlinked = append(unlinked, key)
		}
	}
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		if len(keys) > 0 {
			_, err := tx.Exec(ctx, `INSERT INTO directory_links (key, email) SELECT * FROM unnest($1::text[], $2::text[])
				ON CONFLICT (key) DO UPDATE SET email = excluded.email`, keys, emails)
			if err != nil {
				return err
			}
		}
		if len(unlinked) > 0 {
			_, err := tx.Exec(ctx, `DELETE FROM directory_links WHERE key = ANY($1)`, unlinked)
			return err
		}
		return nil
	})
}

// PutOffboarding implements directory.Store.
func (s *DirectoryStore) PutOffboarding(ctx context.Context, o *directory.Offboarding) error {
	return tableOffboardings.put(ctx, s.d.pool, o.ID, o)
}

// UpdateOffboarding implements directory.Store. fn may run more than once.
func (s *DirectoryStore) UpdateOffboarding(ctx context.Context, id string, fn func(*directory.Offboarding) (*directory.Offboarding, error)) (*directory.Offboarding, error) {
	return updateKV(ctx, s.d, tableOffboardings, id, func(o *directory.Offboarding) (*directory.Offboarding, error) {
		if o == nil {
			return nil, fmt.Errorf("%w: offboarding %s", directory.ErrNotFound, id)
		}
		return fn(o)
	})
}

// Offboardings implements directory.Store.
func (s *DirectoryStore) Offboardings(ctx context.Context, fn func(*directory.Offboarding) bool) error {
	return eachKV(ctx, s.d.pool, tableOffboardings, fn)
}

// Audit implements directory.Store. The entries are numbered from the
// audit counter, whose row stays locked until they are committed: numbers
// are given in commit order, so a reader following the log by sequence
// never skips an entry committed late.
func (s *DirectoryStore) Audit(ctx context.Context, entries ...*directory.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		var last uint64
		err := tx.QueryRow(ctx, `INSERT INTO counters VALUES ('audit', $1)
			ON CONFLICT (name) DO UPDATE SET value = counters.value + $1 RETURNING value`, len(entries)).Scan(&last)
		if err != nil {
			return err
		}
		first := last - uint64(len(entries)) + 1
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"directory_audit"}, []string{"seq", "doc"},
			pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
				e := entries[i]
				e.Seq = first + uint64(i)
				doc, err := jsonDoc(e)
				return []any{e.Seq, doc}, err
			}))
		return err
	})
}

// AuditLog implements directory.Store.
func (s *DirectoryStore) AuditLog(ctx context.Context, after uint64, fn func(*directory.AuditEntry) bool) error {
	after = min(after, math.MaxInt64) // a bigint
	return each(ctx, s.d.pool, fn, `SELECT doc FROM directory_audit WHERE seq > $1 ORDER BY seq`, after)
}
