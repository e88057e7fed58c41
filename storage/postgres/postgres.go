package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custodymdm/custody/storage"
)

// A DB is an open Custody database on a PostgreSQL server: a pool of
// connections, shared by every store it hands out and safe for use by many
// goroutines and by several processes at once.
type DB struct {
	pool *pgxpool.Pool
}

// Options tune Open. The zero value is the default.
type Options struct {
	// Schema is the schema Custody's tables live in, created if absent;
	// the connection's default (usually public) when empty. A schema per
	// Custody server lets several share one database.
	Schema string
	// MaxConns caps the pool; pgxpool's default (the larger of 4 and the
	// number of CPUs) when zero.
	MaxConns int32
	// NoMigrate opens without applying pending migrations, for a caller
	// that runs Migrate itself.
	NoMigrate bool
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string), applies pending migrations (unless opts.NoMigrate)
// and returns the DB.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	d := &DB{pool: pool}
	if err := d.ping(ctx, opts.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	if !opts.NoMigrate {
		if _, err := d.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return d, nil
}

// ping checks the server answers, and creates the schema if one is named.
func (d *DB) ping(ctx context.Context, schema string) error {
	if err := d.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: cannot reach the server: %w", err)
	}
	if schema != "" {
		if _, err := d.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: create schema %s: %w", schema, err)
		}
	}
	return nil
}

// Stores returns the database's stores.
func (d *DB) Stores() storage.Stores {
	return storage.Stores{
		SCEP: d.SCEP(), MDM: d.MDM(), Enroll: d.Enroll(), Records: d.Records(),
		Assignments: d.Assignments(), Settings: d.Settings(), DEP: d.DEP(),
		Campaigns: d.Campaigns(), SCIM: d.SCIM(), Directory: d.Directory(), Leases: d.Leases(),
	}
}

// Close closes every connection of the pool.
func (d *DB) Close() error {
	d.pool.Close()
	return nil
}

// Pool returns the connection pool, for statistics and for tools.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// maxAttempts bounds the retries of a transaction that lost a race.
const maxAttempts = 20

// errRetry asks tx to run a transaction again: it lost a race that a
// second run resolves (a row it saw absent was inserted meanwhile).
var errRetry = errors.New("postgres: retry")

// tx runs fn in a transaction and commits it. A transaction that fails
// with a serialization failure or a deadlock, or whose fn returns
// errRetry, runs again, so fn may run more than once.
func (d *DB) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Millisecond):
			}
		}
		err = pgx.BeginFunc(ctx, d.pool, fn)
		if !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("postgres: transaction lost %d races: %w", maxAttempts, err)
}

func retryable(err error) bool {
	if errors.Is(err, errRetry) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// uniqueViolation reports whether err is a unique violation of constraint
// (of any constraint when it is empty).
func uniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && (constraint == "" || pe.ConstraintName == constraint)
}

// querier is what pgxpool.Pool and pgx.Tx share.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// getDoc scans the one JSON column of the row a query returns into v; false
// when there is no row.
func getDoc(ctx context.Context, q querier, v any, sql string, args ...any) (bool, error) {
	return getDecoded(ctx, q, json.Unmarshal, v, sql, args...)
}

// getDocNumbers is getDoc keeping numbers as json.Number, for values holding
// arbitrary JSON.
func getDocNumbers(ctx context.Context, q querier, v any, sql string, args ...any) (bool, error) {
	return getDecoded(ctx, q, decodeNumbers, v, sql, args...)
}

func getDecoded(ctx context.Context, q querier, decode func([]byte, any) error, v any, sql string, args ...any) (bool, error) {
	var doc []byte
	err := q.QueryRow(ctx, sql, args...).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, decode(doc, v)
}

// decodeNumbers decodes JSON keeping numbers as json.Number.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// each calls fn with each row's JSON column decoded, in the query's order,
// until fn returns false. Rows are streamed, not loaded at once.
func each[T any](ctx context.Context, q querier, fn func(*T) bool, sql string, args ...any) error {
	return eachDecoded(ctx, q, json.Unmarshal, fn, sql, args...)
}

// eachNumbers is each keeping numbers as json.Number.
func eachNumbers[T any](ctx context.Context, q querier, fn func(*T) bool, sql string, args ...any) error {
	return eachDecoded(ctx, q, decodeNumbers, fn, sql, args...)
}

func eachDecoded[T any](ctx context.Context, q querier, decode func([]byte, any) error, fn func(*T) bool, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var doc []byte
	for rows.Next() {
		if err := rows.Scan(&doc); err != nil {
			return err
		}
		t := new(T)
		if err := decode(doc, t); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if !fn(t) {
			return nil
		}
	}
	return rows.Err()
}

// jsonDoc marshals v for a jsonb parameter.
func jsonDoc(v any) ([]byte, error) { return json.Marshal(v) }
