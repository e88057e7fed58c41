package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/storage/bolt"
	"github.com/custodymdm/custody/storage/storagetest"
)

// BenchmarkImport100k imports a CSV file of 100,000 pre-enrollment records
// (and their 100,000 users) into a fresh database: parsing, validation and
// the one transaction that stores them.
func BenchmarkImport100k(b *testing.B) {
	storagetest.BenchImport100k(b, func(b *testing.B) enroll.RecordStore {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "custody.db"), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db.Records()
	})
}

// FuzzImport runs CSV files through the whole import path into a real
// database: enroll.Import either refuses the file (a header error, or bad
// rows without SkipInvalid) or stores every valid row, each then readable
// by its serial number and its user by email, with the stats adding up.
func FuzzImport(f *testing.F) {
	f.Add("name,email,ownership,serial,platform\nAda,ada@example.com,corporate,A1,ios\n", true)
	f.Add("\xEF\xBB\xBFName,Email,Ownership,Serial Number,Platform,Device Name,Groups\r\n\"a,\"\"b\"\"\",x@y.z,personal,S-1,apple,\"d\ne\",g1;g2\r\n", false)
	f.Add("name,email,ownership,serial,platform\nA,a@b.c,corporate,A1,ios\nB,b@b.c,leased,a2,ios\n", true)
	db, err := bolt.Open(filepath.Join(f.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	store := db.Records()
	f.Fuzz(func(t *testing.T, in string, skipInvalid bool) {
		ctx := context.Background()
		opts := enroll.ImportOptions{CSVOptions: enroll.CSVOptions{Required: enroll.RecordFields}, SkipInvalid: skipInvalid}
		res, err := enroll.Import(ctx, store, strings.NewReader(in), opts, time.Now())
		if err != nil {
			if !errors.Is(err, enroll.ErrCSVHeader) && !errors.Is(err, enroll.ErrInvalid) {
				t.Fatalf("import failed with neither a header nor an input error: %v", err)
			}
			return
		}
		switch {
		case res.Written && len(res.Errors) > 0 && !skipInvalid:
			t.Fatalf("a file with %d bad rows was written", len(res.Errors))
		case !res.Written && res.Rows > 0 && (len(res.Errors) == 0 || skipInvalid):
			t.Fatalf("%d valid rows not written: %+v", res.Rows, res)
		case !res.Written:
			return
		}
		st := res.Stats
		if n := st.RecordsCreated + st.RecordsUpdated + st.RecordsUnchanged; n != res.Rows {
			t.Fatalf("stats count %d records for %d rows: %+v", n, res.Rows, st)
		}
		imp, _ := enroll.ReadCSV(strings.NewReader(in), opts.CSVOptions)
		for _, row := range imp.Rows {
			if _, err := store.Record(ctx, row.Record.Serial); err != nil {
				t.Fatalf("line %d: record %q not stored: %v", row.Line, row.Record.Serial, err)
			}
			if _, err := store.User(ctx, row.User.Email); err != nil {
				t.Fatalf("line %d: user %q not stored: %v", row.Line, row.User.Email, err)
			}
		}
	})
}
