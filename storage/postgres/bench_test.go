package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/storage/storagetest"
)

// BenchmarkImport100k is storage/bolt's benchmark of the same name on
// PostgreSQL: a CSV file of 100,000 records and their users parsed,
// validated and stored in one transaction.
func BenchmarkImport100k(b *testing.B) {
	storagetest.BenchImport100k(b, func(b *testing.B) enroll.RecordStore { return open(b).Records() })
}

// BenchmarkCommandRoundTrip is what the server does for one command: queue
// it for a device, hand it out when the device asks, store its result and
// hand out the next (none). In parallel, as many devices as the pool has
// connections and more, each with its own queue.
func BenchmarkCommandRoundTrip(b *testing.B) {
	ctx := context.Background()
	s := open(b).MDM()
	const devices = 64
	for i := range devices {
		id := fmt.Sprintf("UDID-%03d", i)
		if err := s.TokenUpdated(ctx, &mdm.Enrollment{ID: id, DeviceID: id, Topic: "t", Token: []byte("tok"), Enabled: true}); err != nil {
			b.Fatal(err)
		}
	}
	next := make(chan int, devices)
	for i := range devices {
		next <- i
	}
	payload := bytes.Repeat([]byte("<plist/>"), 64)
	b.SetParallelism(devices / 2) // GOMAXPROCS × 32 goroutines, each a device
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("UDID-%03d", <-next)
		n := 0
		for pb.Next() {
			n++
			uuid := fmt.Sprintf("%s-%d", id, n)
			if err := s.Enqueue(ctx, []string{id}, &mdm.QueuedCommand{UUID: uuid, RequestType: "DeviceInformation", Payload: payload, EnqueuedAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
			c, err := s.NextCommand(ctx, id, false)
			if err != nil || c == nil || c.UUID != uuid {
				b.Fatalf("NextCommand: %+v, %v", c, err)
			}
			r := &mdm.Result{EnrollmentID: id, CommandUUID: uuid, Status: mdm.StatusAcknowledged, Raw: payload, ReceivedAt: time.Now()}
			if err := s.StoreResult(ctx, r, nil); err != nil {
				b.Fatal(err)
			}
			if c, err := s.NextCommand(ctx, id, false); err != nil || c != nil {
				b.Fatalf("NextCommand after the result: %+v, %v", c, err)
			}
		}
	})
}
