package storagetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// BenchImport100k imports a CSV file of 100,000 pre-enrollment records
// (and their 100,000 users) into a fresh store from newStore at each
// iteration: parsing, validation and the storing, timed; opening not.
func BenchImport100k(b *testing.B, newStore func(b *testing.B) enroll.RecordStore) {
	var csv bytes.Buffer
	if err := enroll.WriteSampleCSV(&csv, 100_000); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(csv.Len()))
	for b.Loop() {
		b.StopTimer()
		store := newStore(b)
		b.StartTimer()
		res, err := enroll.Import(context.Background(), store, bytes.NewReader(csv.Bytes()),
			enroll.ImportOptions{CSVOptions: enroll.CSVOptions{Required: enroll.RecordFields}}, time.Now())
		if err != nil || !res.Written || res.Stats.RecordsCreated != 100_000 {
			b.Fatalf("import: %+v, %v", res, err)
		}
	}
}
