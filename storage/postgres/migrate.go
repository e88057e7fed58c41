package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema's versions, in order: migrations[i] takes the
// schema from version i to i+1. A released migration is never edited; a
// change is a new one appended.
var migrations = []string{
	schemaV1,
}

// migrateLock is the advisory lock held while migrating, so that replicas
// starting together migrate one at a time.
const migrateLock = 0x637573746f6479 // "custody"

// Version returns the schema's version: the number of migrations applied.
func (d *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := d.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM custody_schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return v, nil
}

// LatestVersion is the schema version this build migrates to.
func LatestVersion() int { return len(migrations) }

// Migrate applies the migrations the database lacks, in one transaction
// (all of them or none), and returns the versions it applied. It refuses
// a database migrated by a newer build.
func (d *DB) Migrate(ctx context.Context) ([]int, error) {
	var applied []int
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS custody_schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL
		)`)
		if err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM custody_schema_migrations`).Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema is at version %d, newer than this build's %d: upgrade custody", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO custody_schema_migrations VALUES ($1, $2)`, v+1, time.Now().UTC()); err != nil {
				return err
			}
			applied = append(applied, v+1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	return applied, nil
}
