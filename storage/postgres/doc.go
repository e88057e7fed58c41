// Package postgres is Custody's PostgreSQL storage: every store interface
// of the protocol packages, and storage.Leases, on one database that
// several custody servers may share. It passes the same conformance suite
// as the embedded bbolt backend (storage/storagetest).
//
// Open connects a pgxpool pool (size it with pool_max_conns in the DSN)
// and applies the schema's pending migrations in one transaction, under an
// advisory lock so that replicas starting together migrate once; a
// database migrated by a newer build is refused. Migrate and Version serve
// `custody migrate`.
//
// Keys are text in the "C" collation, so listings come in byte order as
// with bbolt. Values are jsonb documents beside their keys; the columns a
// query selects or orders on are columns of their own, and the plists of
// commands and results are bytea.
//
// What must happen once across replicas is decided in the database:
//   - a SCEP challenge or an enrollment token is consumed under its row's
//     lock (SELECT ... FOR UPDATE), so of two replicas consuming one, the
//     second sees it used;
//   - a command result deletes its queue row (DELETE ... RETURNING), so an
//     answer is recorded once, and a repeated one is ErrUnknownCommand;
//     a device holds one connection at a time and answers a command before
//     it is given the next, so whichever replica it reaches serves the
//     head of its queue;
//   - read-modify-write methods lock the rows they read; a row created by
//     another transaction meanwhile, a serialization failure or a deadlock
//     runs the transaction again (the callbacks the interfaces document
//     as possibly running more than once);
//   - numbers handed out in order (the audit log's) come from a counter
//     row locked until commit, so they follow commit order;
//   - leases (storage.Leases) are one upsert judged by the database's
//     clock, so replicas' clocks need not agree.
//
// Tests use package pgtest: a fresh schema per test on the server named by
// CUSTODY_TEST_POSTGRES_DSN.
package postgres
