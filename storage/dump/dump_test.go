package dump_test

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/storage/bolt"
	"github.com/custodymdm/custody/storage/dump"
	"github.com/custodymdm/custody/storage/postgres"
	"github.com/custodymdm/custody/storage/postgres/pgtest"
	"github.com/custodymdm/custody/storage/storagetest"
)

func openBolt(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.DSN(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A database moves from bbolt to PostgreSQL and back with the same
// records, byte for byte, and works in each.
func TestBoltPostgresBolt(t *testing.T) {
	from := openBolt(t)
	f := storagetest.Fill(t, from.Stores())
	pg := openPostgres(t)
	there := storagetest.Move(t, from, pg)
	back := openBolt(t)
	again := storagetest.Move(t, pg, back)
	if !again.Equal(there) {
		t.Fatalf("bolt→postgres %v; postgres→bolt %v", there, again)
	}
	t.Logf("%d records, sha256 %s, both ways", there.Records, there.SHA256)
	storagetest.CheckFilled(t, pg.Stores(), f)
	storagetest.CheckFilled(t, back.Stores(), f)
}

// What PostgreSQL stores (jsonb reorders keys, a disabled enrollment's
// flag is set in place) exports as bbolt then does.
func TestPostgresBolt(t *testing.T) {
	pg := openPostgres(t)
	f := storagetest.Fill(t, pg.Stores())
	if err := pg.MDM().Disable(context.Background(), f.Device); err != nil {
		t.Fatal(err)
	}
	to := openBolt(t)
	storagetest.Move(t, pg, to)
}

// records is a storage.Portable holding records in memory.
type records []*storage.Record

func (rs *records) Export(ctx context.Context, fn func(*storage.Record) error) error {
	for _, r := range *rs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (rs *records) Import(ctx context.Context, in iter.Seq2[*storage.Record, error]) error {
	var got records
	for r, err := range in {
		if err != nil {
			return err
		}
		got = append(got, r)
	}
	*rs = got
	return nil
}

func exportFile(t testing.TB, rs ...*storage.Record) []byte {
	var b bytes.Buffer
	src := records(rs)
	if _, err := dump.Write(context.Background(), &b, &src, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSummaryCountsAndChecksum(t *testing.T) {
	file := exportFile(t,
		&storage.Record{Kind: storage.KindMDMEnrollment, Key: []string{"A"}, Doc: json.RawMessage(`{"enabled":true,"id":"A"}`)},
		&storage.Record{Kind: storage.KindMDMCertBinding, Key: []string{"fp"}, Doc: json.RawMessage(`"A"`)},
		&storage.Record{Kind: storage.KindCounter, Key: []string{storage.CounterAudit}, Doc: json.RawMessage(`7`)},
	)
	lines := strings.Split(strings.TrimSpace(string(file)), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], `{"format":"custody-export","version":1}`) {
		t.Fatalf("file:\n%s", file)
	}
	// The enrollment's document is in its canonical form: the fields of
	// mdm.Enrollment in their order, whatever order they came in.
	canonical, _ := json.Marshal(&mdm.Enrollment{ID: "A", Enabled: true})
	if !strings.Contains(lines[1], `"doc":`+string(canonical)) {
		t.Errorf("enrollment line not canonical: %s, want the doc %s", lines[1], canonical)
	}
	var dst records
	sum, err := dump.Import(context.Background(), bytes.NewReader(file), &dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 3 || sum.Counts[storage.KindMDMCertBinding] != 1 || len(sum.SHA256) != 64 || len(dst) != 3 {
		t.Errorf("summary %+v, %d records imported", sum, len(dst))
	}
}

// A file that is not a whole, well-formed export is refused with an error
// naming what is wrong, and the target is given nothing.
func TestImportRefusals(t *testing.T) {
	good := exportFile(t,
		&storage.Record{Kind: storage.KindMDMEnrollment, Key: []string{"A"}, Doc: json.RawMessage(`{"id":"A"}`)},
		&storage.Record{Kind: storage.KindCounter, Key: []string{storage.CounterAudit}, Doc: json.RawMessage(`7`)},
	)
	lines := strings.SplitAfter(string(good), "\n")
	header, enrollment, counter, summary := lines[0], lines[1], lines[2], lines[3]
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", "", "header"},
		{"not an export", `{"format":"other","version":1}` + "\n", "not a custody export"},
		{"newer version", `{"format":"custody-export","version":2}` + "\n", "version 2"},
		{"no summary", header + enrollment + counter, "cut short"},
		{"out of order", header + counter + enrollment + summary, "order"},
		{"unknown kind", header + `{"kind":"mdm.nope","key":["x"],"doc":{}}` + "\n" + summary, `unknown kind of record "mdm.nope"`},
		{"key components", header + `{"kind":"mdm.enrollment","key":["x","y"],"doc":{}}` + "\n" + summary, "2 key components, want 1"},
		{"bad doc", header + `{"kind":"mdm.enrollment","key":["x"],"doc":{"enabled":"yes"}}` + "\n" + summary, "mdm.enrollment record"},
		{"missing record", header + enrollment + summary, "do not match the summary"},
		{"lines after", string(good) + enrollment, "after the summary"},
		{"not JSON", header + "enrollment A\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dst records
			_, err := dump.Import(context.Background(), strings.NewReader(tc.file), &dst, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if len(dst) != 0 {
				t.Errorf("%d records imported", len(dst))
			}
		})
	}
}

// Import takes any bytes without panicking, and imports only what matches
// its summary.
func FuzzImport(f *testing.F) {
	f.Add(exportFile(f,
		&storage.Record{Kind: storage.KindMDMCommand, Key: []string{"c1"}, Doc: json.RawMessage(`{"uuid":"c1"}`), Data: []byte("<plist/>")},
		&storage.Record{Kind: storage.KindMDMQueue, Key: []string{"A", "c1"}, Doc: json.RawMessage(`{"request_type":"X"}`)},
	))
	f.Add([]byte(`{"format":"custody-export","version":1}` + "\n" + `{"summary":{"records":0,"counts":{},"sha256":""}}`))
	f.Fuzz(func(t *testing.T, file []byte) {
		var dst records
		sum, err := dump.Import(context.Background(), bytes.NewReader(file), &dst, nil)
		if err == nil && sum.Records != len(dst) {
			t.Fatalf("summary says %d records, %d imported", sum.Records, len(dst))
		}
	})
}
