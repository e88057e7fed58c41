package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll"
)

var (
	bucketRecords     = []byte("enroll.records")     // serial → Record
	bucketUsers       = []byte("enroll.users")       // email → User
	bucketAssignments = []byte("enroll.assignments") // id → Assignment
	bucketSettings    = []byte("enroll.settings")    // "settings" → Settings
)

// RecordStore implements enroll.RecordStore.
type RecordStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ enroll.RecordStore = (*RecordStore)(nil)

// Records returns the database's enroll.RecordStore.
func (d *DB) Records() *RecordStore { return &RecordStore{db: d.db, writes: d.writes} }

// Import implements enroll.RecordStore.
func (s *RecordStore) Import(ctx context.Context, records []*enroll.Record, users []*enroll.User, now time.Time) (*enroll.ImportStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st enroll.ImportStats
	err := s.writes.update(func(tx *bbolt.Tx) error {
		st = enroll.ImportStats{} // the committer may run this again
		for _, r := range records {
			err := upsert(tx.Bucket(bucketRecords), r.Serial, r, now, enroll.MergeRecord,
				&st.RecordsCreated, &st.RecordsUpdated, &st.RecordsUnchanged)
			if err != nil {
				return err
			}
		}
		for _, u := range users {
			err := upsert(tx.Bucket(bucketUsers), u.Email, u, now, enroll.MergeUser,
				&st.UsersCreated, &st.UsersUpdated, &st.UsersUnchanged)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// upsert merges imported into the value stored at key and stores the
// result, counting it as created, updated or unchanged.
func upsert[T any](b *bbolt.Bucket, key string, imported *T, now time.Time,
	merge func(stored, imported *T, now time.Time) (*T, bool), created, updated, unchanged *int) error {
	var stored *T
	if v := b.Get([]byte(key)); v != nil {
		stored = new(T)
		if err := json.Unmarshal(v, stored); err != nil {
			return fmt.Errorf("bolt: stored %q: %w", key, err)
		}
	}
	merged, changed := merge(stored, imported, now)
	switch {
	case stored == nil:
		*created++
	case changed:
		*updated++
	default:
		*unchanged++
		return nil
	}
	return putJSON(b, []byte(key), merged)
}

// Record implements enroll.RecordStore.
func (s *RecordStore) Record(ctx context.Context, serial string) (*enroll.Record, error) {
	var r enroll.Record
	if err := get(ctx, s.db, bucketRecords, serial, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// User implements enroll.RecordStore.
func (s *RecordStore) User(ctx context.Context, email string) (*enroll.User, error) {
	var u enroll.User
	if err := get(ctx, s.db, bucketUsers, email, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// get decodes the value at key into v, or returns enroll.ErrNotFound.
func get(ctx context.Context, db *bbolt.DB, bucket []byte, key string, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucket), []byte(key), v)
		if err == nil && !ok {
			err = fmt.Errorf("%w: %s", enroll.ErrNotFound, key)
		}
		return err
	})
}

// UpdateRecord implements enroll.RecordStore.
func (s *RecordStore) UpdateRecord(ctx context.Context, serial string, fn func(*enroll.Record) (*enroll.Record, error)) (*enroll.Record, error) {
	return update(ctx, s.writes, bucketRecords, serial, fn)
}

// UpdateRecords implements enroll.RecordStore.
func (s *RecordStore) UpdateRecords(ctx context.Context, serials []string, fn func(string, *enroll.Record) (*enroll.Record, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for _, serial := range serials {
			var stored *enroll.Record
			if v := b.Get([]byte(serial)); v != nil {
				stored = new(enroll.Record)
				if err := json.Unmarshal(v, stored); err != nil {
					return fmt.Errorf("bolt: record %q: %w", serial, err)
				}
			}
			next, err := fn(serial, stored)
			if err != nil {
				return err
			}
			if next != nil {
				if err := putJSON(b, []byte(serial), next); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// UpdateUser implements enroll.RecordStore.
func (s *RecordStore) UpdateUser(ctx context.Context, email string, fn func(*enroll.User) (*enroll.User, error)) (*enroll.User, error) {
	return update(ctx, s.writes, bucketUsers, email, fn)
}

// update applies fn to the value at key (nil when there is none) and stores
// what it returns unless that is nil, in one write transaction; it returns
// the value stored afterwards.
func update[T any](ctx context.Context, w *committer, bucket []byte, key string, fn func(*T) (*T, error)) (*T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *T
	err := w.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		out = nil
		if v := b.Get([]byte(key)); v != nil {
			out = new(T)
			if err := json.Unmarshal(v, out); err != nil {
				return fmt.Errorf("bolt: %s %q: %w", bucket, key, err)
			}
		}
		next, err := fn(out)
		if err != nil || next == nil {
			return err
		}
		out = next
		return putJSON(b, []byte(key), next)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Records implements enroll.RecordStore.
func (s *RecordStore) Records(ctx context.Context, fn func(*enroll.Record) bool) error {
	return each(ctx, s.db, bucketRecords, fn)
}

// Users implements enroll.RecordStore.
func (s *RecordStore) Users(ctx context.Context, fn func(*enroll.User) bool) error {
	return each(ctx, s.db, bucketUsers, fn)
}

// each decodes every value of a bucket in key order into a new T and calls
// fn until it returns false.
func each[T any](ctx context.Context, db *bbolt.DB, bucket []byte, fn func(*T) bool) error {
	return eachPrefix(ctx, db, bucket, nil, fn)
}

// AssignmentStore implements enroll.AssignmentStore.
type AssignmentStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ enroll.AssignmentStore = (*AssignmentStore)(nil)

// Assignments returns the database's enroll.AssignmentStore.
func (d *DB) Assignments() *AssignmentStore { return &AssignmentStore{db: d.db, writes: d.writes} }

// PutAssignment implements enroll.AssignmentStore.
func (s *AssignmentStore) PutAssignment(ctx context.Context, a *enroll.Assignment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		return putJSON(tx.Bucket(bucketAssignments), []byte(a.ID), a)
	})
}

// Assignment implements enroll.AssignmentStore.
func (s *AssignmentStore) Assignment(ctx context.Context, id string) (*enroll.Assignment, error) {
	var a enroll.Assignment
	if err := get(ctx, s.db, bucketAssignments, id, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Assignments implements enroll.AssignmentStore.
func (s *AssignmentStore) Assignments(ctx context.Context, fn func(*enroll.Assignment) bool) error {
	return each(ctx, s.db, bucketAssignments, fn)
}

// DeleteAssignment implements enroll.AssignmentStore.
func (s *AssignmentStore) DeleteAssignment(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAssignments)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("%w: assignment %s", enroll.ErrNotFound, id)
		}
		return b.Delete([]byte(id))
	})
}

// SettingsStore implements enroll.SettingsStore.
type SettingsStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ enroll.SettingsStore = (*SettingsStore)(nil)

// Settings returns the database's enroll.SettingsStore.
func (d *DB) Settings() *SettingsStore { return &SettingsStore{db: d.db, writes: d.writes} }

var keySettings = []byte("settings")

// Settings implements enroll.SettingsStore.
func (s *SettingsStore) Settings(ctx context.Context) (*enroll.Settings, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st enroll.Settings
	err := s.db.View(func(tx *bbolt.Tx) error {
		_, err := getJSON(tx.Bucket(bucketSettings), keySettings, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// UpdateSettings implements enroll.SettingsStore.
func (s *SettingsStore) UpdateSettings(ctx context.Context, fn func(*enroll.Settings) error) (*enroll.Settings, error) {
	return update(ctx, s.writes, bucketSettings, string(keySettings), func(st *enroll.Settings) (*enroll.Settings, error) {
		next := new(enroll.Settings)
		if st != nil {
			*next = *st
		}
		return next, fn(next)
	})
}
