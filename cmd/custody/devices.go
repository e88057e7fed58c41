package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
)

// Admin API for enrolled Apple devices and their commands.

type deviceJSON struct {
	ID              string    `json:"id"`
	DeviceID        string    `json:"device_id"`
	UserID          string    `json:"user_id,omitempty"`
	SerialNumber    string    `json:"serial_number,omitempty"`
	Model           string    `json:"model,omitempty"`
	DeviceName      string    `json:"device_name,omitempty"`
	OSVersion       string    `json:"os_version,omitempty"`
	Enabled         bool      `json:"enabled"`
	Topic           string    `json:"topic,omitempty"`
	TokenInvalid    bool      `json:"token_invalid,omitempty"`
	CertFingerprint string    `json:"cert_fingerprint,omitempty"`
	WipedAt         time.Time `json:"wiped_at,omitzero"`
	AuthenticatedAt time.Time `json:"authenticated_at,omitzero"`
	TokenUpdateAt   time.Time `json:"token_update_at,omitzero"`
	// A device held in Setup Assistant (ADE) until DeviceConfigured.
	AwaitingConfiguration bool      `json:"awaiting_configuration,omitempty"`
	AwaitingSince         time.Time `json:"awaiting_since,omitzero"`
	ConfiguredAt          time.Time `json:"configured_at,omitzero"`
}

func toDeviceJSON(e *mdm.Enrollment) deviceJSON {
	return deviceJSON{
		ID: e.ID, DeviceID: e.DeviceID, UserID: e.UserID, SerialNumber: e.SerialNumber,
		// An iPhone's Authenticate has no Model, only its ProductName.
		Model:      cmp.Or(e.Model, e.ProductName),
		DeviceName: e.DeviceName, OSVersion: e.OSVersion, Enabled: e.Enabled, Topic: e.Topic,
		TokenInvalid: e.TokenInvalid, CertFingerprint: e.CertFingerprint, WipedAt: e.WipedAt,
		AuthenticatedAt: e.AuthenticAt, TokenUpdateAt: e.TokenUpdateAt,
		AwaitingConfiguration: e.AwaitingConfiguration, AwaitingSince: e.AwaitingSince, ConfiguredAt: e.ConfiguredAt,
	}
}

func (s *server) listDevices(w http.ResponseWriter, r *http.Request) {
	devices := []deviceJSON{}
	err := s.st.MDM.Enrollments(r.Context(), func(e *mdm.Enrollment) bool {
		devices = append(devices, toDeviceJSON(e))
		return true
	})
	if err != nil {
		s.log.Error("list devices", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read devices")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": devices})
}

func (s *server) getDevice(w http.ResponseWriter, r *http.Request) {
	e, err := s.st.MDM.Enrollment(r.Context(), r.PathValue("id"))
	if errors.Is(err, mdm.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no device "+r.PathValue("id"))
		return
	}
	if err != nil {
		s.log.Error("get device", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the device")
		return
	}
	writeJSON(w, http.StatusOK, toDeviceJSON(e))
}

type commandRequest struct {
	Devices     []string       `json:"devices"`
	RequestType string         `json:"request_type,omitempty"`
	Keys        map[string]any `json:"keys,omitempty"`
	// Plist is a whole command dictionary (RequestType included) as an XML
	// or binary plist, for values JSON cannot type (data, dates).
	Plist []byte `json:"plist,omitempty"`
	// NoPush queues without pushing; devices fetch at their next check-in.
	NoPush bool `json:"no_push,omitempty"`
}

type commandResponse struct {
	CommandUUID string           `json:"command_uuid"`
	RequestType string           `json:"request_type"`
	Devices     []string         `json:"devices"`
	Pushes      []pushResultJSON `json:"pushes,omitempty"`
}

func (s *server) enqueueCommand(w http.ResponseWriter, r *http.Request) {
	var req commandRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Devices) == 0 || len(req.Devices) > 10000 {
		writeError(w, http.StatusBadRequest, "devices: give between 1 and 10000 device ids")
		return
	}
	rt, keys := req.RequestType, normalizeJSON(req.Keys)
	if len(req.Plist) > 0 {
		if rt != "" || len(keys) > 0 {
			writeError(w, http.StatusBadRequest, "give plist or request_type and keys, not both")
			return
		}
		var dict map[string]any
		if err := plist.Unmarshal(req.Plist, &dict); err != nil {
			writeError(w, http.StatusBadRequest, "plist: not a plist dictionary: "+err.Error())
			return
		}
		rt, _ = dict["RequestType"].(string)
		delete(dict, "RequestType")
		keys = dict
	}
	if keys == nil {
		keys = map[string]any{}
	}
	if a, ok := s.androidDevices(r, req.Devices); ok {
		s.androidCommand(w, r, a, req.Devices, rt, keys)
		return
	}
	cmd, err := mdm.CommandFromKeys(rt, keys)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := strings.ToUpper(uuid.NewString())
	payload, err := mdm.MarshalCommand(id, cmd)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.st.MDM.Enqueue(r.Context(), req.Devices, &mdm.QueuedCommand{
		UUID: id, RequestType: rt, Payload: payload, EnqueuedAt: time.Now().UTC(),
	})
	if errors.Is(err, mdm.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		s.log.Error("enqueue", "err", err)
		writeError(w, http.StatusInternalServerError, "could not queue the command")
		return
	}
	s.log.Info("command queued", "command_uuid", id, "request_type", rt, "devices", len(req.Devices))
	if rt == "EraseDevice" {
		if err := s.life.RequestWipe(r.Context(), req.Devices, id); err != nil {
			s.log.Error("record wipe request", "command_uuid", id, "err", err)
		}
	}
	resp := commandResponse{CommandUUID: id, RequestType: rt, Devices: req.Devices}
	if !req.NoPush {
		resp.Pushes = s.pushDevices(r, req.Devices)
	}
	writeJSON(w, http.StatusCreated, resp)
}

// normalizeJSON turns json.Numbers into int64 or float64, so that the plist
// encoder writes <integer> or <real>.
func normalizeJSON(v map[string]any) map[string]any {
	for k, x := range v {
		v[k] = normalizeValue(x)
	}
	return v
}

func normalizeValue(x any) any {
	switch t := x.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		return normalizeJSON(t)
	case []any:
		for i := range t {
			t[i] = normalizeValue(t[i])
		}
	}
	return x
}

type queuedJSON struct {
	CommandUUID string    `json:"command_uuid"`
	RequestType string    `json:"request_type"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	NotNow      bool      `json:"not_now,omitempty"`
}

type resultJSON struct {
	CommandUUID string    `json:"command_uuid"`
	RequestType string    `json:"request_type,omitempty"`
	Status      string    `json:"status"`
	ReceivedAt  time.Time `json:"received_at"`
	Plist       string    `json:"plist"`
}

func (s *server) deviceCommands(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	store := s.st.MDM
	if _, err := store.Enrollment(r.Context(), id); errors.Is(err, mdm.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no device "+id)
		return
	}
	queue, err := store.Queue(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the queue")
		return
	}
	results, err := store.Results(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the results")
		return
	}
	out := struct {
		Queue   []queuedJSON `json:"queue"`
		Results []resultJSON `json:"results"`
	}{Queue: []queuedJSON{}, Results: []resultJSON{}}
	for _, q := range queue {
		out.Queue = append(out.Queue, queuedJSON{q.UUID, q.RequestType, q.EnqueuedAt, q.NotNow})
	}
	for _, res := range results {
		out.Results = append(out.Results, resultJSON{res.CommandUUID, res.RequestType, res.Status, res.ReceivedAt, string(res.Raw)})
	}
	writeJSON(w, http.StatusOK, out)
}

// androidDevices reports whether the devices are serial numbers of
// enrolled Android records, and returns the Android binding.
func (s *server) androidDevices(r *http.Request, ids []string) (*enroll.Android, bool) {
	a, _, ok := s.androidUnchecked()
	if !ok {
		return nil, false
	}
	for _, id := range ids {
		serial, err := enroll.NormalizeSerial(id)
		if err != nil {
			return nil, false
		}
		rec, err := s.st.Records.Record(r.Context(), serial)
		if err != nil || !strings.HasPrefix(rec.EnrollmentID, "enterprises/") {
			return nil, false
		}
	}
	return a, true
}
