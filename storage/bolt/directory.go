package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll/directory"
)

var (
	bucketDirGroups       = []byte("directory.groups")       // key → GroupRecord
	bucketDirLinks        = []byte("directory.links")        // SOURCE:ID → email
	bucketDirOffboardings = []byte("directory.offboardings") // id → Offboarding
	bucketDirAudit        = []byte("directory.audit")        // seq (big-endian) → AuditEntry
	bucketDirSettings     = []byte("directory.settings")     // "settings" → Settings
)

// DirectoryStore implements directory.Store.
type DirectoryStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ directory.Store = (*DirectoryStore)(nil)

// Directory returns the database's directory.Store.
func (d *DB) Directory() *DirectoryStore { return &DirectoryStore{db: d.db, writes: d.writes} }

// Settings implements directory.Store.
func (s *DirectoryStore) Settings(ctx context.Context) (*directory.Settings, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := directory.DefaultSettings()
	err := s.db.View(func(tx *bbolt.Tx) error {
		_, err := getJSON(tx.Bucket(bucketDirSettings), keySettings, st)
		return err
	})
	return st, err
}

// PutSettings implements directory.Store.
func (s *DirectoryStore) PutSettings(ctx context.Context, st *directory.Settings) error {
	return s.put(ctx, bucketDirSettings, keySettings, st)
}

func (s *DirectoryStore) put(ctx context.Context, bucket, key []byte, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error { return putJSON(tx.Bucket(bucket), key, v) })
}

// PutGroup implements directory.Store.
func (s *DirectoryStore) PutGroup(ctx context.Context, g *directory.GroupRecord) error {
	return s.put(ctx, bucketDirGroups, []byte(g.Key), g)
}

// DeleteGroup implements directory.Store.
func (s *DirectoryStore) DeleteGroup(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDirGroups)
		if b.Get([]byte(key)) == nil {
			return fmt.Errorf("%w: group %s", directory.ErrNotFound, key)
		}
		return b.Delete([]byte(key))
	})
}

// Groups implements directory.Store.
func (s *DirectoryStore) Groups(ctx context.Context, fn func(*directory.GroupRecord) bool) error {
	return each(ctx, s.db, bucketDirGroups, fn)
}

// Link implements directory.Store.
func (s *DirectoryStore) Link(ctx context.Context, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var email string
	err := s.db.View(func(tx *bbolt.Tx) error {
		email = string(tx.Bucket(bucketDirLinks).Get([]byte(key)))
		return nil
	})
	return email, err
}

// SetLinks implements directory.Store.
func (s *DirectoryStore) SetLinks(ctx context.Context, links map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDirLinks)
		for key, email := range links {
			var err error
			if email == "" {
				err = b.Delete([]byte(key))
			} else {
				err = b.Put([]byte(key), []byte(email))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// PutOffboarding implements directory.Store.
func (s *DirectoryStore) PutOffboarding(ctx context.Context, o *directory.Offboarding) error {
	return s.put(ctx, bucketDirOffboardings, []byte(o.ID), o)
}

// UpdateOffboarding implements directory.Store.
func (s *DirectoryStore) UpdateOffboarding(ctx context.Context, id string, fn func(*directory.Offboarding) (*directory.Offboarding, error)) (*directory.Offboarding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *directory.Offboarding
	err := s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDirOffboardings)
		var o directory.Offboarding
		ok, err := getJSON(b, []byte(id), &o)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: offboarding %s", directory.ErrNotFound, id)
		}
		out = &o
		next, err := fn(&o)
		if err != nil || next == nil {
			return err
		}
		out = next
		return putJSON(b, []byte(id), next)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Offboardings implements directory.Store.
func (s *DirectoryStore) Offboardings(ctx context.Context, fn func(*directory.Offboarding) bool) error {
	return each(ctx, s.db, bucketDirOffboardings, fn)
}

// Audit implements directory.Store.
func (s *DirectoryStore) Audit(ctx context.Context, entries ...*directory.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDirAudit)
		for _, e := range entries {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			e.Seq = seq
			if err := putJSON(b, binary.BigEndian.AppendUint64(nil, seq), e); err != nil {
				return err
			}
		}
		return nil
	})
}

// AuditLog implements directory.Store.
func (s *DirectoryStore) AuditLog(ctx context.Context, after uint64, fn func(*directory.AuditEntry) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDirAudit).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil; k, v = c.Next() {
			var e directory.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("bolt: audit entry %x: %w", k, err)
			}
			if !fn(&e) {
				return nil
			}
		}
		return nil
	})
}
