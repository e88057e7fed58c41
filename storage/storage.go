// Package storage names what a Custody storage backend provides: one store
// per protocol package, gathered in Stores; the Leases that let several
// servers on one database share background work; and Portable, the export
// and import of its whole content as Records of one form for every
// backend (package storage/dump writes them to a file and checks them).
//
// Two backends implement it and pass the same conformance suite
// (storage/storagetest): storage/bolt, an embedded bbolt file for one
// server, and storage/postgres, a PostgreSQL database for one or many.
package storage

import (
	"context"
	"time"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

// Stores are a backend's stores, one per protocol package.
type Stores struct {
	SCEP        scep.Store
	MDM         mdm.Store
	Enroll      enroll.Store
	Records     enroll.RecordStore
	Assignments enroll.AssignmentStore
	Settings    enroll.SettingsStore
	DEP         dep.Store
	Campaigns   campaign.Store
	SCIM        scim.Store
	Directory   directory.Store
	Leases      Leases
}

// Leases decide which of several servers runs a piece of background work
// (an ADE sync, campaign dispatch, offboarding): the holder of its lease.
// A holder renews its lease well before it expires; when a holder dies,
// its lease expires and another server acquires it.
type Leases interface {
	// Acquire takes the lease called name for holder until now+ttl, or
	// renews it if holder has it, and reports whether holder has it now.
	// It fails to take a lease another holder has and has not let expire.
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// Release gives up holder's lease, so another may take it at once.
	// Releasing a lease one does not hold does nothing.
	Release(ctx context.Context, name, holder string) error
	// Holders returns each lease's holder and expiry, by name.
	Holders(ctx context.Context) (map[string]Lease, error)
}

// A Lease is who holds a lease and until when.
type Lease struct {
	Holder    string    `json:"holder"`
	ExpiresAt time.Time `json:"expires_at"`
}
