package enroll

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/custodymdm/custody/dep"
)

// An ADE keeps pre-enrollment records in step with Apple's device
// assignment service: the devices of each server token become records
// (source ade), and new devices get the token's default ADE profile.
type ADE struct {
	Records RecordStore
	Tokens  dep.Store
	Logger  *slog.Logger
	Now     func() time.Time
}

func (a *ADE) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

func (a *ADE) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// An ADEStats reports an ADE sync round.
type ADEStats struct {
	dep.SyncStats
	// Assigned counts devices given the default profile; AssignFailed
	// those Apple refused (they are tried again next round).
	Assigned     int `json:"assigned"`
	AssignFailed int `json:"assign_failed"`
}

// Sync runs one sync round of a token (all of its devices with full) and
// then assigns its default profile to the devices that lack it.
func (a *ADE) Sync(ctx context.Context, tok *dep.Token, client *dep.Client, full bool) (*ADEStats, error) {
	s := &dep.Syncer{
		Name: tok.Name, Client: client, Cursors: a.Tokens, Logger: a.Logger,
		Handle: func(ctx context.Context, _ string, devices []dep.Device) error { return a.Store(ctx, tok, devices) },
	}
	st, err := s.Sync(ctx, full)
	out := &ADEStats{SyncStats: *st}
	if err != nil {
		return out, err
	}
	out.Assigned, out.AssignFailed, err = a.AssignDefault(ctx, tok, client)
	return out, err
}

// platformOfADE maps Apple's device family and OS to a platform.
func platformOfADE(d *dep.Device) Platform {
	if strings.EqualFold(d.DeviceFamily, "Mac") || strings.EqualFold(d.OS, "OSX") || strings.EqualFold(d.OS, "macOS") {
		return PlatformMacOS
	}
	return PlatformIOS
}

// Store brings a page of a token's devices into the records, in one
// transaction: a new device becomes a corporate, pre-approved record in
// the token's group; a known one gets Apple's details; a deleted one is
// marked.
func (a *ADE) Store(ctx context.Context, tok *dep.Token, devices []dep.Device) error {
	bySerial := make(map[string]*dep.Device, len(devices))
	serials := make([]string, 0, len(devices))
	for i := range devices {
		d := &devices[i]
		sn, err := NormalizeSerial(d.SerialNumber)
		if err != nil {
			a.log().Warn("ade: device with a bad serial number skipped", "token", tok.Name, "serial", d.SerialNumber)
			continue
		}
		if bySerial[sn] == nil {
			serials = append(serials, sn)
		}
		bySerial[sn] = d // the last word of the page wins
	}
	slices.Sort(serials)
	now := a.now()
	return a.Records.UpdateRecords(ctx, serials, func(sn string, r *Record) (*Record, error) {
		d := bySerial[sn]
		if d.OpType == dep.OpDeleted {
			if r == nil || r.ADE == nil || r.ADE.Token != tok.Name || !r.ADE.DeletedAt.IsZero() {
				return nil, nil
			}
			r = r.Clone()
			r.ADE.DeletedAt, r.ADE.UpdatedAt, r.UpdatedAt = now, now, now
			r.Log(Event{At: now, Step: StepADEDeleted, Note: tok.Name})
			return r, nil
		}
		if r == nil {
			r = &Record{
				Serial: sn, Platform: platformOfADE(d), Ownership: OwnershipCorporate, Status: StatusPreApproved,
				Source: SourceADE, DeviceName: d.Description, CreatedAt: now,
				History: []Event{{At: now, Step: StepCreated, Note: SourceADE + " " + tok.Name}},
			}
		} else {
			r = r.Clone()
		}
		ade := r.ADE
		if ade == nil || ade.Token != tok.Name {
			ade = &ADEDevice{Token: tok.Name}
		}
		ade.Model, ade.Description, ade.Color, ade.AssetTag = d.Model, d.Description, d.Color, d.AssetTag
		ade.OS, ade.DeviceFamily, ade.AssignedDate = d.OS, d.DeviceFamily, d.DeviceAssignedDate
		ade.ProfileUUID, ade.ProfileStatus = d.ProfileUUID, d.ProfileStatus
		ade.DeletedAt, ade.UpdatedAt = time.Time{}, now
		r.ADE = ade
		if tok.Group != "" && !slices.Contains(r.Groups, tok.Group) {
			r.Groups = append(r.Groups, tok.Group)
		}
		r.UpdatedAt = now
		return r, nil
	})
}

// needsProfile reports whether a record's device should be assigned the
// token's default profile: it is the token's, still assigned to the
// server, lacks the profile, and Apple has not already answered a request
// for it with SUCCESS or NOT_ACCESSIBLE.
func needsProfile(r *Record, tok *dep.Token) bool {
	ade := r.ADE
	return tok.DefaultProfile != "" && ade != nil && ade.Token == tok.Name && ade.DeletedAt.IsZero() && ade.DisownedAt.IsZero() &&
		ade.ProfileUUID != tok.DefaultProfile &&
		!(ade.AssignProfile == tok.DefaultProfile && (ade.AssignResult == dep.ResultSuccess || ade.AssignResult == dep.ResultNotAccessible))
}

// assignBatch is how many serials one assignment request carries.
const assignBatch = 1000

// AssignDefault assigns the token's default profile to every device that
// needs it (see needsProfile), storing Apple's answer per serial, and
// returns how many succeeded and failed. Failed ones are tried again at
// the next call.
func (a *ADE) AssignDefault(ctx context.Context, tok *dep.Token, client *dep.Client) (ok, failed int, err error) {
	var pending []string
	err = a.Records.Records(ctx, func(r *Record) bool {
		if needsProfile(r, tok) {
			pending = append(pending, r.Serial)
		}
		return true
	})
	if err != nil || len(pending) == 0 {
		return 0, 0, err
	}
	for start := 0; start < len(pending); start += assignBatch {
		batch := pending[start:min(start+assignBatch, len(pending))]
		res, err := client.AssignProfile(ctx, tok.DefaultProfile, batch)
		if err != nil {
			return ok, failed, fmt.Errorf("ade: assigning profile %s: %w", tok.DefaultProfile, err)
		}
		n, f, err := a.recordAssignment(ctx, tok.DefaultProfile, res.Devices)
		ok, failed = ok+n, failed+f
		if err != nil {
			return ok, failed, err
		}
	}
	a.log().Info("ade: default profile assigned", "token", tok.Name, "profile", tok.DefaultProfile, "ok", ok, "failed", failed)
	return ok, failed, nil
}

// recordAssignment stores Apple's per-serial answers to a profile
// assignment.
func (a *ADE) recordAssignment(ctx context.Context, profile string, results map[string]string) (ok, failed int, err error) {
	serials := make([]string, 0, len(results))
	for sn := range results {
		serials = append(serials, sn)
	}
	slices.Sort(serials)
	now := a.now()
	err = a.Records.UpdateRecords(ctx, serials, func(sn string, r *Record) (*Record, error) {
		if r == nil || r.ADE == nil {
			return nil, nil
		}
		r = r.Clone()
		res := results[sn]
		r.ADE.AssignProfile, r.ADE.AssignResult, r.ADE.AssignedAt = profile, res, now
		if res == dep.ResultSuccess {
			r.ADE.ProfileUUID, r.ADE.ProfileStatus = profile, dep.ProfileAssigned
		}
		r.Log(Event{At: now, Step: StepADEAssigned, Note: profile + " " + res})
		return r, nil
	})
	for _, res := range results {
		if res == dep.ResultSuccess {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed, err
}

// AssignProfile assigns a profile to devices by serial number and stores
// the results on their records.
func (a *ADE) AssignProfile(ctx context.Context, client *dep.Client, profile string, serials []string) (map[string]string, error) {
	res, err := client.AssignProfile(ctx, profile, serials)
	if err != nil {
		return nil, err
	}
	_, _, err = a.recordAssignment(ctx, profile, res.Devices)
	return res.Devices, err
}

// Disown disowns devices in Apple Business Manager and marks their
// records: an ADE enrollment of a disowned serial is refused.
func (a *ADE) Disown(ctx context.Context, client *dep.Client, serials []string) (map[string]string, error) {
	res, err := client.DisownDevices(ctx, serials)
	if err != nil {
		return nil, err
	}
	var done []string
	for sn, r := range res {
		if r == dep.ResultSuccess {
			done = append(done, sn)
		}
	}
	slices.Sort(done)
	now := a.now()
	err = a.Records.UpdateRecords(ctx, done, func(sn string, r *Record) (*Record, error) {
		if r == nil || r.ADE == nil {
			return nil, nil
		}
		r = r.Clone()
		r.ADE.DisownedAt, r.ADE.UpdatedAt = now, now
		r.Log(Event{At: now, Step: StepADEDisowned})
		return r, nil
	})
	return res, err
}
