package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/mdm"
)

var (
	bucketEnrollments = []byte("mdm.enrollments") // id → Enrollment
	bucketCertBinding = []byte("mdm.certs")       // cert fingerprint → enrollment id
	bucketCommands    = []byte("mdm.commands")    // command uuid → QueuedCommand (payload)
	// bucketChannels holds each enrollment's queue, its index and its
	// results under the enrollment's prefix, so that storing a result
	// (delete from the queue and its index, append the result) changes
	// adjacent keys of one tree, not three trees:
	//
	//	id \x00 'i' uuid → seq         the queue's index
	//	id \x00 'q' seq  → queueEntry  the queue, in order
	//	id \x00 'r' seq  → Result      results, oldest first
	bucketChannels = []byte("mdm.channels")
)

// The buckets of the first layout, which kept queues, their index and
// results apart; Open moves their contents into bucketChannels.
var oldChannelBuckets = []struct {
	name []byte
	kind byte
}{{[]byte("mdm.queue"), kindQueue}, {[]byte("mdm.queueidx"), kindIndex}, {[]byte("mdm.results"), kindResult}}

func migrateChannels(tx *bbolt.Tx) error {
	ch := tx.Bucket(bucketChannels)
	for _, old := range oldChannelBuckets {
		b := tx.Bucket(old.name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("bolt: key %q in %s has no enrollment prefix", k, old.name)
			}
			nk := append(append(bytes.Clone(k[:i+1]), old.kind), k[i+1:]...)
			return ch.Put(nk, bytes.Clone(v))
		})
		if err != nil {
			return err
		}
		if b.Sequence() > ch.Sequence() {
			if err := ch.SetSequence(b.Sequence()); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(old.name); err != nil {
			return err
		}
	}
	return nil
}

const (
	kindIndex  = 'i'
	kindQueue  = 'q'
	kindResult = 'r'
)

type queueEntry struct {
	UUID        string `json:"uuid"`
	RequestType string `json:"request_type,omitempty"` // so that a result need not load the payload
	NotNow      bool   `json:"not_now,omitempty"`
}

// MDMStore implements mdm.Store.
type MDMStore struct {
	db     *bbolt.DB
	writes *committer
}

var _ mdm.Store = (*MDMStore)(nil)

// MDM returns the database's mdm.Store.
func (d *DB) MDM() *MDMStore { return &MDMStore{db: d.db, writes: d.writes} }

func prefix(id string) []byte { return append([]byte(id), 0) }

// channelKey is the prefix of one kind of an enrollment's keys.
func channelKey(id string, kind byte) []byte { return append(prefix(id), kind) }

func seqKey(id string, kind byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(channelKey(id, kind), seq)
}

func indexKey(id, uuid string) []byte { return append(channelKey(id, kindIndex), uuid...) }

func (s *MDMStore) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.writes.update(fn)
}

func (s *MDMStore) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func getEnrollment(tx *bbolt.Tx, id string) (*mdm.Enrollment, error) {
	var e mdm.Enrollment
	ok, err := getJSON(tx.Bucket(bucketEnrollments), []byte(id), &e)
	if err == nil && !ok {
		err = fmt.Errorf("%w: enrollment %q", mdm.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// userChannels returns the IDs of a device's user-channel enrollments.
func userChannels(tx *bbolt.Tx, deviceID string) [][]byte {
	var ids [][]byte
	p := []byte(deviceID + ":")
	c := tx.Bucket(bucketEnrollments).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		ids = append(ids, bytes.Clone(k))
	}
	return ids
}

func clearQueue(tx *bbolt.Tx, id string) error {
	ch := tx.Bucket(bucketChannels)
	var keys [][]byte
	for _, kind := range []byte{kindIndex, kindQueue} {
		p := channelKey(id, kind)
		c := ch.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		if err := ch.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func bindCert(tx *bbolt.Tx, e *mdm.Enrollment, fingerprint string) error {
	certs := tx.Bucket(bucketCertBinding)
	if e.CertFingerprint != "" && e.CertFingerprint != fingerprint {
		if err := certs.Delete([]byte(e.CertFingerprint)); err != nil {
			return err
		}
	}
	if prev := certs.Get([]byte(fingerprint)); prev != nil && string(prev) != e.ID {
		// The certificate moves: the other enrollment loses it.
		other, err := getEnrollment(tx, string(prev))
		if err == nil && other.CertFingerprint == fingerprint {
			other.CertFingerprint = ""
			if err := putJSON(tx.Bucket(bucketEnrollments), []byte(other.ID), other); err != nil {
				return err
			}
		}
	}
	e.CertFingerprint = fingerprint
	return certs.Put([]byte(fingerprint), []byte(e.ID))
}

// Authenticated implements mdm.Store.
func (s *MDMStore) Authenticated(ctx context.Context, e *mdm.Enrollment) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		rec := *e
		rec.Enabled = false
		old, err := getEnrollment(tx, e.ID)
		switch {
		case err == nil:
			rec.CreatedAt = old.CreatedAt
			rec.CertFingerprint = old.CertFingerprint
		case errors.Is(err, mdm.ErrNotFound):
		default:
			return err
		}
		if err := clearQueue(tx, e.ID); err != nil {
			return err
		}
		for _, u := range userChannels(tx, e.ID) {
			if err := clearQueue(tx, string(u)); err != nil {
				return err
			}
		}
		if e.CertFingerprint != "" {
			if err := bindCert(tx, &rec, e.CertFingerprint); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketEnrollments), []byte(rec.ID), &rec)
	})
}

// TokenUpdated implements mdm.Store.
func (s *MDMStore) TokenUpdated(ctx context.Context, e *mdm.Enrollment) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		rec, err := getEnrollment(tx, e.ID)
		switch {
		case errors.Is(err, mdm.ErrNotFound):
			c := *e
			rec = &c
		case err != nil:
			return err
		}
		rec.TakeTokenUpdate(e)
		if rec.CertFingerprint == "" && e.CertFingerprint != "" {
			if err := bindCert(tx, rec, e.CertFingerprint); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketEnrollments), []byte(rec.ID), rec)
	})
}

// Disable implements mdm.Store.
func (s *MDMStore) Disable(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		ids := append([][]byte{[]byte(id)}, userChannels(tx, id)...)
		for _, k := range ids {
			e, err := getEnrollment(tx, string(k))
			if err != nil {
				return err
			}
			e.Enabled = false
			if err := putJSON(tx.Bucket(bucketEnrollments), k, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Enrollment implements mdm.Store.
func (s *MDMStore) Enrollment(ctx context.Context, id string) (*mdm.Enrollment, error) {
	var e *mdm.Enrollment
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		e, err = getEnrollment(tx, id)
		return err
	})
	return e, err
}

// Enrollments implements mdm.Store.
func (s *MDMStore) Enrollments(ctx context.Context, fn func(*mdm.Enrollment) bool) error {
	return each(ctx, s.db, bucketEnrollments, fn)
}

// Update implements mdm.Store.
func (s *MDMStore) Update(ctx context.Context, id string, fn func(*mdm.Enrollment) error) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		e, err := getEnrollment(tx, id)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		e.ID = id
		return putJSON(tx.Bucket(bucketEnrollments), []byte(id), e)
	})
}

// EnrollmentForCert implements mdm.Store.
func (s *MDMStore) EnrollmentForCert(ctx context.Context, fingerprint string) (string, error) {
	var id string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketCertBinding).Get([]byte(fingerprint))
		if v == nil {
			return mdm.ErrNotFound
		}
		id = string(v)
		return nil
	})
	return id, err
}

// BindCert implements mdm.Store.
func (s *MDMStore) BindCert(ctx context.Context, id, fingerprint string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		e, err := getEnrollment(tx, id)
		if err != nil {
			return err
		}
		if err := bindCert(tx, e, fingerprint); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketEnrollments), []byte(id), e)
	})
}

// Enqueue implements mdm.Store.
func (s *MDMStore) Enqueue(ctx context.Context, ids []string, cmd *mdm.QueuedCommand) error {
	if cmd.UUID == "" {
		return errors.New("bolt: command without a UUID")
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		ch := tx.Bucket(bucketChannels)
		stored := *cmd
		stored.NotNow = false
		if err := putJSON(tx.Bucket(bucketCommands), []byte(cmd.UUID), &stored); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := getEnrollment(tx, id); err != nil {
				return err
			}
			ik := indexKey(id, cmd.UUID)
			if ch.Get(ik) != nil {
				continue // already queued: enqueueing is idempotent
			}
			seq, err := ch.NextSequence()
			if err != nil {
				return err
			}
			key := seqKey(id, kindQueue, seq)
			if err := putJSON(ch, key, queueEntry{UUID: cmd.UUID, RequestType: cmd.RequestType}); err != nil {
				return err
			}
			if err := ch.Put(ik, key[len(key)-8:]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *MDMStore) queued(tx *bbolt.Tx, id string, fn func(*mdm.QueuedCommand) bool) error {
	cmds := tx.Bucket(bucketCommands)
	p := channelKey(id, kindQueue)
	c := tx.Bucket(bucketChannels).Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		var e queueEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		var qc mdm.QueuedCommand
		ok, err := getJSON(cmds, []byte(e.UUID), &qc)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("bolt: queued command %s has no payload", e.UUID)
		}
		qc.NotNow = e.NotNow
		if !fn(&qc) {
			return nil
		}
	}
	return nil
}

// NextCommand implements mdm.Store.
func (s *MDMStore) NextCommand(ctx context.Context, id string, skipNotNow bool) (*mdm.QueuedCommand, error) {
	var next *mdm.QueuedCommand
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return s.queued(tx, id, func(c *mdm.QueuedCommand) bool {
			if skipNotNow && c.NotNow {
				return true
			}
			next = c
			return false
		})
	})
	return next, err
}

// Queue implements mdm.Store.
func (s *MDMStore) Queue(ctx context.Context, id string) ([]*mdm.QueuedCommand, error) {
	var all []*mdm.QueuedCommand
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return s.queued(tx, id, func(c *mdm.QueuedCommand) bool { all = append(all, c); return true })
	})
	return all, err
}

// StoreResult implements mdm.Store.
func (s *MDMStore) StoreResult(ctx context.Context, r *mdm.Result, update mdm.ResultUpdate) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		ch := tx.Bucket(bucketChannels)
		ik := indexKey(r.EnrollmentID, r.CommandUUID)
		seq := ch.Get(ik)
		if seq == nil {
			return fmt.Errorf("%w: %s for %s", mdm.ErrUnknownCommand, r.CommandUUID, r.EnrollmentID)
		}
		qk := append(channelKey(r.EnrollmentID, kindQueue), seq...)
		var entry queueEntry
		if _, err := getJSON(ch, qk, &entry); err != nil {
			return err
		}
		if entry.RequestType == "" { // queued before entries carried it
			var qc mdm.QueuedCommand
			if _, err := getJSON(tx.Bucket(bucketCommands), []byte(r.CommandUUID), &qc); err != nil {
				return err
			}
			entry.RequestType = qc.RequestType
		}
		if r.RequestType == "" {
			r.RequestType = entry.RequestType
		}
		if r.Status == mdm.StatusNotNow {
			entry.NotNow = true
			if err := putJSON(ch, qk, entry); err != nil {
				return err
			}
		} else {
			if err := ch.Delete(qk); err != nil {
				return err
			}
			if err := ch.Delete(ik); err != nil {
				return err
			}
		}
		if change := updateOf(update, r); change != nil {
			e, err := getEnrollment(tx, r.EnrollmentID)
			if err != nil {
				return err
			}
			change(e)
			if err := putJSON(tx.Bucket(bucketEnrollments), []byte(r.EnrollmentID), e); err != nil {
				return err
			}
		}
		n, err := ch.NextSequence()
		if err != nil {
			return err
		}
		return putJSON(ch, seqKey(r.EnrollmentID, kindResult, n), r)
	})
}

func updateOf(update mdm.ResultUpdate, r *mdm.Result) func(*mdm.Enrollment) {
	if update == nil {
		return nil
	}
	return update(r)
}

// Results implements mdm.Store.
func (s *MDMStore) Results(ctx context.Context, id string) ([]*mdm.Result, error) {
	var all []*mdm.Result
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		p := channelKey(id, kindResult)
		c := tx.Bucket(bucketChannels).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r mdm.Result
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			all = append(all, &r)
		}
		return nil
	})
	return all, err
}
