package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

// defaultLeaseTTL is how long a replica's lease on a background job lasts
// unless renewed; it renews at a third of it, and another replica takes
// the job over at most this long after the holder died.
const defaultLeaseTTL = 15 * time.Second

// replicaName names this process among the servers sharing a database:
// host, process and a random suffix, so that a restarted process is a new
// holder.
func replicaName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// underLease runs job while this server holds the lease called name, until
// ctx ends. job's context is cancelled when the lease is lost (it could not
// be renewed); the server then tries again, as every replica does, so that
// exactly one of them runs the job at a time and another takes it over
// within a lease's length when its holder dies.
func (s *server) underLease(ctx context.Context, name string, job func(context.Context)) {
	ttl := s.leaseTTL
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		if s.acquire(ctx, name, ttl) {
			s.log.Info("lease taken: running", "job", name, "replica", s.replica)
			s.leaseEvents.WithLabelValues(name, "taken").Inc()
			s.holdWhile(ctx, name, ttl, tick.C, job)
			if ctx.Err() != nil {
				// Hand the job over at once rather than when the lease
				// expires.
				release, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := s.st.Leases.Release(release, name, s.replica); err != nil {
					s.log.Warn("lease release", "job", name, "err", err)
				}
				cancel()
				return
			}
			s.log.Warn("lease lost: stopped", "job", name, "replica", s.replica)
			s.leaseEvents.WithLabelValues(name, "lost").Inc()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *server) acquire(ctx context.Context, name string, ttl time.Duration) bool {
	ok, err := s.st.Leases.Acquire(ctx, name, s.replica, ttl)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("lease", "job", name, "err", err)
	}
	return ok && err == nil
}

// holdWhile runs job, renewing the lease at each tick, until ctx ends or a
// renewal fails; then it stops job and waits for it to return.
func (s *server) holdWhile(ctx context.Context, name string, ttl time.Duration, tick <-chan time.Time, job func(context.Context)) {
	jobCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); job(jobCtx) }()
	defer func() { stop(); <-done }()
	ended := done
	for {
		select {
		case <-ctx.Done():
			return
		case <-ended:
			// The job returned of itself: hold the lease still, so that
			// no other replica starts it again.
			ended = nil
		case <-tick:
			if !s.acquire(ctx, name, ttl) {
				return
			}
		}
	}
}
