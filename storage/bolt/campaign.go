package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
)

var (
	bucketRings      = []byte("campaign.rings")      // name → Ring
	bucketJobs       = []byte("campaign.jobs")       // ring, 0, job (uint32) → Job
	bucketDeliveries = []byte("campaign.deliveries") // ring, 0, job (uint32), seq (uint32) → Delivery
)

// CampaignStore implements campaign.Store.
type CampaignStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ campaign.Store = (*CampaignStore)(nil)

// Campaigns returns the database's campaign.Store.
func (d *DB) Campaigns() *CampaignStore { return &CampaignStore{db: d.db, writes: d.writes} }

// ringPrefix is the common prefix of a ring's job and delivery keys (ring
// names cannot hold a 0 byte).
func ringPrefix(ring string) []byte { return append([]byte(ring), 0) }

func jobKey(ring string, job int) []byte {
	return binary.BigEndian.AppendUint32(ringPrefix(ring), uint32(job))
}

func deliveryKey(ring string, job, seq int) []byte {
	return binary.BigEndian.AppendUint32(jobKey(ring, job), uint32(seq))
}

// CreateRing implements campaign.Store.
func (s *CampaignStore) CreateRing(ctx context.Context, r *campaign.Ring) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRings)
		if b.Get([]byte(r.Name)) != nil {
			return fmt.Errorf("%w: ring %s", campaign.ErrExists, r.Name)
		}
		return putJSON(b, []byte(r.Name), r)
	})
}

// Ring implements campaign.Store.
func (s *CampaignStore) Ring(ctx context.Context, name string) (*campaign.Ring, error) {
	var r campaign.Ring
	if err := get(ctx, s.db, bucketRings, name, &r); err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	return &r, nil
}

// Rings implements campaign.Store.
func (s *CampaignStore) Rings(ctx context.Context, fn func(*campaign.Ring) bool) error {
	return each(ctx, s.db, bucketRings, fn)
}

// UpdateRing implements campaign.Store.
func (s *CampaignStore) UpdateRing(ctx context.Context, name string, fn func(*campaign.Ring) (*campaign.Ring, error)) (*campaign.Ring, error) {
	return update(ctx, s.writes, bucketRings, name, func(r *campaign.Ring) (*campaign.Ring, error) {
		if r == nil {
			return nil, fmt.Errorf("%w: ring %s", enroll.ErrNotFound, name)
		}
		return fn(r)
	})
}

// DeleteRing implements campaign.Store.
func (s *CampaignStore) DeleteRing(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		rings := tx.Bucket(bucketRings)
		if rings.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: ring %s", enroll.ErrNotFound, name)
		}
		if err := rings.Delete([]byte(name)); err != nil {
			return err
		}
		prefix := ringPrefix(name)
		for _, bucket := range [][]byte{bucketJobs, bucketDeliveries} {
			c := tx.Bucket(bucket).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// CreateJob implements campaign.Store.
func (s *CampaignStore) CreateJob(ctx context.Context, j *campaign.Job, targets []campaign.Target) (*campaign.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out campaign.Job
	err := s.writes.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRings).Get([]byte(j.Ring)) == nil {
			return fmt.Errorf("%w: ring %s", enroll.ErrNotFound, j.Ring)
		}
		jobs := tx.Bucket(bucketJobs)
		out = *j
		out.ID = 1
		c := jobs.Cursor()
		if k, _ := c.Seek(jobKey(j.Ring, 1<<32-1)); k == nil || !bytes.HasPrefix(k, ringPrefix(j.Ring)) {
			k, _ = c.Prev()
			if k != nil && bytes.HasPrefix(k, ringPrefix(j.Ring)) {
				out.ID = int(binary.BigEndian.Uint32(k[len(k)-4:])) + 1
			}
		}
		out.Total = len(targets)
		if err := putJSON(jobs, jobKey(j.Ring, out.ID), &out); err != nil {
			return err
		}
		deliveries := tx.Bucket(bucketDeliveries)
		for i, t := range targets {
			d := campaign.Delivery{Ring: j.Ring, Job: out.ID, Seq: i + 1, Target: t}
			if err := putJSON(deliveries, deliveryKey(j.Ring, out.ID, d.Seq), &d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Jobs implements campaign.Store.
func (s *CampaignStore) Jobs(ctx context.Context, ring string, fn func(*campaign.Job) bool) error {
	var prefix []byte
	if ring != "" {
		prefix = ringPrefix(ring)
	}
	return eachPrefix(ctx, s.db, bucketJobs, prefix, fn)
}

// UpdateJob implements campaign.Store.
func (s *CampaignStore) UpdateJob(ctx context.Context, ring string, id int, fn func(*campaign.Job) (*campaign.Job, error)) (*campaign.Job, error) {
	return update(ctx, s.writes, bucketJobs, string(jobKey(ring, id)), fn)
}

// Deliveries implements campaign.Store.
func (s *CampaignStore) Deliveries(ctx context.Context, ring string, job int, fn func(*campaign.Delivery) bool) error {
	prefix := ringPrefix(ring)
	if job != 0 {
		prefix = jobKey(ring, job)
	}
	return eachPrefix(ctx, s.db, bucketDeliveries, prefix, fn)
}

// PutDeliveries implements campaign.Store.
func (s *CampaignStore) PutDeliveries(ctx context.Context, ds ...*campaign.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		for _, d := range ds {
			if err := putJSON(b, deliveryKey(d.Ring, d.Job, d.Seq), d); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachPrefix decodes every value of a bucket whose key has a prefix, in
// key order, into a new T and calls fn until it returns false.
func eachPrefix[T any](ctx context.Context, db *bbolt.DB, bucket, prefix []byte, fn func(*T) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			t := new(T)
			if err := json.Unmarshal(v, t); err != nil {
				return fmt.Errorf("bolt: %s %q: %w", bucket, k, err)
			}
			if !fn(t) {
				return nil
			}
		}
		return nil
	})
}
