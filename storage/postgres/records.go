package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll"
)

// RecordStore implements enroll.RecordStore.
type RecordStore struct{ d *DB }

var _ enroll.RecordStore = (*RecordStore)(nil)

// Records returns the database's enroll.RecordStore.
func (d *DB) Records() *RecordStore { return &RecordStore{d} }

// Import implements enroll.RecordStore: the rows concerned are read and
// locked in one statement per table and written in two, so an import of
// thousands costs a handful of round trips.
func (s *RecordStore) Import(ctx context.Context, records []*enroll.Record, users []*enroll.User, now time.Time) (*enroll.ImportStats, error) {
	var st enroll.ImportStats
	err := s.d.tx(ctx, func(tx pgx.Tx) error {
		st = enroll.ImportStats{} // the transaction may run again
		serials := make([]string, len(records))
		for i, r := range records {
			serials[i] = r.Serial
		}
		err := importDocs(ctx, tx, tableRecords, serials, records, now, enroll.MergeRecord,
			&st.RecordsCreated, &st.RecordsUpdated, &st.RecordsUnchanged)
		if err != nil {
			return err
		}
		emails := make([]string, len(users))
		for i, u := range users {
			emails[i] = u.Email
		}
		return importDocs(ctx, tx, tableUsers, emails, users, now, enroll.MergeUser,
			&st.UsersCreated, &st.UsersUpdated, &st.UsersUnchanged)
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// importDocs merges each imported value into the one stored at its key,
// counting it as created, updated or unchanged, and stores the results.
func importDocs[T any](ctx context.Context, tx pgx.Tx, t kvTable, keys []string, imported []*T, now time.Time,
	merge func(stored, imported *T, now time.Time) (*T, bool), created, updated, unchanged *int) error {
	if len(keys) == 0 {
		return nil
	}
	b, err := lockDocs[T](ctx, tx, t, keys)
	if err != nil {
		return err
	}
	for i, key := range keys {
		stored := b.get(key)
		merged, changed := merge(stored, imported[i], now)
		switch {
		case stored == nil:
			*created++
		case changed:
			*updated++
		default:
			*unchanged++
			continue
		}
		b.set(key, merged)
	}
	return b.write(ctx, tx)
}

// Record implements enroll.RecordStore.
func (s *RecordStore) Record(ctx context.Context, serial string) (*enroll.Record, error) {
	return getKV[enroll.Record](ctx, s.d, tableRecords, serial)
}

// User implements enroll.RecordStore.
func (s *RecordStore) User(ctx context.Context, email string) (*enroll.User, error) {
	return getKV[enroll.User](ctx, s.d, tableUsers, email)
}

// getKV returns the document at key, or enroll.ErrNotFound.
func getKV[T any](ctx context.Context, d *DB, t kvTable, key string) (*T, error) {
	v := new(T)
	ok, err := t.get(ctx, d.pool, key, v)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s", enroll.ErrNotFound, key)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// UpdateRecord implements enroll.RecordStore.
func (s *RecordStore) UpdateRecord(ctx context.Context, serial string, fn func(*enroll.Record) (*enroll.Record, error)) (*enroll.Record, error) {
	return updateKV(ctx, s.d, tableRecords, serial, fn)
}

// UpdateRecords implements enroll.RecordStore.
func (s *RecordStore) UpdateRecords(ctx context.Context, serials []string, fn func(string, *enroll.Record) (*enroll.Record, error)) error {
	if len(serials) == 0 {
		return ctx.Err()
	}
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		b, err := lockDocs[enroll.Record](ctx, tx, tableRecords, serials)
		if err != nil {
			return err
		}
		for _, serial := range serials {
			next, err := fn(serial, b.get(serial))
			if err != nil {
				return err
			}
			if next != nil {
				b.set(serial, next)
			}
		}
		return b.write(ctx, tx)
	})
}

// UpdateUser implements enroll.RecordStore.
func (s *RecordStore) UpdateUser(ctx context.Context, email string, fn func(*enroll.User) (*enroll.User, error)) (*enroll.User, error) {
	return updateKV(ctx, s.d, tableUsers, email, fn)
}

// Records implements enroll.RecordStore.
func (s *RecordStore) Records(ctx context.Context, fn func(*enroll.Record) bool) error {
	return eachKV(ctx, s.d.pool, tableRecords, fn)
}

// Users implements enroll.RecordStore.
func (s *RecordStore) Users(ctx context.Context, fn func(*enroll.User) bool) error {
	return eachKV(ctx, s.d.pool, tableUsers, fn)
}

// AssignmentStore implements enroll.AssignmentStore.
type AssignmentStore struct{ d *DB }

var _ enroll.AssignmentStore = (*AssignmentStore)(nil)

// Assignments returns the database's enroll.AssignmentStore.
func (d *DB) Assignments() *AssignmentStore { return &AssignmentStore{d} }

// PutAssignment implements enroll.AssignmentStore.
func (s *AssignmentStore) PutAssignment(ctx context.Context, a *enroll.Assignment) error {
	return tableAssignments.put(ctx, s.d.pool, a.ID, a)
}

// Assignment implements enroll.AssignmentStore.
func (s *AssignmentStore) Assignment(ctx context.Context, id string) (*enroll.Assignment, error) {
	return getKV[enroll.Assignment](ctx, s.d, tableAssignments, id)
}

// Assignments implements enroll.AssignmentStore.
func (s *AssignmentStore) Assignments(ctx context.Context, fn func(*enroll.Assignment) bool) error {
	return eachKV(ctx, s.d.pool, tableAssignments, fn)
}

// DeleteAssignment implements enroll.AssignmentStore.
func (s *AssignmentStore) DeleteAssignment(ctx context.Context, id string) error {
	ok, err := tableAssignments.delete(ctx, s.d.pool, id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: assignment %s", enroll.ErrNotFound, id)
	}
	return err
}

// SettingsStore implements enroll.SettingsStore.
type SettingsStore struct{ d *DB }

var _ enroll.SettingsStore = (*SettingsStore)(nil)

// Settings returns the database's enroll.SettingsStore.
func (d *DB) Settings() *SettingsStore { return &SettingsStore{d} }

// settingsEnroll is enroll's row of the settings table.
const settingsEnroll = "enroll"

// Settings implements enroll.SettingsStore.
func (s *SettingsStore) Settings(ctx context.Context) (*enroll.Settings, error) {
	var st enroll.Settings
	if _, err := tableSettings.get(ctx, s.d.pool, settingsEnroll, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// UpdateSettings implements enroll.SettingsStore.
func (s *SettingsStore) UpdateSettings(ctx context.Context, fn func(*enroll.Settings) error) (*enroll.Settings, error) {
	return updateKV(ctx, s.d, tableSettings, settingsEnroll, func(st *enroll.Settings) (*enroll.Settings, error) {
		next := new(enroll.Settings)
		if st != nil {
			*next = *st
		}
		return next, fn(next)
	})
}
