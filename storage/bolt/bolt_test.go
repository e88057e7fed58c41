package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/storage/bolt"
	"github.com/custodymdm/custody/storage/storagetest"
)

func open(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSCEPStore(t *testing.T) {
	storagetest.RunSCEP(t, func(t *testing.T) scep.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).SCEP()
	})
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custody.db")
	open(t, path)
	_, err := bolt.Open(path, bolt.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = db.SCEP().PutCert(context.Background(), &scep.IssuedCert{Fingerprint: "ab", Serial: "01"})
	if !errors.Is(err, bolt.ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
}

func TestMDMStore(t *testing.T) {
	storagetest.RunMDM(t, func(t *testing.T) mdm.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).MDM()
	})
}

func TestEnrollStore(t *testing.T) {
	storagetest.RunEnroll(t, func(t *testing.T) enroll.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).Enroll()
	})
}

// A database written with the first layout (queue, queue index and results
// in three buckets) opens with its queues and results intact.
func TestMigrateChannels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custody.db")
	raw, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	err = raw.Update(func(tx *bbolt.Tx) error {
		put := func(bucket, key string, v []byte) {
			b, _ := tx.CreateBucketIfNotExists([]byte(bucket))
			b.Put([]byte(key), v)
		}
		put("mdm.enrollments", "D", []byte(`{"id":"D","device_id":"D","enabled":true}`))
		put("mdm.commands", "c2", []byte(`{"uuid":"c2","request_type":"ProfileList","payload":"cA=="}`))
		put("mdm.queue", "D\x00"+string(seq(2)), []byte(`{"uuid":"c2"}`))
		put("mdm.queueidx", "D\x00c2", seq(2))
		put("mdm.results", "D\x00"+string(seq(1)), []byte(`{"enrollment_id":"D","command_uuid":"c1","request_type":"DeviceLock","status":"Acknowledged"}`))
		tx.Bucket([]byte("mdm.queue")).SetSequence(2)
		return nil
	})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}

	s := open(t, path).MDM()
	ctx := context.Background()
	q, err := s.Queue(ctx, "D")
	if err != nil || len(q) != 1 || q[0].UUID != "c2" || q[0].RequestType != "ProfileList" {
		t.Fatalf("queue after migration: %+v, %v", q, err)
	}
	res, err := s.Results(ctx, "D")
	if err != nil || len(res) != 1 || res[0].CommandUUID != "c1" {
		t.Fatalf("results after migration: %+v, %v", res, err)
	}
	r := &mdm.Result{EnrollmentID: "D", CommandUUID: "c2", Status: mdm.StatusAcknowledged, ReceivedAt: time.Now()}
	if err := s.StoreResult(ctx, r, nil); err != nil || r.RequestType != "ProfileList" {
		t.Fatalf("answering the migrated command: %v (request type %q)", err, r.RequestType)
	}
	if res, _ := s.Results(ctx, "D"); len(res) != 2 || res[1].CommandUUID != "c2" {
		t.Errorf("results in order after migration: %+v", res)
	}
}

func TestRecordStore(t *testing.T) {
	storagetest.RunRecords(t, func(t *testing.T) enroll.RecordStore {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).Records()
	})
}

func TestAssignmentStore(t *testing.T) {
	storagetest.RunAssignments(t, func(t *testing.T) (enroll.AssignmentStore, enroll.SettingsStore) {
		db := open(t, filepath.Join(t.TempDir(), "custody.db"))
		return db.Assignments(), db.Settings()
	})
}

func TestDEPStore(t *testing.T) {
	storagetest.RunDEP(t, func(t *testing.T) dep.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).DEP()
	})
}

func TestCampaignStore(t *testing.T) {
	storagetest.RunCampaign(t, func(t *testing.T) campaign.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).Campaigns()
	})
}

func TestSCIMStore(t *testing.T) {
	storagetest.RunSCIM(t, func(t *testing.T) scim.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).SCIM()
	})
}

func TestDirectoryStore(t *testing.T) {
	storagetest.RunDirectory(t, func(t *testing.T) directory.Store {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).Directory()
	})
}

func TestLeases(t *testing.T) {
	storagetest.RunLeases(t, func(t *testing.T) storage.Leases {
		return open(t, filepath.Join(t.TempDir(), "custody.db")).Leases()
	})
}

func TestPortable(t *testing.T) {
	// Three records a transaction, so that imports commit many times and
	// a failed one has committed transactions to undo.
	defer bolt.SetImportChunk(3)()
	storagetest.RunPortable(t, func(t *testing.T) storagetest.Backend {
		db := open(t, filepath.Join(t.TempDir(), "custody.db"))
		return storagetest.Backend{Stores: db.Stores(), Portable: db}
	})
}

// A database an import was writing when it crashed is refused, with what
// to do about it.
func TestOpenRefusesUnfinishedImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custody.db")
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.MarkImporting(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = bolt.Open(path, bolt.Options{})
	if !errors.Is(err, bolt.ErrImportUnfinished) || !strings.Contains(err.Error(), "remove "+path+" and import again") {
		t.Fatalf("Open of an unfinished import: %v", err)
	}
}
