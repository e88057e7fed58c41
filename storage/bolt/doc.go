// Package bolt is Custody's embedded storage: every store interface of the
// protocol packages, implemented on one go.etcd.io/bbolt file.
//
// A DB is opened once per process (bbolt holds an exclusive file lock) and
// hands out one store per protocol package: DB.SCEP for scep.Store, DB.MDM
// for mdm.Store, DB.Enroll for enroll's token store, and, as they come,
// the stores of later packages. Records are
// JSON values in buckets named after their package. Writes that belong
// together run in one transaction. Writes go through a group committer: a
// lone write commits at once, and writes that arrive while a commit is
// under way share the next transaction, so a burst of issuances shares
// fsyncs instead of queueing behind one each.
//
// An MDM enrollment's command queue, the queue's index by command UUID and
// the results it has sent live under the enrollment's prefix in one bucket,
// so that storing a result changes adjacent keys of one tree. bbolt's free
// page list is rebuilt when the file is opened rather than written at every
// commit (NoFreelistSync, as etcd runs bbolt).
package bolt
