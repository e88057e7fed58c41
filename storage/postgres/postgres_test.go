package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/storage/postgres"
	"github.com/custodymdm/custody/storage/postgres/pgtest"
	"github.com/custodymdm/custody/storage/storagetest"
)

// open opens a DB on a fresh schema of the test server.
func open(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.DSN(t), postgres.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSCEPStore(t *testing.T) {
	storagetest.RunSCEP(t, func(t *testing.T) scep.Store { return open(t).SCEP() })
}

func TestMDMStore(t *testing.T) {
	storagetest.RunMDM(t, func(t *testing.T) mdm.Store { return open(t).MDM() })
}

func TestEnrollStore(t *testing.T) {
	storagetest.RunEnroll(t, func(t *testing.T) enroll.Store { return open(t).Enroll() })
}

func TestRecordStore(t *testing.T) {
	storagetest.RunRecords(t, func(t *testing.T) enroll.RecordStore { return open(t).Records() })
}

func TestAssignmentStore(t *testing.T) {
	storagetest.RunAssignments(t, func(t *testing.T) (enroll.AssignmentStore, enroll.SettingsStore) {
		db := open(t)
		return db.Assignments(), db.Settings()
	})
}

func TestDEPStore(t *testing.T) {
	storagetest.RunDEP(t, func(t *testing.T) dep.Store { return open(t).DEP() })
}

func TestCampaignStore(t *testing.T) {
	storagetest.RunCampaign(t, func(t *testing.T) campaign.Store { return open(t).Campaigns() })
}

func TestSCIMStore(t *testing.T) {
	storagetest.RunSCIM(t, func(t *testing.T) scim.Store { return open(t).SCIM() })
}

func TestDirectoryStore(t *testing.T) {
	storagetest.RunDirectory(t, func(t *testing.T) directory.Store { return open(t).Directory() })
}

func TestLeases(t *testing.T) {
	storagetest.RunLeases(t, func(t *testing.T) storage.Leases { return open(t).Leases() })
}

// Replicas opening a new database together migrate it once; a database
// migrated by a newer build is refused.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			db, err := postgres.Open(ctx, dsn, postgres.Options{})
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	db, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Version(ctx); err != nil || v != postgres.LatestVersion() {
		t.Fatalf("Version = %d, %v; want %d", v, err, postgres.LatestVersion())
	}
	if applied, err := db.Migrate(ctx); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate on a current schema applied %v, %v", applied, err)
	}
	if _, err := db.Pool().Exec(ctx, `INSERT INTO custody_schema_migrations VALUES (99, now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(ctx, dsn, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "schema is at version 99, newer than this build's") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestPortable(t *testing.T) {
	storagetest.RunPortable(t, func(t *testing.T) storagetest.Backend {
		db := open(t)
		return storagetest.Backend{Stores: db.Stores(), Portable: db}
	})
}
