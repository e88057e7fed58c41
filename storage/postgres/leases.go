package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/storage"
)

// Leases implements storage.Leases on the leases table. Expiry is judged
// by the database server's clock, so replicas' clocks need not agree.
type Leases struct{ d *DB }

var _ storage.Leases = (*Leases)(nil)

// Leases returns the database's storage.Leases.
func (d *DB) Leases() *Leases { return &Leases{d} }

// Acquire implements storage.Leases in one statement: the row is taken if
// it is absent, expired or already holder's.
func (l *Leases) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := l.d.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, clock_timestamp() + $3::interval)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at < clock_timestamp()
		RETURNING holder`, name, holder, ttl).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Release implements storage.Leases.
func (l *Leases) Release(ctx context.Context, name, holder string) error {
	_, err := l.d.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return err
}

// Holders implements storage.Leases.
func (l *Leases) Holders(ctx context.Context) (map[string]storage.Lease, error) {
	rows, err := l.d.pool.Query(ctx, `SELECT name, holder, expires_at FROM leases`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]storage.Lease{}
	for rows.Next() {
		var (
			name string
			ls   storage.Lease
		)
		if err := rows.Scan(&name, &ls.Holder, &ls.ExpiresAt); err != nil {
			return nil, err
		}
		out[name] = ls
	}
	return out, rows.Err()
}
