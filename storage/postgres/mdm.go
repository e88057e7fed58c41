package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/mdm"
)

// MDMStore implements mdm.Store.
//
// A queue row is one command for one enrollment. Apple's devices hold one
// connection to the server at a time and answer a command before they are
// given the next, so whichever replica a device reaches reads the head of
// its queue; what must not happen twice is the answer's effect. StoreResult
// deletes the queue row and reports ErrUnknownCommand when another
// transaction did so first, so a result is recorded once, by one replica,
// however a device's requests are spread.
type MDMStore struct{ d *DB }

var _ mdm.Store = (*MDMStore)(nil)

// MDM returns the database's mdm.Store.
func (d *DB) MDM() *MDMStore { return &MDMStore{d} }

// channelsOf is the condition selecting a device's enrollment and those of
// its user channels (whose IDs are the device's followed by ':'), in a
// form the primary key's index serves: with the "C" collation, the IDs
// starting with "ID:" are those from "ID:" up to "ID;".
const channelsOf = `(%[1]s = $1 OR (%[1]s >= $1 || ':' AND %[1]s < $1 || ';'))`

func getEnrollment(ctx context.Context, q querier, id string, lock bool) (*mdm.Enrollment, error) {
	sql := `SELECT doc FROM mdm_enrollments WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	var e mdm.Enrollment
	ok, err := getDoc(ctx, q, &e, sql, id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: enrollment %q", mdm.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// putEnrollment stores e: an update when it existed, else an insert that
// asks for the transaction to run again if another created it meanwhile.
func putEnrollment(ctx context.Context, tx pgx.Tx, e *mdm.Enrollment, existed bool) error {
	doc, err := jsonDoc(e)
	if err != nil {
		return err
	}
	if existed {
		_, err = tx.Exec(ctx, `UPDATE mdm_enrollments SET doc = $2 WHERE id = $1`, e.ID, doc)
		return err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO mdm_enrollments (id, doc) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.ID, doc)
	if err == nil && tag.RowsAffected() == 0 {
		err = errRetry
	}
	return err
}

// bindCert binds fingerprint to e (stored by the caller), dropping e's
// previous binding and the certificate's binding to another enrollment.
func bindCert(ctx context.Context, tx pgx.Tx, e *mdm.Enrollment, fingerprint string) error {
	if e.CertFingerprint != "" && e.CertFingerprint != fingerprint {
		if _, err := tx.Exec(ctx, `DELETE FROM mdm_cert_bindings WHERE fingerprint = $1`, e.CertFingerprint); err != nil {
			return err
		}
	}
	var prev string
	err := tx.QueryRow(ctx, `SELECT enrollment_id FROM mdm_cert_bindings WHERE fingerprint = $1 FOR UPDATE`, fingerprint).Scan(&prev)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	case prev != e.ID:
		// The certificate moves: the other enrollment loses it.
		_, err := tx.Exec(ctx, `UPDATE mdm_enrollments SET doc = doc - 'cert_fingerprint'
			WHERE id = $1 AND doc->>'cert_fingerprint' = $2`, prev, fingerprint)
		if err != nil {
			return err
		}
	}
	e.CertFingerprint = fingerprint
	_, err = tx.Exec(ctx, `INSERT INTO mdm_cert_bindings (fingerprint, enrollment_id) VALUES ($1, $2)
		ON CONFLICT (fingerprint) DO UPDATE SET enrollment_id = excluded.enrollment_id`, fingerprint, e.ID)
	return err
}

// Authenticated implements mdm.Store.
func (s *MDMStore) Authenticated(ctx context.Context, e *mdm.Enrollment) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		rec := *e
		rec.Enabled = false
		old, err := getEnrollment(ctx, tx, e.ID, true)
		switch {
		case err == nil:
			rec.CreatedAt = old.CreatedAt
			rec.CertFingerprint = old.CertFingerprint
		case errors.Is(err, mdm.ErrNotFound):
		default:
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mdm_queue WHERE `+fmt.Sprintf(channelsOf, "enrollment_id"), e.ID); err != nil {
			return err
		}
		if e.CertFingerprint != "" {
			if err := bindCert(ctx, tx, &rec, e.CertFingerprint); err != nil {
				return err
			}
		}
		return putEnrollment(ctx, tx, &rec, old != nil)
	})
}

// TokenUpdated implements mdm.Store.
func (s *MDMStore) TokenUpdated(ctx context.Context, e *mdm.Enrollment) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		rec, err := getEnrollment(ctx, tx, e.ID, true)
		existed := err == nil
		switch {
		case errors.Is(err, mdm.ErrNotFound):
			c := *e
			rec = &c
		case err != nil:
			return err
		}
		rec.TakeTokenUpdate(e)
		if rec.CertFingerprint == "" && e.CertFingerprint != "" {
			if err := bindCert(ctx, tx, rec, e.CertFingerprint); err != nil {
				return err
			}
		}
		return putEnrollment(ctx, tx, rec, existed)
	})
}

// Disable implements mdm.Store.
func (s *MDMStore) Disable(ctx context.Context, id string) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE mdm_enrollments SET doc = jsonb_set(doc, '{enabled}', 'false')
			WHERE `+fmt.Sprintf(channelsOf, "id"), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: enrollment %q", mdm.ErrNotFound, id)
		}
		return nil
	})
}

// Enrollment implements mdm.Store.
func (s *MDMStore) Enrollment(ctx context.Context, id string) (*mdm.Enrollment, error) {
	return getEnrollment(ctx, s.d.pool, id, false)
}

// Enrollments implements mdm.Store.
func (s *MDMStore) Enrollments(ctx context.Context, fn func(*mdm.Enrollment) bool) error {
	return each(ctx, s.d.pool, fn, `SELECT doc FROM mdm_enrollments ORDER BY id`)
}

// Update implements mdm.Store.
func (s *MDMStore) Update(ctx context.Context, id string, fn func(*mdm.Enrollment) error) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		e, err := getEnrollment(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		e.ID = id
		return putEnrollment(ctx, tx, e, true)
	})
}

// EnrollmentForCert implements mdm.Store.
func (s *MDMStore) EnrollmentForCert(ctx context.Context, fingerprint string) (string, error) {
	var id string
	err := s.d.pool.QueryRow(ctx, `SELECT enrollment_id FROM mdm_cert_bindings WHERE fingerprint = $1`, fingerprint).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", mdm.ErrNotFound
	}
	return id, err
}

// BindCert implements mdm.Store.
func (s *MDMStore) BindCert(ctx context.Context, id, fingerprint string) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		e, err := getEnrollment(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := bindCert(ctx, tx, e, fingerprint); err != nil {
			return err
		}
		return putEnrollment(ctx, tx, e, true)
	})
}

// Enqueue implements mdm.Store: the command once, and one queue row per
// enrollment, in one statement however many enrollments there are.
func (s *MDMStore) Enqueue(ctx context.Context, ids []string, cmd *mdm.QueuedCommand) error {
	if cmd.UUID == "" {
		return errors.New("postgres: command without a UUID")
	}
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM mdm_enrollments WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(found) < len(ids) {
			for _, id := range ids {
				if !slices.Contains(found, id) {
					return fmt.Errorf("%w: enrollment %q", mdm.ErrNotFound, id)
				}
			}
		}
		stored := *cmd
		stored.Payload, stored.NotNow = nil, false
		doc, err := jsonDoc(&stored)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO mdm_commands (uuid, payload, doc) VALUES ($1, $2, $3)
			ON CONFLICT (uuid) DO UPDATE SET payload = excluded.payload, doc = excluded.doc`, cmd.UUID, cmd.Payload, doc)
		if err != nil {
			return err
		}
		// Enqueueing is idempotent: a command already queued keeps its place.
		_, err = tx.Exec(ctx, `INSERT INTO mdm_queue (enrollment_id, command_uuid, request_type)
			SELECT id, $2, $3 FROM unnest($1::text[]) AS id ON CONFLICT DO NOTHING`, ids, cmd.UUID, cmd.RequestType)
		return err
	})
}

const selectQueued = `SELECT c.doc, c.payload, q.not_now
	FROM mdm_queue q JOIN mdm_commands c ON c.uuid = q.command_uuid
	WHERE q.enrollment_id = $1`

func scanQueued(row pgx.CollectableRow) (*mdm.QueuedCommand, error) {
	var (
		c            mdm.QueuedCommand
		doc, payload []byte
		notNow       bool
	)
	if err := row.Scan(&doc, &payload, &notNow); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, err
	}
	c.Payload, c.NotNow = payload, notNow
	return &c, nil
}

// NextCommand implements mdm.Store.
func (s *MDMStore) NextCommand(ctx context.Context, id string, skipNotNow bool) (*mdm.QueuedCommand, error) {
	sql := selectQueued
	if skipNotNow {
		sql += ` AND NOT q.not_now`
	}
	rows, err := s.d.pool.Query(ctx, sql+` ORDER BY q.seq LIMIT 1`, id)
	if err != nil {
		return nil, err
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanQueued)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return c, err
}

// Queue implements mdm.Store.
func (s *MDMStore) Queue(ctx context.Context, id string) ([]*mdm.QueuedCommand, error) {
	rows, err := s.d.pool.Query(ctx, selectQueued+` ORDER BY q.seq`, id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanQueued)
}

// StoreResult implements mdm.Store.
func (s *MDMStore) StoreResult(ctx context.Context, r *mdm.Result, update mdm.ResultUpdate) error {
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		var e *mdm.Enrollment
		if update != nil {
			// The enrollment is locked before the queue row, the order
			// Authenticated takes them in.
			var err error
			if e, err = getEnrollment(ctx, tx, r.EnrollmentID, true); err != nil && !errors.Is(err, mdm.ErrNotFound) {
				return err
			}
		}
		sql := `DELETE FROM mdm_queue WHERE enrollment_id = $1 AND command_uuid = $2 RETURNING request_type`
		if r.Status == mdm.StatusNotNow {
			sql = `UPDATE mdm_queue SET not_now = true WHERE enrollment_id = $1 AND command_uuid = $2 RETURNING request_type`
		}
		var requestType string
		err := tx.QueryRow(ctx, sql, r.EnrollmentID, r.CommandUUID).Scan(&requestType)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s for %s", mdm.ErrUnknownCommand, r.CommandUUID, r.EnrollmentID)
		}
		if err != nil {
			return err
		}
		if r.RequestType == "" {
			r.RequestType = requestType
		}
		if change := updateOf(update, r); change != nil {
			if e == nil {
				return fmt.Errorf("%w: enrollment %q", mdm.ErrNotFound, r.EnrollmentID)
			}
			change(e)
			if err := putEnrollment(ctx, tx, e, true); err != nil {
				return err
			}
		}
		meta := *r
		meta.Raw = nil
		doc, err := jsonDoc(&meta)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO mdm_results (enrollment_id, raw, doc) VALUES ($1, $2, $3)`, r.EnrollmentID, r.Raw, doc)
		return err
	})
}

func updateOf(update mdm.ResultUpdate, r *mdm.Result) func(*mdm.Enrollment) {
	if update == nil {
		return nil
	}
	return update(r)
}

// Results implements mdm.Store.
func (s *MDMStore) Results(ctx context.Context, id string) ([]*mdm.Result, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT doc, raw FROM mdm_results WHERE enrollment_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*mdm.Result, error) {
		var (
			r   mdm.Result
			doc []byte
			raw []byte
		)
		if err := row.Scan(&doc, &raw); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(doc, &r); err != nil {
			return nil, err
		}
		r.Raw = raw
		return &r, nil
	})
}
