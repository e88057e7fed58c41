// Package bolt is Custody's embedded storage: every store interface of the
// protocol packages, implemented on one go.etcd.io/bbolt file.
//
// A DB is opened once per process (bbolt holds an exclusive file lock) and
// hands out one store per protocol package: DB.SCEP for scep.Store, and, as
// those packages grow them, the stores of mdm, dep and enroll. Records are
// JSON values in buckets named after their package. Writes that belong
// together run in one transaction. Writes go through a group committer: a
// lone write commits at once, and writes that arrive while a commit is
// under way share the next transaction, so a burst of issuances shares
// fsyncs instead of queueing behind one each.
package bolt
