package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/custodymdm/custody/storage"
	"github.com/custodymdm/custody/storage/bolt"
	"github.com/custodymdm/custody/storage/postgres"
)

// storageFlags choose the backend: the data dir's bbolt file, or a
// PostgreSQL database that several servers may share.
type storageFlags struct {
	kind, dsn string
}

func (f *storageFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "storage", envDefault("CUSTODY_STORAGE", "bolt"), "storage backend: bolt (embedded, in the data dir) or postgres")
	fs.StringVar(&f.dsn, "dsn", envDefault("CUSTODY_DSN", ""), "PostgreSQL DSN for --storage postgres (postgres://user@host/db; pool_max_conns=N sizes the pool)")
}

// A backend is an open storage backend.
type backend struct {
	storage.Stores
	portable storage.Portable
	kind     string
	close    func() error
}

func (b *backend) Close() error { return b.close() }

// open opens the backend f names; dataPath is the data dir, whose bbolt file
// the bolt backend uses.
func (f *storageFlags) open(ctx context.Context, dataPath string) (*backend, error) {
	kind, dsn := f.kind, f.dsn
	switch kind {
	case "bolt":
		if dsn != "" {
			return nil, errors.New("--dsn is for --storage postgres")
		}
		db, err := bolt.Open(filepath.Join(dataPath, fileDB), bolt.Options{})
		if errors.Is(err, bolt.ErrLocked) {
			return nil, fmt.Errorf("another custody process is using %s (the embedded database admits one process): stop it or choose another --data; for several servers on one database use --storage postgres", dataPath)
		}
		if err != nil {
			return nil, err
		}
		return &backend{Stores: db.Stores(), portable: db, kind: kind, close: db.Close}, nil
	case "postgres":
		if dsn == "" {
			return nil, errors.New("--storage postgres needs --dsn (or CUSTODY_DSN)")
		}
		db, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return &backend{Stores: db.Stores(), portable: db, kind: kind, close: db.Close}, nil
	}
	return nil, fmt.Errorf("--storage %q: want bolt or postgres", kind)
}
