package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/directory"
	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

// Portable is a backend whose whole content can be moved to another: both
// backends implement it, with the same records for the same content, so
// that what one exports the other imports, and the two exports of one
// content are byte for byte the same.
type Portable interface {
	// Export calls fn with every record stored, kinds in the order of
	// Kinds, and within a kind in key order (the order a queue's commands
	// or an enrollment's results are in, for those), from one consistent
	// view of the database. It stops at fn's first error.
	Export(ctx context.Context, fn func(*Record) error) error
	// Import writes records, in Export's order, into an empty database:
	// all of them, or on any error (the sequence's included) none. It
	// refuses a database that holds anything but leases.
	Import(ctx context.Context, records iter.Seq2[*Record, error]) error
}

// A Record is one stored value in the form the backends share. Kind names
// what it is (one of Kinds); Key is its place among its kind, one string
// per component (none for a kind that has one value); Doc is the value as
// JSON; Data holds the bytes a value carries beside its document (a
// command's or a result's plist).
type Record struct {
	Kind string          `json:"kind"`
	Key  []string        `json:"key,omitempty"`
	Doc  json.RawMessage `json:"doc"`
	Data []byte          `json:"data,omitempty"`
}

// The kinds of records, in the order Export gives them: an importer meets
// what a record refers to (a queued command's payload, a job's ring)
// before the record.
const (
	KindSCEPChallenge     = "scep.challenge"     // key: hex SHA-256 of the secret; doc: scep.Challenge
	KindSCEPCert          = "scep.cert"          // key: fingerprint; doc: scep.IssuedCert
	KindMDMEnrollment     = "mdm.enrollment"     // key: ID; doc: mdm.Enrollment
	KindMDMCertBinding    = "mdm.cert_binding"   // key: fingerprint; doc: the enrollment's ID
	KindMDMCommand        = "mdm.command"        // key: UUID; doc: mdm.QueuedCommand; data: its payload
	KindMDMQueue          = "mdm.queue"          // key: enrollment, command UUID; doc: QueueEntry; in queue order
	KindMDMResult         = "mdm.result"         // key: enrollment, ordinal from 1; doc: mdm.Result; data: its plist
	KindEnrollToken       = "enroll.token"       // key: hex SHA-256 of the secret; doc: enroll.Token
	KindEnrollRecord      = "enroll.record"      // key: serial; doc: enroll.Record
	KindEnrollUser        = "enroll.user"        // key: email; doc: enroll.User
	KindEnrollAssignment  = "enroll.assignment"  // key: ID; doc: enroll.Assignment
	KindEnrollSettings    = "enroll.settings"    // no key; doc: enroll.Settings
	KindDEPToken          = "dep.token"          // key: name; doc: dep.Token
	KindDEPCursor         = "dep.cursor"         // key: token name; doc: dep.Cursor
	KindCampaignRing      = "campaign.ring"      // key: name; doc: campaign.Ring
	KindCampaignJob       = "campaign.job"       // key: ring, job number; doc: campaign.Job
	KindCampaignDelivery  = "campaign.delivery"  // key: ring, job, number; doc: campaign.Delivery
	KindSCIMResource      = "scim.resource"      // key: type, ID; doc: scim.Stored
	KindSCIMToken         = "scim.token"         // key: ID; doc: scim.Token
	KindDirectorySettings = "directory.settings" // no key; doc: directory.Settings
	KindDirectoryGroup    = "directory.group"    // key: group key; doc: directory.GroupRecord
	KindDirectoryLink     = "directory.link"     // key: SOURCE:ID; doc: the user's email
	KindDirectoryOffboard = "directory.offboarding"
	KindDirectoryAudit    = "directory.audit" // key: sequence number; doc: directory.AuditEntry
	KindCounter           = "counter"         // key: name; doc: the last number given
)

// The counters a backend keeps beside its records.
const (
	// CounterAudit is the last sequence number given to an audit entry.
	CounterAudit = "directory.audit"
)

// A QueueEntry is a command's place in an enrollment's queue.
type QueueEntry struct {
	RequestType string `json:"request_type"`
	NotNow      bool   `json:"not_now,omitempty"`
}

// A kind is what the backends agree on about one kind of record: how many
// key components it has, and the canonical form of its document.
type kind struct {
	name string
	keys int
	// canon decodes a document as its type and encodes it again, so that
	// two backends' encodings of one value (key order, fields left out or
	// given their zero value) become the same bytes.
	canon func([]byte) ([]byte, error)
}

var kinds = []kind{
	{KindSCEPChallenge, 1, canon[scep.Challenge](nil)},
	{KindSCEPCert, 1, canon[scep.IssuedCert](nil)},
	{KindMDMEnrollment, 1, canon[mdm.Enrollment](nil)},
	{KindMDMCertBinding, 1, canon[string](nil)},
	{KindMDMCommand, 1, canon(func(c *mdm.QueuedCommand) { c.Payload, c.NotNow = nil, false })},
	{KindMDMQueue, 2, canon[QueueEntry](nil)},
	{KindMDMResult, 2, canon(func(r *mdm.Result) { r.Raw = nil })},
	{KindEnrollToken, 1, canon[enroll.Token](nil)},
	{KindEnrollRecord, 1, canon[enroll.Record](nil)},
	{KindEnrollUser, 1, canon[enroll.User](nil)},
	{KindEnrollAssignment, 1, canon[enroll.Assignment](nil)},
	{KindEnrollSettings, 0, canon[enroll.Settings](nil)},
	{KindDEPToken, 1, canon[dep.Token](nil)},
	{KindDEPCursor, 1, canon[dep.Cursor](nil)},
	{KindCampaignRing, 1, canon[campaign.Ring](nil)},
	{KindCampaignJob, 2, canon[campaign.Job](nil)},
	{KindCampaignDelivery, 3, canon[campaign.Delivery](nil)},
	{KindSCIMResource, 2, canon[scim.Stored](nil)},
	{KindSCIMToken, 1, canon[scim.Token](nil)},
	{KindDirectorySettings, 0, canon[directory.Settings](nil)},
	{KindDirectoryGroup, 1, canon[directory.GroupRecord](nil)},
	{KindDirectoryLink, 1, canon[string](nil)},
	{KindDirectoryOffboard, 1, canon[directory.Offboarding](nil)},
	{KindDirectoryAudit, 1, canon[directory.AuditEntry](nil)},
	{KindCounter, 1, canon[uint64](nil)},
}

// Kinds returns the kinds of records in the order Export gives them.
func Kinds() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	return names
}

// kindIndex is each kind's place in kinds.
var kindIndex = func() map[string]int {
	m := make(map[string]int, len(kinds))
	for i, k := range kinds {
		m[k.name] = i
	}
	return m
}()

// KindIndex returns the place of a kind in Kinds; -1 for an unknown kind.
func KindIndex(name string) int {
	if i, ok := kindIndex[name]; ok {
		return i
	}
	return -1
}

func canon[T any](strip func(*T)) func([]byte) ([]byte, error) {
	return func(doc []byte) ([]byte, error) {
		v := new(T)
		// Numbers in values of arbitrary JSON (SCIM attributes) keep
		// their digits.
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(v); err != nil {
			return nil, err
		}
		if dec.More() {
			return nil, fmt.Errorf("more than one JSON value")
		}
		if strip != nil {
			strip(v)
		}
		return json.Marshal(v)
	}
}

// Check checks that r is a record of a known kind with as many key
// components as its kind has, and a document.
func (r *Record) Check() error {
	_, err := r.kind()
	return err
}

func (r *Record) kind() (*kind, error) {
	i := KindIndex(r.Kind)
	if i < 0 {
		return nil, fmt.Errorf("unknown kind of record %q", r.Kind)
	}
	k := &kinds[i]
	if len(r.Key) != k.keys {
		return nil, fmt.Errorf("%s record with %d key components, want %d", r.Kind, len(r.Key), k.keys)
	}
	if len(r.Doc) == 0 {
		return nil, fmt.Errorf("%s record %q has no doc", r.Kind, r.Key)
	}
	return k, nil
}

// Canonical checks r (as Check does) and puts its document in canonical
// form: the form in which both backends export one value as the same
// bytes.
func (r *Record) Canonical() error {
	k, err := r.kind()
	if err != nil {
		return err
	}
	doc, err := k.canon(r.Doc)
	if err != nil {
		return fmt.Errorf("%s record %q: doc: %w", r.Kind, r.Key, err)
	}
	r.Doc = doc
	return nil
}
