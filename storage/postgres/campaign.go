package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
)

// CampaignStore implements campaign.Store.
type CampaignStore struct{ d *DB }

var _ campaign.Store = (*CampaignStore)(nil)

// Campaigns returns the database's campaign.Store.
func (d *DB) Campaigns() *CampaignStore { return &CampaignStore{d} }

// CreateRing implements campaign.Store.
func (s *CampaignStore) CreateRing(ctx context.Context, r *campaign.Ring) error {
	doc, err := jsonDoc(r)
	if err != nil {
		return err
	}
	tag, err := s.d.pool.Exec(ctx, `INSERT INTO campaign_rings (name, doc) VALUES ($1, $2) ON CONFLICT DO NOTHING`, r.Name, doc)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("%w: ring %s", campaign.ErrExists, r.Name)
	}
	return err
}

// Ring implements campaign.Store.
func (s *CampaignStore) Ring(ctx context.Context, name string) (*campaign.Ring, error) {
	var r campaign.Ring
	ok, err := tableRings.get(ctx, s.d.pool, name, &r)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s", enroll.ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	return &r, nil
}

// Rings implements campaign.Store.
func (s *CampaignStore) Rings(ctx context.Context, fn func(*campaign.Ring) bool) error {
	return eachKV(ctx, s.d.pool, tableRings, fn)
}

// UpdateRing implements campaign.Store.
func (s *CampaignStore) UpdateRing(ctx context.Context, name string, fn func(*campaign.Ring) (*campaign.Ring, error)) (*campaign.Ring, error) {
	return updateKV(ctx, s.d, tableRings, name, func(r *campaign.Ring) (*campaign.Ring, error) {
		if r == nil {
			return nil, fmt.Errorf("%w: ring %s", enroll.ErrNotFound, name)
		}
		return fn(r)
	})
}

// DeleteRing implements campaign.Store. Its jobs and their deliveries go
// with it (ON DELETE CASCADE).
func (s *CampaignStore) DeleteRing(ctx context.Context, name string) error {
	ok, err := tableRings.delete(ctx, s.d.pool, name)
	if err == nil && !ok {
		err = fmt.Errorf("%w: ring %s", enroll.ErrNotFound, name)
	}
	return err
}

// CreateJob implements campaign.Store. The ring's row is locked until the
// job is stored, so that concurrent jobs of a ring get distinct numbers.
func (s *CampaignStore) CreateJob(ctx context.Context, j *campaign.Job, targets []campaign.Target) (*campaign.Job, error) {
	var out campaign.Job
	err := s.d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `SELECT FROM campaign_rings WHERE name = $1 FOR UPDATE`, j.Ring)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: ring %s", enroll.ErrNotFound, j.Ring)
		}
		out = *j
		// A statement of its own, after the lock: its snapshot sees the
		// job of the transaction that held the lock before.
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(id), 0) + 1 FROM campaign_jobs WHERE ring = $1`, j.Ring).Scan(&out.ID); err != nil {
			return err
		}
		out.Total = len(targets)
		doc, err := jsonDoc(&out)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO campaign_jobs (ring, id, doc) VALUES ($1, $2, $3)`, j.Ring, out.ID, doc); err != nil {
			return err
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"campaign_deliveries"}, []string{"ring", "job", "seq", "doc"},
			pgx.CopyFromSlice(len(targets), func(i int) ([]any, error) {
				doc, err := jsonDoc(&campaign.Delivery{Ring: j.Ring, Job: out.ID, Seq: i + 1, Target: targets[i]})
				return []any{j.Ring, out.ID, i + 1, doc}, err
			}))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Jobs implements campaign.Store.
func (s *CampaignStore) Jobs(ctx context.Context, ring string, fn func(*campaign.Job) bool) error {
	if ring == "" {
		return each(ctx, s.d.pool, fn, `SELECT doc FROM campaign_jobs ORDER BY ring, id`)
	}
	return each(ctx, s.d.pool, fn, `SELECT doc FROM campaign_jobs WHERE ring = $1 ORDER BY id`, ring)
}

// UpdateJob implements campaign.Store. As with updateKV, fn sees nil when
// there is no such job, and may run more than once.
func (s *CampaignStore) UpdateJob(ctx context.Context, ring string, id int, fn func(*campaign.Job) (*campaign.Job, error)) (*campaign.Job, error) {
	var out *campaign.Job
	err := s.d.tx(ctx, func(tx pgx.Tx) error {
		out = new(campaign.Job)
		ok, err := getDoc(ctx, tx, out, `SELECT doc FROM campaign_jobs WHERE ring = $1 AND id = $2 FOR UPDATE`, ring, id)
		if err != nil {
			return fmt.Errorf("postgres: job %s/%d: %w", ring, id, err)
		}
		if !ok {
			out = nil
		}
		next, err := fn(out)
		if err != nil || next == nil {
			return err
		}
		doc, err := jsonDoc(next)
		if err != nil {
			return err
		}
		sql := `UPDATE campaign_jobs SET doc = $3 WHERE ring = $1 AND id = $2`
		if !ok {
			sql = `INSERT INTO campaign_jobs (ring, id, doc) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		}
		tag, err := tx.Exec(ctx, sql, ring, id, doc)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errRetry // created meanwhile: run fn again with it
		}
		out = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Deliveries implements campaign.Store.
func (s *CampaignStore) Deliveries(ctx context.Context, ring string, job int, fn func(*campaign.Delivery) bool) error {
	return each(ctx, s.d.pool, fn, `SELECT doc FROM campaign_deliveries WHERE ring = $1 AND ($2 = 0 OR job = $2) ORDER BY job, seq`, ring, job)
}

// PutDeliveries implements campaign.Store. A delivery of a job that does
// not exist (its ring deleted meanwhile) is refused.
func (s *CampaignStore) PutDeliveries(ctx context.Context, ds ...*campaign.Delivery) error {
	if len(ds) == 0 {
		return ctx.Err()
	}
	return s.d.tx(ctx, func(tx pgx.Tx) error {
		for _, d := range ds {
			doc, err := jsonDoc(d)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO campaign_deliveries (ring, job, seq, doc) VALUES ($1, $2, $3, $4)
				ON CONFLICT (ring, job, seq) DO UPDATE SET doc = excluded.doc`, d.Ring, d.Job, d.Seq, doc)
			if err != nil {
				return err
			}
		}
		return nil
	})
}
