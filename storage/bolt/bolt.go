package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("bolt: database is in use by another process")

// ErrImportUnfinished is returned by Open for a database an import was
// writing when it stopped (a crash): it holds part of what was imported.
var ErrImportUnfinished = errors.New("bolt: an import into this database did not finish")

// A DB is an open Custody database.
type DB struct {
	db     *bbolt.DB
	writes *committer
}

// Options tune Open. The zero value is the default.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file; one second when zero.
	LockTimeout time.Duration
}

// initialMmapSize is the address space mapped for the file from the start
// (it costs no memory until used). bbolt remaps when the file outgrows its
// mapping, and a remap inside a write transaction copies every node the
// transaction has touched to the heap: for a large import, most of its
// time. (With a mapping larger than its growth step, bbolt extends the file
// 16 MiB past its data on the first growth; the extension is sparse.)
const initialMmapSize = 1 << 30

// Open opens (creating if needed) the database file at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// The free-page list is not written at each commit but rebuilt when the
	// file is opened (as etcd does): a commit then writes only the pages it
	// changed, and a crash loses nothing, since the list is derived from
	// the pages in use.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: opts.LockTimeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if since := tx.Bucket(bucketMeta).Get(keyImporting); since != nil {
			return fmt.Errorf("%w (it started at %s): remove %s and import again", ErrImportUnfinished, since, path)
		}
		if err := indexChallenges(tx); err != nil {
			return err
		}
		return migrateChannels(tx)
	})
	if errors.Is(err, ErrImportUnfinished) {
		db.Close()
		return nil, err
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	return &DB{db: db, writes: newCommitter(db)}, nil
}

// Close waits for queued writes, then closes the database.
func (d *DB) Close() error {
	d.writes.close()
	return d.db.Close()
}

var allBuckets = [][]byte{
	bucketChallenges, bucketCerts, bucketSerials, bucketRevoked,
	bucketEnrollments, bucketCertBinding, bucketCommands, bucketChannels,
	bucketTokens, bucketTokenIDs, bucketRecords, bucketUsers, bucketAssignments, bucketSettings,
	bucketChallengeIDs, bucketDEPTokens, bucketDEPCursors,
	bucketRings, bucketJobs, bucketDeliveries,
	bucketSCIM, bucketSCIMKeys, bucketSCIMTokens,
	bucketDirGroups, bucketDirLinks, bucketDirOffboardings, bucketDirAudit, bucketDirSettings,
	bucketLeases, bucketMeta,
}

// bucketMeta holds what is about the database rather than in it: the mark
// of an import under way.
var bucketMeta = []byte("meta")

func getJSON(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

// getJSONNumbers is getJSON keeping numbers as json.Number, for values
// holding arbitrary JSON.
func getJSONNumbers(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	return true, decodeNumbers(data, v)
}

// decodeNumbers decodes JSON keeping numbers as json.Number.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
