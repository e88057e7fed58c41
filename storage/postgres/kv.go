package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// A kvTable is a table of JSON documents by a text key: the shape of most
// of Custody's values. Name and key are constants of this package, never
// input.
type kvTable struct {
	name, key string
}

var (
	tableRecords      = kvTable{"enroll_records", "serial"}
	tableUsers        = kvTable{"enroll_users", "email"}
	tableAssignments  = kvTable{"enroll_assignments", "id"}
	tableSettings     = kvTable{"settings", "name"}
	tableDEPTokens    = kvTable{"dep_tokens", "name"}
	tableDEPCursors   = kvTable{"dep_cursors", "name"}
	tableRings        = kvTable{"campaign_rings", "name"}
	tableSCIMTokens   = kvTable{"scim_tokens", "id"}
	tableDirGroups    = kvTable{"directory_groups", "key"}
	tableOffboardings = kvTable{"directory_offboardings", "id"}
)

func (t kvTable) selectOne() string {
	return "SELECT doc FROM " + t.name + " WHERE " + t.key + " = $1"
}

// get decodes the document at key into v; false when there is none.
func (t kvTable) get(ctx context.Context, q querier, key string, v any) (bool, error) {
	return getDoc(ctx, q, v, t.selectOne(), key)
}

// put stores v at key, replacing what is there.
func (t kvTable) put(ctx context.Context, q querier, key string, v any) error {
	doc, err := jsonDoc(v)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, "INSERT INTO "+t.name+" ("+t.key+", doc) VALUES ($1, $2) ON CONFLICT ("+t.key+") DO UPDATE SET doc = excluded.doc", key, doc)
	return err
}

// delete removes the document at key and reports whether there was one.
func (t kvTable) delete(ctx context.Context, q querier, key string) (bool, error) {
	tag, err := q.Exec(ctx, "DELETE FROM "+t.name+" WHERE "+t.key+" = $1", key)
	return tag.RowsAffected() > 0, err
}

// eachKV calls fn for each document of t in key order until it returns
// false.
func eachKV[T any](ctx context.Context, q querier, t kvTable, fn func(*T) bool) error {
	return each(ctx, q, fn, "SELECT doc FROM "+t.name+" ORDER BY "+t.key)
}

// updateKV applies fn to the document at key (nil when there is none) and
// stores what it returns unless that is nil, in one transaction holding the
// row's lock; it returns the document stored afterwards. fn may run more
// than once: when another transaction creates the row fn saw absent, fn
// runs again with that row.
func updateKV[T any](ctx context.Context, d *DB, t kvTable, key string, fn func(*T) (*T, error)) (*T, error) {
	var out *T
	err := d.tx(ctx, func(tx pgx.Tx) error {
		out = new(T)
		ok, err := getDoc(ctx, tx, out, t.selectOne()+" FOR UPDATE", key)
		if err != nil {
			return fmt.Errorf("postgres: %s %q: %w", t.name, key, err)
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
		out = next
		if ok {
			_, err = tx.Exec(ctx, "UPDATE "+t.name+" SET doc = $2 WHERE "+t.key+" = $1", key, doc)
			return err
		}
		tag, err := tx.Exec(ctx, "INSERT INTO "+t.name+" ("+t.key+", doc) VALUES ($1, $2) ON CONFLICT DO NOTHING", key, doc)
		if err == nil && tag.RowsAffected() == 0 {
			err = errRetry // created meanwhile: run fn again with it
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// A docBatch is read-modify-write of many documents of one table in one
// transaction: lock loads and locks the rows of the keys, then callers
// read and replace values with get and set, and write stores what changed
// in two statements, however many keys.
type docBatch[T any] struct {
	t       kvTable
	stored  map[string]*T // as loaded, or as set since
	existed map[string]bool
	dirty   map[string]bool
	changed []string // the keys set, in the order first set
}

func lockDocs[T any](ctx context.Context, tx pgx.Tx, t kvTable, keys []string) (*docBatch[T], error) {
	b := &docBatch[T]{t: t, stored: make(map[string]*T, len(keys)), existed: make(map[string]bool, len(keys)), dirty: make(map[string]bool)}
	rows, err := tx.Query(ctx, "SELECT "+t.key+", doc FROM "+t.name+" WHERE "+t.key+" = ANY($1) ORDER BY "+t.key+" FOR UPDATE", keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		key string
		doc []byte
	)
	for rows.Next() {
		if err := rows.Scan(&key, &doc); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal(doc, v); err != nil {
			return nil, fmt.Errorf("postgres: %s %q: %w", t.name, key, err)
		}
		b.stored[key], b.existed[key] = v, true
	}
	return b, rows.Err()
}

// get returns the value of key: as stored, or as set in this batch; nil
// when there is none.
func (b *docBatch[T]) get(key string) *T { return b.stored[key] }

func (b *docBatch[T]) set(key string, v *T) {
	if !b.dirty[key] {
		b.dirty[key] = true
		b.changed = append(b.changed, key)
	}
	b.stored[key] = v
}

// write stores the values set: rows that existed are updated, the others
// inserted; when another transaction inserted one of them meanwhile, the
// transaction must run again (errRetry).
func (b *docBatch[T]) write(ctx context.Context, tx pgx.Tx) error {
	var upKeys, inKeys []string
	var upDocs, inDocs [][]byte
	for _, k := range b.changed {
		doc, err := jsonDoc(b.stored[k])
		if err != nil {
			return err
		}
		if b.existed[k] {
			upKeys, upDocs = append(upKeys, k), append(upDocs, doc)
		} else {
			inKeys, inDocs = append(inKeys, k), append(inDocs, doc)
		}
	}
	if len(upKeys) > 0 {
		_, err := tx.Exec(ctx, "UPDATE "+b.t.name+" AS t SET doc = u.doc FROM unnest($1::text[], $2::jsonb[]) AS u(k, doc) WHERE t."+b.t.key+" = u.k", upKeys, upDocs)
		if err != nil {
			return err
		}
	}
	if len(inKeys) > 0 {
		tag, err := tx.Exec(ctx, "INSERT INTO "+b.t.name+" ("+b.t.key+", doc) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING", inKeys, inDocs)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < int64(len(inKeys)) {
			return errRetry
		}
	}
	return nil
}
