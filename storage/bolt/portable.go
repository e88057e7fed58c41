package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage"
)

var _ storage.Portable = (*DB)(nil)

// The kinds whose records are a bucket's values under their keys as they
// are.
var plainKinds = map[string][]byte{
	storage.KindMDMEnrollment:     bucketEnrollments,
	storage.KindEnrollRecord:      bucketRecords,
	storage.KindEnrollUser:        bucketUsers,
	storage.KindEnrollAssignment:  bucketAssignments,
	storage.KindDEPToken:          bucketDEPTokens,
	storage.KindDEPCursor:         bucketDEPCursors,
	storage.KindCampaignRing:      bucketRings,
	storage.KindSCIMToken:         bucketSCIMTokens,
	storage.KindDirectoryGroup:    bucketDirGroups,
	storage.KindDirectoryOffboard: bucketDirOffboardings,
}

// The kinds with one value, and the bucket holding it under keySettings.
var singleKinds = map[string][]byte{
	storage.KindEnrollSettings:    bucketSettings,
	storage.KindDirectorySettings: bucketDirSettings,
}

// Export implements storage.Portable, from one read transaction.
func (d *DB) Export(ctx context.Context, fn func(*storage.Record) error) error {
	return d.db.View(func(tx *bbolt.Tx) error {
		for _, kind := range storage.Kinds() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := exportKind(tx, kind, fn); err != nil {
				return fmt.Errorf("bolt: export %s: %w", kind, err)
			}
		}
		return nil
	})
}

// stringDoc is a string's JSON document.
func stringDoc(s []byte) json.RawMessage {
	doc, _ := json.Marshal(string(s)) // a string always marshals
	return doc
}

func exportKind(tx *bbolt.Tx, kind string, fn func(*storage.Record) error) error {
	emit := func(doc []byte, data []byte, key ...string) error {
		return fn(&storage.Record{Kind: kind, Key: key, Doc: doc, Data: data})
	}
	forEach := func(bucket []byte, f func(k, v []byte) error) error { return tx.Bucket(bucket).ForEach(f) }
	if b, ok := plainKinds[kind]; ok {
		return forEach(b, func(k, v []byte) error { return emit(v, nil, string(k)) })
	}
	if b, ok := singleKinds[kind]; ok {
		if v := tx.Bucket(b).Get(keySettings); v != nil {
			return emit(v, nil)
		}
		return nil
	}
	switch kind {
	case storage.KindSCEPChallenge:
		return forEach(bucketChallenges, func(k, v []byte) error { return emit(v, nil, hex.EncodeToString(k)) })
	case storage.KindSCEPCert:
		return forEach(bucketCerts, func(k, v []byte) error { return emit(v, nil, string(k)) })
	case storage.KindMDMCertBinding:
		return forEach(bucketCertBinding, func(k, v []byte) error { return emit(stringDoc(v), nil, string(k)) })
	case storage.KindMDMCommand:
		return forEach(bucketCommands, func(k, v []byte) error {
			var c mdm.QueuedCommand
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			return emit(v, c.Payload, string(k))
		})
	case storage.KindMDMQueue:
		cmds := tx.Bucket(bucketCommands)
		return eachChannel(tx, kindQueue, func(id string, v []byte) error {
			var e queueEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.RequestType == "" { // queued before entries carried it
				var c mdm.QueuedCommand
				if _, err := getJSON(cmds, []byte(e.UUID), &c); err != nil {
					return err
				}
				e.RequestType = c.RequestType
			}
			doc, err := json.Marshal(storage.QueueEntry{RequestType: e.RequestType, NotNow: e.NotNow})
			if err != nil {
				return err
			}
			return emit(doc, nil, id, e.UUID)
		})
	case storage.KindMDMResult:
		var last string
		n := 0
		return eachChannel(tx, kindResult, func(id string, v []byte) error {
			if id != last {
				last, n = id, 0
			}
			n++
			var r mdm.Result
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			return emit(v, r.Raw, id, strconv.Itoa(n))
		})
	case storage.KindEnrollToken:
		return forEach(bucketTokens, func(k, v []byte) error { return emit(v, nil, hex.EncodeToString(k)) })
	case storage.KindCampaignJob:
		return forEach(bucketJobs, func(k, v []byte) error {
			ring, nums, err := splitNumbered(k, 1)
			if err != nil {
				return err
			}
			return emit(v, nil, ring, nums[0])
		})
	case storage.KindCampaignDelivery:
		return forEach(bucketDeliveries, func(k, v []byte) error {
			ring, nums, err := splitNumbered(k, 2)
			if err != nil {
				return err
			}
			return emit(v, nil, ring, nums[0], nums[1])
		})
	case storage.KindSCIMResource:
		return forEach(bucketSCIM, func(k, v []byte) error {
			typ, id, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return fmt.Errorf("key %q has no type", k)
			}
			return emit(v, nil, string(typ), string(id))
		})
	case storage.KindDirectoryLink:
		return forEach(bucketDirLinks, func(k, v []byte) error { return emit(stringDoc(v), nil, string(k)) })
	case storage.KindDirectoryAudit:
		return forEach(bucketDirAudit, func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("key %x is not a sequence number", k)
			}
			return emit(v, nil, strconv.FormatUint(binary.BigEndian.Uint64(k), 10))
		})
	case storage.KindCounter:
		if seq := tx.Bucket(bucketDirAudit).Sequence(); seq > 0 {
			return emit([]byte(strconv.FormatUint(seq, 10)), nil, storage.CounterAudit)
		}
		return nil
	}
	return fmt.Errorf("no export for kind %s", kind)
}

// eachChannel calls fn with each value of one kind of the enrollments'
// channels (queues, results), enrollment by enrollment, in order.
func eachChannel(tx *bbolt.Tx, kind byte, fn func(id string, v []byte) error) error {
	return tx.Bucket(bucketChannels).ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 || i+1 >= len(k) {
			return fmt.Errorf("channel key %q has no enrollment prefix", k)
		}
		if k[i+1] != kind {
			return nil
		}
		return fn(string(k[:i]), v)
	})
}

// splitNumbered splits a campaign key (ring, 0, n uint32 numbers).
func splitNumbered(k []byte, n int) (string, []string, error) {
	ring, rest, ok := bytes.Cut(k, []byte{0})
	if !ok || len(rest) != 4*n {
		return "", nil, fmt.Errorf("key %q is not a ring and %d numbers", k, n)
	}
	nums := make([]string, n)
	for i := range nums {
		nums[i] = strconv.FormatUint(uint64(binary.BigEndian.Uint32(rest[4*i:])), 10)
	}
	return string(ring), nums, nil
}

// importChunk is how many records one transaction of an import writes.
// bbolt splits a transaction's nodes only when it commits: a transaction
// writing a whole database into empty buckets holds it all in memory and
// inserts into ever larger nodes, which made 700,000 records take two
// minutes and 3.4 GB; in transactions of importChunk it is a few seconds.
var importChunk = 10_000

// keyImporting, in bucketMeta, marks an import under way.
var keyImporting = []byte("importing")

// Import implements storage.Portable. The records are written in
// transactions of importChunk; on an error, everything written is removed
// again, and an import cut short by a crash leaves its mark, which Open
// refuses.
func (d *DB) Import(ctx context.Context, records iter.Seq2[*storage.Record, error]) error {
	// Not through the committer, which may run a function twice: records
	// can be read once.
	err := d.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if bytes.Equal(b, bucketLeases) {
				continue
			}
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				return fmt.Errorf("bolt: import needs an empty database; %s holds data", b)
			}
		}
		return tx.Bucket(bucketMeta).Put(keyImporting, []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	if err != nil {
		return err
	}
	next, stop := iter.Pull2(records)
	defer stop()
	for done := false; !done; {
		err := d.db.Update(func(tx *bbolt.Tx) error {
			for range importChunk {
				r, err, ok := next()
				if !ok {
					done = true
					return tx.Bucket(bucketMeta).Delete(keyImporting)
				}
				if err != nil {
					return err
				}
				if err := importRecord(tx, r); err != nil {
					return fmt.Errorf("bolt: import %s record %q: %w", r.Kind, r.Key, err)
				}
			}
			return ctx.Err()
		})
		if err != nil {
			if cerr := d.clear(); cerr != nil {
				return fmt.Errorf("%w (and removing what was imported failed: %v)", err, cerr)
			}
			return err
		}
	}
	return nil
}

// clear empties every bucket but the leases, their sequences included.
func (d *DB) clear() error {
	return d.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if bytes.Equal(b, bucketLeases) {
				continue
			}
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// importRecord stores one record, and what indexes it.
func importRecord(tx *bbolt.Tx, r *storage.Record) error {
	if err := r.Check(); err != nil {
		return err
	}
	if b, ok := plainKinds[r.Kind]; ok {
		return tx.Bucket(b).Put([]byte(r.Key[0]), r.Doc)
	}
	if b, ok := singleKinds[r.Kind]; ok {
		return tx.Bucket(b).Put(keySettings, r.Doc)
	}
	switch r.Kind {
	case storage.KindSCEPChallenge:
		hash, err := hex.DecodeString(r.Key[0])
		if err != nil {
			return err
		}
		var c scep.Challenge
		if err := json.Unmarshal(r.Doc, &c); err != nil {
			return err
		}
		if err := tx.Bucket(bucketChallengeIDs).Put([]byte(c.ID), hash); err != nil {
			return err
		}
		return tx.Bucket(bucketChallenges).Put(hash, r.Doc)
	case storage.KindSCEPCert:
		var c scep.IssuedCert
		if err := json.Unmarshal(r.Doc, &c); err != nil {
			return err
		}
		if c.Fingerprint != r.Key[0] {
			return fmt.Errorf("the certificate's fingerprint is %s", c.Fingerprint)
		}
		if err := putCert(tx, &c); err != nil {
			return err
		}
		if c.Revoked() {
			return tx.Bucket(bucketRevoked).Put([]byte(c.Fingerprint), []byte(c.RevokedAt.Format(time.RFC3339)))
		}
		return nil
	case storage.KindMDMCertBinding:
		var id string
		if err := json.Unmarshal(r.Doc, &id); err != nil {
			return err
		}
		return tx.Bucket(bucketCertBinding).Put([]byte(r.Key[0]), []byte(id))
	case storage.KindMDMCommand:
		var c mdm.QueuedCommand
		if err := json.Unmarshal(r.Doc, &c); err != nil {
			return err
		}
		c.Payload, c.NotNow = r.Data, false
		return putJSON(tx.Bucket(bucketCommands), []byte(r.Key[0]), &c)
	case storage.KindMDMQueue:
		id, uuid := r.Key[0], r.Key[1]
		var e storage.QueueEntry
		if err := json.Unmarshal(r.Doc, &e); err != nil {
			return err
		}
		if tx.Bucket(bucketCommands).Get([]byte(uuid)) == nil {
			return fmt.Errorf("command %s has no %s record before it", uuid, storage.KindMDMCommand)
		}
		ch := tx.Bucket(bucketChannels)
		if ch.Get(indexKey(id, uuid)) != nil {
			return fmt.Errorf("command %s is queued twice", uuid)
		}
		seq, err := ch.NextSequence()
		if err != nil {
			return err
		}
		key := seqKey(id, kindQueue, seq)
		if err := putJSON(ch, key, queueEntry{UUID: uuid, RequestType: e.RequestType, NotNow: e.NotNow}); err != nil {
			return err
		}
		return ch.Put(indexKey(id, uuid), key[len(key)-8:])
	case storage.KindMDMResult:
		var res mdm.Result
		if err := json.Unmarshal(r.Doc, &res); err != nil {
			return err
		}
		res.Raw = r.Data
		ch := tx.Bucket(bucketChannels)
		seq, err := ch.NextSequence()
		if err != nil {
			return err
		}
		return putJSON(ch, seqKey(r.Key[0], kindResult, seq), &res)
	case storage.KindEnrollToken:
		hash, err := hex.DecodeString(r.Key[0])
		if err != nil {
			return err
		}
		var t struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Doc, &t); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTokenIDs).Put([]byte(t.ID), hash); err != nil {
			return err
		}
		return tx.Bucket(bucketTokens).Put(hash, r.Doc)
	case storage.KindCampaignJob, storage.KindCampaignDelivery:
		ring := r.Key[0]
		if tx.Bucket(bucketRings).Get([]byte(ring)) == nil {
			return fmt.Errorf("ring %s has no %s record before it", ring, storage.KindCampaignRing)
		}
		nums := make([]int, len(r.Key)-1)
		for i, s := range r.Key[1:] {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return err
			}
			nums[i] = int(n)
		}
		if r.Kind == storage.KindCampaignJob {
			return tx.Bucket(bucketJobs).Put(jobKey(ring, nums[0]), r.Doc)
		}
		return tx.Bucket(bucketDeliveries).Put(deliveryKey(ring, nums[0], nums[1]), r.Doc)
	case storage.KindSCIMResource:
		typ, id := r.Key[0], r.Key[1]
		var st scim.Stored
		if err := decodeNumbers(r.Doc, &st); err != nil {
			return err
		}
		if st.Key != "" {
			keys := tx.Bucket(bucketSCIMKeys)
			if keys.Get(scimKey(typ, st.Key)) != nil {
				return fmt.Errorf("%w: %s", scim.ErrUniqueness, st.Key)
			}
			if err := keys.Put(scimKey(typ, st.Key), []byte(id)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketSCIM).Put(scimKey(typ, id), r.Doc)
	case storage.KindDirectoryLink:
		var email string
		if err := json.Unmarshal(r.Doc, &email); err != nil {
			return err
		}
		return tx.Bucket(bucketDirLinks).Put([]byte(r.Key[0]), []byte(email))
	case storage.KindDirectoryAudit:
		seq, err := strconv.ParseUint(r.Key[0], 10, 64)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketDirAudit)
		if seq > b.Sequence() {
			if err := b.SetSequence(seq); err != nil {
				return err
			}
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), r.Doc)
	case storage.KindCounter:
		if r.Key[0] != storage.CounterAudit {
			return fmt.Errorf("unknown counter %q", r.Key[0])
		}
		var n uint64
		if err := json.Unmarshal(r.Doc, &n); err != nil {
			return err
		}
		b := tx.Bucket(bucketDirAudit)
		return b.SetSequence(max(n, b.Sequence()))
	}
	return fmt.Errorf("unknown kind of record")
}
