package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custodymdm/custody/storage"
)

// RunLeases runs the storage.Leases conformance tests.
func RunLeases(t *testing.T, newStore func(t *testing.T) storage.Leases) {
	t.Run("Exclusive", func(t *testing.T) { testLeaseExclusive(t, newStore(t)) })
	t.Run("Expiry", func(t *testing.T) { testLeaseExpiry(t, newStore(t)) })
	t.Run("ConcurrentAcquire", func(t *testing.T) { testLeaseConcurrent(t, newStore(t)) })
}

func acquire(t *testing.T, l storage.Leases, name, holder string, ttl time.Duration) bool {
	t.Helper()
	ok, err := l.Acquire(context.Background(), name, holder, ttl)
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", name, holder, err)
	}
	return ok
}

func testLeaseExclusive(t *testing.T, l storage.Leases) {
	ctx := context.Background()
	if !acquire(t, l, "dep:acme", "a", time.Minute) {
		t.Fatal("a could not take a free lease")
	}
	if acquire(t, l, "dep:acme", "b", time.Minute) {
		t.Fatal("b took a lease a holds")
	}
	if !acquire(t, l, "dep:acme", "a", time.Minute) {
		t.Fatal("a could not renew its lease")
	}
	if !acquire(t, l, "campaigns", "b", time.Minute) {
		t.Fatal("b could not take another lease")
	}
	holders, err := l.Holders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != 2 || holders["dep:acme"].Holder != "a" || holders["campaigns"].Holder != "b" {
		t.Errorf("Holders = %+v", holders)
	}
	if exp := holders["dep:acme"].ExpiresAt; time.Until(exp) < 30*time.Second || time.Until(exp) > 2*time.Minute {
		t.Errorf("a's lease expires at %v, want about a minute from now", exp)
	}
	if err := l.Release(ctx, "dep:acme", "b"); err != nil {
		t.Fatalf("Release by a non-holder: %v", err)
	}
	if acquire(t, l, "dep:acme", "b", time.Minute) {
		t.Fatal("a release by b freed a's lease")
	}
	if err := l.Release(ctx, "dep:acme", "a"); err != nil {
		t.Fatal(err)
	}
	if !acquire(t, l, "dep:acme", "b", time.Minute) {
		t.Fatal("b could not take the lease a released")
	}
}

func testLeaseExpiry(t *testing.T, l storage.Leases) {
	if !acquire(t, l, "directory", "a", 200*time.Millisecond) {
		t.Fatal("a could not take a free lease")
	}
	if acquire(t, l, "directory", "b", time.Minute) {
		t.Fatal("b took a live lease")
	}
	time.Sleep(300 * time.Millisecond)
	if !acquire(t, l, "directory", "b", time.Minute) {
		t.Fatal("b could not take a lease a let expire")
	}
	if acquire(t, l, "directory", "a", time.Minute) {
		t.Fatal("a took back a lease b now holds")
	}
}

func testLeaseConcurrent(t *testing.T, l storage.Leases) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
	)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := fmt.Sprintf("replica-%d", i)
			ok, err := l.Acquire(context.Background(), "campaigns", holder, time.Minute)
			if err != nil {
				t.Errorf("Acquire: %v", err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, holder)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d holders took one lease at once: %v", len(winners), winners)
	}
}
