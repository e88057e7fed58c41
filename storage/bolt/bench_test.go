package bolt_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/storage/bolt"
)

// BenchmarkImport100k imports a CSV file of 100,000 pre-enrollment records
// (and their 100,000 users) into a fresh database: parsing, validation and
// the one transaction that stores them.
func BenchmarkImport100k(b *testing.B) {
	var csv bytes.Buffer
	if err := enroll.WriteSampleCSV(&csv, 100_000); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(csv.Len()))
	for b.Loop() {
		b.StopTimer()
		db, err := bolt.Open(filepath.Join(b.TempDir(), "custody.db"), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := enroll.Import(context.Background(), db.Records(), bytes.NewReader(csv.Bytes()),
			enroll.ImportOptions{CSVOptions: enroll.CSVOptions{Required: enroll.RecordFields}}, time.Now())
		if err != nil || !res.Written || res.Stats.RecordsCreated != 100_000 {
			b.Fatalf("import: %+v, %v", res, err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
}
