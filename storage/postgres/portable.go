package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
)

var _ storage.Portable = (*DB)(nil)

// A portableKind is how one kind of record maps to the schema: the query
// exporting it (its key components as text, then the document, then the
// data when it has one), and the table and columns importing it with the
// row a record becomes.
type portableKind struct {
	export string
	data   bool
	table  string
	cols   []string
	row    func(r *storage.Record) ([]any, error)
}

// kvKind is the portableKind of a kvTable's documents.
func kvKind(t kvTable) portableKind {
	return portableKind{
		export: "SELECT " + t.key + ", doc FROM " + t.name + " ORDER BY " + t.key,
		table:  t.name, cols: []string{t.key, "doc"},
		row: func(r *storage.Record) ([]any, error) { return []any{r.Key[0], []byte(r.Doc)}, nil },
	}
}

// settingsKind is the portableKind of one row of the settings table.
func settingsKind(name string) portableKind {
	return portableKind{
		export: "SELECT doc FROM settings WHERE name = '" + name + "'",
		table:  "settings", cols: []string{"name", "doc"},
		row: func(r *storage.Record) ([]any, error) { return []any{name, []byte(r.Doc)}, nil },
	}
}

var portableKinds = map[string]portableKind{
	storage.KindSCEPChallenge: {
		export: `SELECT encode(hash, 'hex'), doc FROM scep_challenges ORDER BY hash`,
		table:  "scep_challenges", cols: []string{"hash", "id", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			hash, err := hex.DecodeString(r.Key[0])
			if err != nil {
				return nil, err
			}
			var c scep.Challenge
			if err := json.Unmarshal(r.Doc, &c); err != nil {
				return nil, err
			}
			return []any{hash, c.ID, []byte(r.Doc)}, nil
		},
	},
	storage.KindSCEPCert: {
		export: `SELECT fingerprint, doc FROM scep_certs ORDER BY fingerprint`,
		table:  "scep_certs", cols: []string{"fingerprint", "serial", "revoked", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			var c scep.IssuedCert
			if err := json.Unmarshal(r.Doc, &c); err != nil {
				return nil, err
			}
			if c.Fingerprint != r.Key[0] {
				return nil, fmt.Errorf("the certificate's fingerprint is %s", c.Fingerprint)
			}
			return []any{c.Fingerprint, c.Serial, c.Revoked(), []byte(r.Doc)}, nil
		},
	},
	storage.KindMDMEnrollment: kvKind(kvTable{"mdm_enrollments", "id"}),
	storage.KindMDMCertBinding: {
		export: `SELECT fingerprint, to_jsonb(enrollment_id) FROM mdm_cert_bindings ORDER BY fingerprint`,
		table:  "mdm_cert_bindings", cols: []string{"fingerprint", "enrollment_id"},
		row: stringRow,
	},
	storage.KindMDMCommand: {
		export: `SELECT uuid, doc, payload FROM mdm_commands ORDER BY uuid`, data: true,
		table: "mdm_commands", cols: []string{"uuid", "payload", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			return []any{r.Key[0], nonNil(r.Data), []byte(r.Doc)}, nil
		},
	},
	// The identity column seq numbers the rows in the order they are
	// copied, which is the queue's.
	storage.KindMDMQueue: {
		export: `SELECT enrollment_id, command_uuid, jsonb_build_object('request_type', request_type, 'not_now', not_now)
			FROM mdm_queue ORDER BY enrollment_id, seq`,
		table: "mdm_queue", cols: []string{"enrollment_id", "command_uuid", "request_type", "not_now"},
		row: func(r *storage.Record) ([]any, error) {
			var e storage.QueueEntry
			if err := json.Unmarshal(r.Doc, &e); err != nil {
				return nil, err
			}
			return []any{r.Key[0], r.Key[1], e.RequestType, e.NotNow}, nil
		},
	},
	storage.KindMDMResult: {
		export: `SELECT enrollment_id, (row_number() OVER (PARTITION BY enrollment_id ORDER BY seq))::text, doc, raw
			FROM mdm_results ORDER BY enrollment_id, seq`, data: true,
		table: "mdm_results", cols: []string{"enrollment_id", "raw", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			return []any{r.Key[0], r.Data, []byte(r.Doc)}, nil
		},
	},
	storage.KindEnrollToken: {
		export: `SELECT encode(hash, 'hex'), doc FROM enroll_tokens ORDER BY hash`,
		table:  "enroll_tokens", cols: []string{"hash", "id", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			hash, err := hex.DecodeString(r.Key[0])
			if err != nil {
				return nil, err
			}
			var t struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(r.Doc, &t); err != nil {
				return nil, err
			}
			return []any{hash, t.ID, []byte(r.Doc)}, nil
		},
	},
	storage.KindEnrollRecord:      kvKind(tableRecords),
	storage.KindEnrollUser:        kvKind(tableUsers),
	storage.KindEnrollAssignment:  kvKind(tableAssignments),
	storage.KindEnrollSettings:    settingsKind(settingsEnroll),
	storage.KindDEPToken:          kvKind(tableDEPTokens),
	storage.KindDEPCursor:         kvKind(tableDEPCursors),
	storage.KindCampaignRing:      kvKind(tableRings),
	storage.KindCampaignJob:       numbered("campaign_jobs", "ring", "id"),
	storage.KindCampaignDelivery:  numbered("campaign_deliveries", "ring", "job", "seq"),
	storage.KindSCIMToken:         kvKind(tableSCIMTokens),
	storage.KindDirectorySettings: settingsKind(settingsDirectory),
	storage.KindDirectoryGroup:    kvKind(tableDirGroups),
	storage.KindDirectoryOffboard: kvKind(tableOffboardings),
	storage.KindSCIMResource: {
		export: `SELECT type, id, doc FROM scim_resources ORDER BY type, id`,
		table:  "scim_resources", cols: []string{"type", "id", "key", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			var st scim.Stored
			if err := decodeNumbers(r.Doc, &st); err != nil {
				return nil, err
			}
			return []any{r.Key[0], r.Key[1], st.Key, []byte(r.Doc)}, nil
		},
	},
	storage.KindDirectoryLink: {
		export: `SELECT key, to_jsonb(email) FROM directory_links ORDER BY key`,
		table:  "directory_links", cols: []string{"key", "email"},
		row: stringRow,
	},
	storage.KindDirectoryAudit: {
		export: `SELECT seq::text, doc FROM directory_audit ORDER BY seq`,
		table:  "directory_audit", cols: []string{"seq", "doc"},
		row: func(r *storage.Record) ([]any, error) {
			seq, err := strconv.ParseInt(r.Key[0], 10, 64)
			if err != nil {
				return nil, err
			}
			return []any{seq, []byte(r.Doc)}, nil
		},
	},
	// The one counter: the audit log's, which this schema calls 'audit'.
	storage.KindCounter: {
		export: `SELECT '` + storage.CounterAudit + `', to_jsonb(value) FROM counters WHERE name = 'audit'`,
		table:  "counters", cols: []string{"name", "value"},
		row: func(r *storage.Record) ([]any, error) {
			if r.Key[0] != storage.CounterAudit {
				return nil, fmt.Errorf("unknown counter %q", r.Key[0])
			}
			var n int64
			if err := json.Unmarshal(r.Doc, &n); err != nil {
				return nil, err
			}
			return []any{"audit", n}, nil
		},
	},
}

// stringRow is the row of a record whose document is a string: its key
// and the string.
func stringRow(r *storage.Record) ([]any, error) {
	var s string
	if err := json.Unmarshal(r.Doc, &s); err != nil {
		return nil, err
	}
	return []any{r.Key[0], s}, nil
}

// numbered is the portableKind of a table keyed by a name and numbers.
func numbered(table string, cols ...string) portableKind {
	sel := cols[0]
	for _, c := range cols[1:] {
		sel += ", " + c + "::text"
	}
	return portableKind{
		export: "SELECT " + sel + ", doc FROM " + table + " ORDER BY " + strings.Join(cols, ", "),
		table:  table, cols: append(cols, "doc"),
		row: func(r *storage.Record) ([]any, error) {
			row := []any{r.Key[0]}
			for _, s := range r.Key[1:] {
				n, err := strconv.ParseInt(s, 10, 32)
				if err != nil {
					return nil, err
				}
				row = append(row, int32(n))
			}
			return append(row, []byte(r.Doc)), nil
		},
	}
}

// nonNil is b, or an empty slice for a NOT NULL column when b is nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Export implements storage.Portable, from one snapshot of the database
// (a read-only, repeatable-read transaction), so that servers may go on
// writing meanwhile.
func (d *DB) Export(ctx context.Context, fn func(*storage.Record) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return pgx.BeginTxFunc(ctx, d.pool, opts, func(tx pgx.Tx) error {
		for _, kind := range storage.Kinds() {
			if err := exportKind(ctx, tx, kind, fn); err != nil {
				return fmt.Errorf("postgres: export %s: %w", kind, err)
			}
		}
		return nil
	})
}

func exportKind(ctx context.Context, tx pgx.Tx, kind string, fn func(*storage.Record) error) error {
	pk, ok := portableKinds[kind]
	if !ok {
		return fmt.Errorf("no export for kind %s", kind)
	}
	rows, err := tx.Query(ctx, pk.export)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := len(rows.FieldDescriptions())
	nkeys := n - 1
	if pk.data {
		nkeys--
	}
	for rows.Next() {
		r := &storage.Record{Kind: kind}
		if nkeys > 0 {
			r.Key = make([]string, nkeys)
		}
		dest := make([]any, 0, n)
		for i := range r.Key {
			dest = append(dest, &r.Key[i])
		}
		var doc []byte
		dest = append(dest, &doc)
		if pk.data {
			dest = append(dest, &r.Data)
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		r.Doc = doc
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// importBatch is how many rows of a kind are copied at once.
const importBatch = 2048

// Import implements storage.Portable, in one transaction, each kind's rows
// copied in batches (COPY).
func (d *DB) Import(ctx context.Context, records iter.Seq2[*storage.Record, error]) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if err := checkEmpty(ctx, tx); err != nil {
			return err
		}
		var (
			kind string
			pk   portableKind
			rows [][]any
		)
		flush := func() error {
			if len(rows) == 0 {
				return nil
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{pk.table}, pk.cols, pgx.CopyFromRows(rows))
			rows = rows[:0]
			if err != nil {
				return fmt.Errorf("postgres: import %s: %w", kind, err)
			}
			return nil
		}
		for r, err := range records {
			if err != nil {
				return err
			}
			if err := r.Check(); err != nil {
				return fmt.Errorf("postgres: import: %w", err)
			}
			if r.Kind != kind {
				if err := flush(); err != nil {
					return err
				}
				kind, pk = r.Kind, portableKinds[r.Kind]
			}
			row, err := pk.row(r)
			if err != nil {
				return fmt.Errorf("postgres: import %s record %q: %w", r.Kind, r.Key, err)
			}
			if rows = append(rows, row); len(rows) == importBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		// The audit counter is at least the last entry's number, whatever
		// the records said.
		_, err := tx.Exec(ctx, `INSERT INTO counters SELECT 'audit', max(seq) FROM directory_audit HAVING count(*) > 0
			ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)`)
		return err
	})
}

// checkEmpty refuses a database that holds data, or that a server is
// using (a lease is held).
func checkEmpty(ctx context.Context, tx pgx.Tx) error {
	var name, holder string
	err := tx.QueryRow(ctx, `SELECT name, holder FROM leases WHERE expires_at > now() LIMIT 1`).Scan(&name, &holder)
	if err == nil {
		return fmt.Errorf("postgres: a server is using the database (%s holds the %s lease): stop it before importing", holder, name)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	tables := map[string]bool{}
	for _, pk := range portableKinds {
		tables[pk.table] = true
	}
	for _, t := range slices.Sorted(maps.Keys(tables)) {
		var held bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+t+")").Scan(&held); err != nil {
			return err
		}
		if held {
			return fmt.Errorf("postgres: import needs an empty database; %s holds data", t)
		}
	}
	return nil
}
