package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// MachineInfo is what a device in Setup Assistant sends the ADE profile's
// URL: its identity, as a plist CMS-signed by the device's Apple-issued
// identity.
type MachineInfo struct {
	UDID     string `plist:"UDID"`
	Serial   string `plist:"SERIAL"`
	Product  string `plist:"PRODUCT"`
	Version  string `plist:"VERSION"`
	IMEI     string `plist:"IMEI,omitempty"`
	MEID     string `plist:"MEID,omitempty"`
	Language string `plist:"LANGUAGE,omitempty"`
	// OSVersion is sent by newer OS versions.
	OSVersion string `plist:"OS_VERSION,omitempty"`
}

// MaxMachineInfoBytes caps a MachineInfo request body.
const MaxMachineInfoBytes = 64 << 10

// ErrMachineInfo is returned for a MachineInfo that cannot be read or
// whose signature does not verify.
var ErrMachineInfo = errors.New("enroll: bad MachineInfo")

// ParseMachineInfo reads a MachineInfo: a CMS SignedData whose content is
// the plist. The signature must verify with the certificate inside; with
// roots, that certificate must chain to them (Apple's device CA in
// production).
func ParseMachineInfo(body []byte, roots *x509.CertPool) (mi *MachineInfo, err error) {
	defer func() {
		if r := recover(); r != nil { // the CMS library panics on some malformed input
			mi, err = nil, fmt.Errorf("%w: malformed CMS", ErrMachineInfo)
		}
	}()
	p7, err := pkcs7.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not CMS SignedData: %v", ErrMachineInfo, err)
	}
	if len(p7.Signers) == 0 || len(p7.Content) == 0 {
		return nil, fmt.Errorf("%w: unsigned or empty", ErrMachineInfo)
	}
	if roots != nil {
		err = p7.VerifyWithChain(roots)
	} else {
		err = p7.Verify()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMachineInfo, err)
	}
	var m MachineInfo
	if err := plist.Unmarshal(p7.Content, &m); err != nil {
		return nil, fmt.Errorf("%w: content is not a plist dictionary: %v", ErrMachineInfo, err)
	}
	if m.Serial == "" || m.UDID == "" {
		return nil, fmt.Errorf("%w: no SERIAL or UDID", ErrMachineInfo)
	}
	return &m, nil
}

// An ADEServer answers the URL of an ADE profile. A device in Setup
// Assistant POSTs its MachineInfo there; the server finds its record by
// serial number and returns a signed enrollment profile whose one-time
// challenge is minted for a link bound to that record, so the device
// enrols into the record's identity chain. It refuses (403) an unknown
// serial while only pre-enrolled devices are admitted, a disowned device
// or one no longer assigned to the organisation, and a device whose
// record is enrolled: a replayed MachineInfo gets no second profile until
// the record is reset.
type ADEServer struct {
	Profiles  *ProfileServer
	Lifecycle *Lifecycle
	// Roots, when set, verify the MachineInfo signer's chain.
	Roots  *x509.CertPool
	Logger *slog.Logger
}

func (s *ADEServer) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *ADEServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "enroll: POST the device's MachineInfo", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxMachineInfoBytes+1))
	if err != nil {
		http.Error(w, "enroll: reading the body", http.StatusBadRequest)
		return
	}
	if len(body) > MaxMachineInfoBytes {
		http.Error(w, fmt.Sprintf("enroll: MachineInfo larger than %d bytes", MaxMachineInfoBytes), http.StatusRequestEntityTooLarge)
		return
	}
	mi, err := ParseMachineInfo(body, s.Roots)
	if err != nil {
		s.log().Warn("ade: MachineInfo refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	profile, tok, err := s.profileFor(r.Context(), mi)
	var refusal *refusalError
	switch {
	case errors.As(err, &refusal):
		s.log().Warn("ade: device refused", "serial", mi.Serial, "udid", mi.UDID, "reason", refusal.reason)
		http.Error(w, refusal.reason, http.StatusForbidden)
		return
	case err != nil:
		s.log().Error("ade: profile", "serial", mi.Serial, "err", err)
		http.Error(w, "enroll: internal error", http.StatusInternalServerError)
		return
	}
	s.log().Info("ade: profile served", "serial", mi.Serial, "udid", mi.UDID, "product", mi.Product, "token_id", tok.ID)
	writeProfile(w, profile)
}

type refusalError struct{ reason string }

func (e *refusalError) Error() string { return e.reason }

// profileFor checks a device's record and returns its enrollment profile.
func (s *ADEServer) profileFor(ctx context.Context, mi *MachineInfo) ([]byte, *Token, error) {
	l := s.Lifecycle
	serial, err := NormalizeSerial(mi.Serial)
	if err != nil {
		return nil, nil, &refusalError{err.Error()}
	}
	st, err := l.Settings.Settings(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := l.now()
	var refusal string
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		refusal = ""
		switch {
		case r == nil && st.PreEnrolledOnly:
			refusal = fmt.Sprintf("serial number %s is not pre-enrolled", serial)
		case r == nil:
			// Admitted without a record: one is made for the device.
			return &Record{Serial: serial, Platform: platformOfProduct(mi.Product), Ownership: OwnershipCorporate,
				Status: StatusPreApproved, Source: SourceEnrollment, CreatedAt: now, UpdatedAt: now,
				History: []Event{{At: now, Step: StepCreated, Note: "ade enrollment"}}}, nil
		case r.ADE != nil && !r.ADE.DisownedAt.IsZero():
			refusal = fmt.Sprintf("serial number %s was disowned", serial)
		case r.ADE != nil && !r.ADE.DeletedAt.IsZero():
			refusal = fmt.Sprintf("serial number %s is no longer assigned to this server in Apple Business Manager", serial)
		case r.Status == StatusEnrolled || r.Status == StatusWipePending:
			refusal = fmt.Sprintf("serial number %s is already enrolled; reset its record to enrol it again", serial)
		}
		if refusal != "" && r != nil {
			r = r.Clone()
			r.Log(Event{At: now, Step: StepRefused, Enrollment: mi.UDID, Note: "ADE MachineInfo: " + refusal})
			return r, nil
		}
		return nil, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if refusal != "" {
		return nil, nil, &refusalError{refusal}
	}
	t, secret, err := NewToken(ctx, l.Tokens, time.Hour, "ADE MachineInfo "+mi.UDID, RecordRef(serial))
	if err != nil {
		return nil, nil, err
	}
	profile, _, err := s.Profiles.issue(ctx, t, HashToken(secret), now)
	if err != nil {
		return nil, nil, err
	}
	_, err = l.Records.UpdateRecord(ctx, serial, func(r *Record) (*Record, error) {
		if r == nil {
			return nil, nil
		}
		r = r.Clone()
		r.Log(Event{At: now, Step: StepADEProfile, Enrollment: mi.UDID, Token: t.ID, Note: mi.Product + " " + mi.Version})
		return r, nil
	})
	return profile, t, err
}
