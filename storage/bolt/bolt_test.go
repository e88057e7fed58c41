package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
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
