package bolt

import (
	"context"
	"encoding/json"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/storage"
)

var bucketLeases = []byte("leases") // name → storage.Lease

// Leases implements storage.Leases. One process holds a bbolt file, so
// its leases only ever order that process's own workers; they follow the
// same rules as the PostgreSQL backend's, which several servers share.
type Leases struct {
	db     *bbolt.DB
	writes *committer
}

var _ storage.Leases = (*Leases)(nil)

// Leases returns the database's storage.Leases.
func (d *DB) Leases() *Leases { return &Leases{db: d.db, writes: d.writes} }

// Acquire implements storage.Leases.
func (l *Leases) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var got bool
	err := l.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		now := time.Now()
		var cur storage.Lease
		ok, err := getJSON(b, []byte(name), &cur)
		if err != nil {
			return err
		}
		got = !ok || cur.Holder == holder || cur.ExpiresAt.Before(now)
		if !got {
			return nil
		}
		return putJSON(b, []byte(name), storage.Lease{Holder: holder, ExpiresAt: now.Add(ttl).UTC()})
	})
	return got, err
}

// Release implements storage.Leases.
func (l *Leases) Release(ctx context.Context, name, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		var cur storage.Lease
		ok, err := getJSON(b, []byte(name), &cur)
		if err != nil || !ok || cur.Holder != holder {
			return err
		}
		return b.Delete([]byte(name))
	})
}

// Holders implements storage.Leases.
func (l *Leases) Holders(ctx context.Context) (map[string]storage.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := map[string]storage.Lease{}
	err := l.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			var ls storage.Lease
			err := json.Unmarshal(v, &ls)
			out[string(k)] = ls
			return err
		})
	})
	return out, err
}

// Stores returns the database's stores.
func (d *DB) Stores() storage.Stores {
	return storage.Stores{
		SCEP: d.SCEP(), MDM: d.MDM(), Enroll: d.Enroll(), Records: d.Records(),
		Assignments: d.Assignments(), Settings: d.Settings(), DEP: d.DEP(),
		Campaigns: d.Campaigns(), SCIM: d.SCIM(), Directory: d.Directory(), Leases: d.Leases(),
	}
}
