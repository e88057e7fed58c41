package bolt

import bbolt "go.etcd.io/bbolt"

// SetImportChunk sets how many records an import's transaction writes,
// until the function it returns is called.
func SetImportChunk(n int) (restore func()) {
	old := importChunk
	importChunk = n
	return func() { importChunk = old }
}

// MarkImporting leaves the mark of an import under way, as a crash in the
// middle of one does.
func (d *DB) MarkImporting() error {
	return d.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyImporting, []byte("2026-11-21T12:00:00Z"))
	})
}
