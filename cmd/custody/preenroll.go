package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
)

// Admin API for pre-enrollment: CSV imports, the inventory of records and
// devices, settings, groups and assignments, per-record links and traces.

// maxImportBody caps a CSV upload (a million rows is about 100 MiB).
const maxImportBody = 512 << 20

// maxAssignmentBody caps an assignment request (a base64 profile).
const maxAssignmentBody = 8 << 20

// bodyLimit is the request body cap of an API path.
func bodyLimit(path string) int64 {
	switch {
	case strings.HasSuffix(path, "/import"):
		return maxImportBody
	case path == "/api/v1/assignments":
		return maxAssignmentBody
	case path == "/api/v1/rings":
		return maxRingBody
	}
	return maxAPIBody
}

// importCSV serves POST /api/v1/records/import and /api/v1/users/import:
// the body is the CSV file, streamed; query parameters group (repeatable),
// map (repeatable, column=field), dry_run and skip_invalid.
func (s *server) importCSV(usersOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := enroll.ImportOptions{UsersOnly: usersOnly, CSVOptions: enroll.CSVOptions{Required: enroll.RecordFields, Map: map[string]enroll.Field{}}}
		if usersOnly {
			opts.Required = enroll.UserFields
		}
		var err error
		if opts.DryRun, err = boolParam(q, "dry_run"); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if opts.SkipInvalid, err = boolParam(q, "skip_invalid"); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		opts.Groups = q["group"]
		for _, m := range q["map"] {
			col, name, ok := strings.Cut(m, "=")
			if !ok || strings.TrimSpace(col) == "" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("map: %q is not COLUMN=FIELD", m))
				return
			}
			f, err := enroll.ParseField(name)
			if err != nil {
				writeError(w, http.StatusBadRequest, "map: "+err.Error())
				return
			}
			opts.Map[col] = f
		}
		res, err := enroll.Import(r.Context(), s.st.Records, r.Body, opts, time.Now().UTC())
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, enroll.ErrCSVHeader):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("CSV file larger than %d bytes", tooBig.Limit))
			return
		case err != nil && r.Context().Err() != nil:
			return // the client went away; nothing was written
		case errors.Is(err, enroll.ErrInvalid):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			s.log.Error("import", "err", err)
			writeError(w, http.StatusInternalServerError, "could not store the import")
			return
		}
		s.log.Info("csv import", "users_only", usersOnly, "rows", res.Rows, "bad_rows", len(res.Errors),
			"written", res.Written, "dry_run", opts.DryRun, "stats", res.Stats)
		code := http.StatusOK
		if !res.Written && !opts.DryRun && len(res.Errors) > 0 {
			code = http.StatusUnprocessableEntity
		}
		writeJSON(w, code, res)
	}
}

func boolParam(q url.Values, name string) (bool, error) {
	switch strings.ToLower(q.Get(name)) {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%s: %q is not a boolean", name, q.Get(name))
}

// inventoryJSON is one row of the inventory: a record, its device's
// enrollment once it has one, or an enrollment without a record (a user
// channel, a device enrolled without a serial number).
type inventoryJSON struct {
	deviceJSON
	Serial      string           `json:"serial,omitempty"`
	Status      string           `json:"status"`
	PreEnrolled bool             `json:"pre_enrolled"`
	Platform    enroll.Platform  `json:"platform,omitempty"`
	Ownership   enroll.Ownership `json:"ownership,omitempty"`
	UserEmail   string           `json:"user_email,omitempty"`
	UserName    string           `json:"user_name,omitempty"`
	Groups      []string         `json:"groups,omitempty"`
	Source      string           `json:"source,omitempty"`
	CreatedAt   time.Time        `json:"created_at,omitzero"`
}

func recordRow(r *enroll.Record, e *mdm.Enrollment) inventoryJSON {
	row := inventoryJSON{
		Serial: r.Serial, Status: string(r.Status), Platform: r.Platform, Ownership: r.Ownership,
		UserEmail: r.UserEmail, UserName: r.UserName, Groups: r.Groups, Source: r.Source, CreatedAt: r.CreatedAt,
		PreEnrolled: r.EnrollmentID == "" || r.Status == enroll.StatusPreApproved || r.Status == enroll.StatusInvited,
	}
	switch {
	case row.PreEnrolled:
		row.DeviceName = r.DeviceName
	case e != nil:
		row.deviceJSON = toDeviceJSON(e)
	default: // an Android device: its enrollment is the Android Management API's
		row.ID, row.DeviceName, row.SerialNumber = r.EnrollmentID, r.DeviceName, r.Serial
		row.Enabled = r.Status == enroll.StatusEnrolled
	}
	return row
}

func enrollmentRow(e *mdm.Enrollment) inventoryJSON {
	status := enroll.StatusUnenrolled
	switch {
	case !e.WipedAt.IsZero():
		status = enroll.StatusWiped
	case e.Enabled:
		status = enroll.StatusEnrolled
	}
	return inventoryJSON{deviceJSON: toDeviceJSON(e), Serial: e.SerialNumber, Status: string(status)}
}

var knownStatuses = []enroll.Status{enroll.StatusPreApproved, enroll.StatusInvited, enroll.StatusEnrolled,
	enroll.StatusUnenrolled, enroll.StatusWipePending, enroll.StatusWiped}

// listInventory serves GET /api/v1/inventory?status=S&group=G: records
// (pre-enrolled or enrolled) in serial order, then enrollments without a
// record.
func (s *server) listInventory(w http.ResponseWriter, r *http.Request) {
	status, group := r.URL.Query().Get("status"), r.URL.Query().Get("group")
	if status != "" && !slices.Contains(knownStatuses, enroll.Status(status)) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status: unknown status %q (want one of %v)", status, knownStatuses))
		return
	}
	rows, err := s.inventory(r.Context(), status, group)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": rows})
}

// inventory lists records (pre-enrolled or enrolled) in serial order, then
// enrollments without a record, of a status and a group when given.
func (s *server) inventory(ctx context.Context, status, group string) ([]inventoryJSON, error) {
	enrollments := map[string]*mdm.Enrollment{}
	err := s.st.MDM.Enrollments(ctx, func(e *mdm.Enrollment) bool { enrollments[e.ID] = e; return true })
	if err != nil {
		return nil, err
	}
	inGroup := map[string]bool{} // users of the group
	if group != "" {
		err = s.st.Records.Users(ctx, func(u *enroll.User) bool {
			if u.InGroup(group) {
				inGroup[u.Email] = true
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	rows := []inventoryJSON{}
	linked := map[string]bool{}
	err = s.st.Records.Records(ctx, func(rec *enroll.Record) bool {
		e := enrollments[rec.EnrollmentID]
		if e != nil {
			linked[e.ID] = true
		}
		if status != "" && string(rec.Status) != status || group != "" && !rec.InGroup(group, nil) && !inGroup[rec.UserEmail] {
			return true
		}
		rows = append(rows, recordRow(rec, e))
		return true
	})
	if err != nil {
		return nil, err
	}
	if group == "" {
		var rest []inventoryJSON
		for id, e := range enrollments {
			if row := enrollmentRow(e); !linked[id] && (status == "" || row.Status == status) {
				rest = append(rest, row)
			}
		}
		slices.SortFunc(rest, func(a, b inventoryJSON) int { return strings.Compare(a.ID, b.ID) })
		rows = append(rows, rest...)
	}
	return rows, nil
}

// getInventory serves GET /api/v1/inventory/{key}: a device by serial
// number or enrollment ID.
func (s *server) getInventory(w http.ResponseWriter, r *http.Request) {
	ctx, key := r.Context(), r.PathValue("key")
	if serial, err := enroll.NormalizeSerial(key); err == nil {
		rec, err := s.st.Records.Record(ctx, serial)
		if err == nil {
			var e *mdm.Enrollment
			if rec.EnrollmentID != "" {
				if e, err = s.st.MDM.Enrollment(ctx, rec.EnrollmentID); errors.Is(err, mdm.ErrNotFound) {
					err = nil
				}
			}
			if err == nil {
				writeJSON(w, http.StatusOK, recordRow(rec, e))
				return
			}
		}
		if !errors.Is(err, enroll.ErrNotFound) {
			s.log.Error("get device", "err", err)
			writeError(w, http.StatusInternalServerError, "could not read the device")
			return
		}
	}
	e, err := s.st.MDM.Enrollment(ctx, key)
	switch {
	case errors.Is(err, mdm.ErrNotFound):
		writeError(w, http.StatusNotFound, "no device or record "+key)
		return
	case err != nil:
		s.log.Error("get device", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the device")
		return
	}
	if serial, serr := enroll.NormalizeSerial(e.SerialNumber); serr == nil {
		if rec, err := s.st.Records.Record(ctx, serial); err == nil && rec.EnrollmentID == e.ID {
			writeJSON(w, http.StatusOK, recordRow(rec, e))
			return
		}
	}
	writeJSON(w, http.StatusOK, enrollmentRow(e))
}

func (s *server) getSettings(w http.ResponseWriter, r *http.Request) {
	st, err := s.st.Settings.Settings(r.Context())
	if err != nil {
		s.log.Error("settings", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the settings")
		return
	}
	writeJSON(w, http.StatusOK, st.Values())
}

// putSettings serves PATCH /api/v1/settings: a JSON object of setting names
// and their values as text.
func (s *server) putSettings(w http.ResponseWriter, r *http.Request) {
	var req map[string]string
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var bad error
	st, err := s.st.Settings.UpdateSettings(r.Context(), func(st *enroll.Settings) error {
		for name, value := range req {
			if bad = st.Set(name, value); bad != nil {
				return bad
			}
		}
		return nil
	})
	switch {
	case bad != nil:
		writeError(w, http.StatusBadRequest, bad.Error())
	case err != nil:
		s.log.Error("settings", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the settings")
	default:
		s.log.Info("settings changed", "changes", req)
		writeJSON(w, http.StatusOK, st.Values())
	}
}

type linkRequest struct {
	Serial string `json:"serial,omitempty"`
	Email  string `json:"email,omitempty"`
	TTL    string `json:"ttl,omitempty"`
	Note   string `json:"note,omitempty"`
}

// createLink serves POST /api/v1/links: a one-time enrollment link for a
// record or a user.
func (s *server) createLink(w http.ResponseWriter, r *http.Request) {
	var req linkRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, msg := validateMint(req.TTL, req.Note, "")
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	t, secret, err := s.life.MintLink(r.Context(), req.Serial, req.Email, ttl, req.Note)
	switch {
	case errors.Is(err, enroll.ErrNotFound):
		writeError(w, http.StatusNotFound, "no record or user: "+strings.TrimSpace(req.Serial+" "+req.Email))
		return
	case errors.Is(err, enroll.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.log.Error("create link", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the enrollment link")
		return
	}
	s.log.Info("enrollment link created", "token_id", t.ID, "for", t.For, "expires_at", t.ExpiresAt)
	writeJSON(w, http.StatusCreated, enrollmentResponse{ID: t.ID, URL: s.baseURL + "/enroll/" + secret, ExpiresAt: t.ExpiresAt, For: t.For})
}

type membersRequest struct {
	Serials []string `json:"serials,omitempty"`
	Emails  []string `json:"emails,omitempty"`
}

// addMembers serves POST /api/v1/groups/{group}/members.
func (s *server) addMembers(w http.ResponseWriter, r *http.Request) {
	var req membersRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Serials)+len(req.Emails) == 0 {
		writeError(w, http.StatusBadRequest, "give serials or emails")
		return
	}
	queued, err := s.life.AddToGroup(r.Context(), r.PathValue("group"), req.Serials, req.Emails)
	if s.failed(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": r.PathValue("group"), "queued_for": nonNil(queued)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type groupJSON struct {
	Name        string `json:"name"`
	Records     int    `json:"records"`
	Users       int    `json:"users"`
	Enrolled    int    `json:"enrolled"`
	Assignments int    `json:"assignments"`
}

// listGroups serves GET /api/v1/groups: every group named by a record, a
// user or an assignment, with counts.
func (s *server) listGroups(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	groups := map[string]*groupJSON{}
	get := func(name string) *groupJSON {
		if groups[name] == nil {
			groups[name] = &groupJSON{Name: name}
		}
		return groups[name]
	}
	userGroups := map[string][]string{}
	err := s.st.Records.Users(ctx, func(u *enroll.User) bool {
		for _, g := range u.Groups {
			get(g).Users++
		}
		userGroups[u.Email] = u.Groups
		return true
	})
	if err == nil {
		err = s.st.Records.Records(ctx, func(rec *enroll.Record) bool {
			seen := map[string]bool{}
			for _, g := range append(slices.Clone(rec.Groups), userGroups[rec.UserEmail]...) {
				if seen[g] {
					continue
				}
				seen[g] = true
				get(g).Records++
				if rec.Status == enroll.StatusEnrolled {
					get(g).Enrolled++
				}
			}
			return true
		})
	}
	if err == nil {
		err = s.st.Assignments.Assignments(ctx, func(a *enroll.Assignment) bool { get(a.Group).Assignments++; return true })
	}
	if err != nil {
		s.log.Error("groups", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read groups")
		return
	}
	out := []*groupJSON{}
	for _, g := range groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *groupJSON) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, map[string]any{"groups": out})
}

type assignmentRequest struct {
	Group string `json:"group"`
	// AndroidPolicy is an Android Management API policy (JSON).
	AndroidPolicy json.RawMessage `json:"android_policy,omitempty"`
	// Profile is a .mobileconfig, signed or not.
	Profile []byte `json:"profile,omitempty"`
	// Or a command: RequestType and keys, or a whole plist dictionary.
	RequestType string         `json:"request_type,omitempty"`
	Keys        map[string]any `json:"keys,omitempty"`
	Plist       []byte         `json:"plist,omitempty"`
}

type assignmentJSON struct {
	ID          string                `json:"id"`
	Group       string                `json:"group"`
	Kind        enroll.AssignmentKind `json:"kind"`
	Name        string                `json:"name"`
	DisplayName string                `json:"display_name,omitempty"`
	CreatedAt   time.Time             `json:"created_at"`
	QueuedFor   []string              `json:"queued_for,omitempty"`
}

func toAssignmentJSON(a *enroll.Assignment) assignmentJSON {
	return assignmentJSON{ID: a.ID, Group: a.Group, Kind: a.Kind, Name: a.Name, DisplayName: a.DisplayName, CreatedAt: a.CreatedAt}
}

// createAssignment serves POST /api/v1/assignments.
func (s *server) createAssignment(w http.ResponseWriter, r *http.Request) {
	var req assignmentRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var a *enroll.Assignment
	var err error
	switch {
	case len(req.Profile) > 0 && (req.RequestType != "" || len(req.Plist) > 0 || len(req.Keys) > 0):
		err = errors.New("give a profile or a command, not both")
	case len(req.AndroidPolicy) > 0 && (len(req.Profile) > 0 || req.RequestType != "" || len(req.Plist) > 0):
		err = errors.New("give an android policy, a profile or a command, one of them")
	case len(req.AndroidPolicy) > 0:
		a, err = enroll.NewAndroidPolicyAssignment(req.Group, req.AndroidPolicy)
	case len(req.Profile) > 0:
		a, err = enroll.NewProfileAssignment(req.Group, req.Profile)
	case len(req.Plist) > 0:
		var dict map[string]any
		if err = plist.Unmarshal(req.Plist, &dict); err != nil {
			err = fmt.Errorf("plist: not a plist dictionary: %v", err)
			break
		}
		rt, _ := dict["RequestType"].(string)
		delete(dict, "RequestType")
		a, err = enroll.NewCommandAssignment(req.Group, rt, dict)
	case req.RequestType != "":
		keys := normalizeJSON(req.Keys)
		if keys == nil {
			keys = map[string]any{}
		}
		a, err = enroll.NewCommandAssignment(req.Group, req.RequestType, keys)
	default:
		err = errors.New("give a profile, or a command (request_type and keys, or plist)")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	queued, err := s.life.Assign(r.Context(), a)
	if s.failed(w, err) {
		return
	}
	if a.Kind == enroll.AssignAndroidPolicy {
		if android, _, ok := s.androidUnchecked(); ok && android.Management.EnterpriseName() != "" {
			if _, err := android.SyncPolicies(r.Context()); s.failed(w, err) {
				return
			}
		}
	}
	s.log.Info("assignment created", "id", a.ID, "group", a.Group, "kind", a.Kind, "name", a.Name, "queued_for", len(queued))
	out := toAssignmentJSON(a)
	out.QueuedFor = nonNil(queued)
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) listAssignments(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group")
	out := []assignmentJSON{}
	err := s.st.Assignments.Assignments(r.Context(), func(a *enroll.Assignment) bool {
		if group == "" || a.Group == group {
			out = append(out, toAssignmentJSON(a))
		}
		return true
	})
	if err != nil {
		s.log.Error("assignments", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read assignments")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"assignments": out})
}

func (s *server) deleteAssignment(w http.ResponseWriter, r *http.Request) {
	err := s.st.Assignments.DeleteAssignment(r.Context(), r.PathValue("id"))
	if s.failed(w, err) {
		return
	}
	s.log.Info("assignment deleted", "id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// getTrace serves GET /api/v1/trace/{key}: the identity chain of a device
// by serial number or enrollment ID.
func (s *server) getTrace(w http.ResponseWriter, r *http.Request) {
	tr, err := s.life.Trace(r.Context(), r.PathValue("key"))
	if errors.Is(err, enroll.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no record or device "+r.PathValue("key"))
		return
	}
	if err != nil {
		s.log.Error("trace", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the chain")
		return
	}
	writeJSON(w, http.StatusOK, tr)
}
