package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/custodymdm/custody/mdm"
)

// An AssignmentKind says what an assignment installs.
type AssignmentKind string

// Assignment kinds.
const (
	AssignProfile AssignmentKind = "profile" // a .mobileconfig, installed with InstallProfile
	AssignCommand AssignmentKind = "command" // any MDM command
	// AssignAndroidPolicy is an Android Management API policy (its JSON):
	// the group's Android devices are enrolled with it.
	AssignAndroidPolicy AssignmentKind = "android-policy"
)

// An Assignment gives a group a profile or a command. Every device of the
// group gets it once, when it enrols or when it joins the group, or at
// once when the assignment is made after it enrolled.
type Assignment struct {
	ID    string         `json:"id"`
	Group string         `json:"group"`
	Kind  AssignmentKind `json:"kind"`
	// Name is the profile's PayloadIdentifier, or the command's RequestType.
	Name string `json:"name"`
	// DisplayName is the profile's PayloadDisplayName.
	DisplayName string `json:"display_name,omitempty"`
	// Payload is the unsigned .mobileconfig of a profile, or the command
	// dictionary (RequestType included) of a command, as a plist.
	Payload   []byte    `json:"payload"`
	CreatedAt time.Time `json:"created_at"`
}

// An AssignmentStore keeps assignments.
type AssignmentStore interface {
	// PutAssignment stores an assignment, replacing one with its ID.
	PutAssignment(ctx context.Context, a *Assignment) error
	// Assignment returns one assignment, or ErrNotFound.
	Assignment(ctx context.Context, id string) (*Assignment, error)
	// Assignments calls fn for each assignment in ID order until fn
	// returns false.
	Assignments(ctx context.Context, fn func(*Assignment) bool) error
	// DeleteAssignment removes an assignment; ErrNotFound if there is none.
	DeleteAssignment(ctx context.Context, id string) error
}

// MaxProfileBytes caps an assigned profile.
const MaxProfileBytes = 4 << 20

// NewProfileAssignment checks a .mobileconfig and returns its assignment
// to a group. A profile that is already CMS-signed is unwrapped: profiles
// are signed by the server's identity when they are installed.
func NewProfileAssignment(group string, mobileconfig []byte) (*Assignment, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	if len(mobileconfig) > MaxProfileBytes {
		return nil, invalidf("profile larger than %d bytes", MaxProfileBytes)
	}
	content := mobileconfig
	if !looksLikePlist(content) {
		p7, err := pkcs7.Parse(mobileconfig)
		if err != nil {
			return nil, invalidf("profile: neither a plist nor a CMS-signed plist")
		}
		content = p7.Content
	}
	var head struct {
		PayloadType        string
		PayloadIdentifier  string
		PayloadUUID        string
		PayloadDisplayName string
		PayloadContent     []map[string]any
	}
	if err := plist.Unmarshal(content, &head); err != nil {
		return nil, invalidf("profile: not a plist dictionary: %v", err)
	}
	switch {
	case head.PayloadType != "Configuration":
		return nil, invalidf("profile: PayloadType is %q, want Configuration", head.PayloadType)
	case head.PayloadIdentifier == "":
		return nil, invalidf("profile: no PayloadIdentifier")
	case head.PayloadUUID == "":
		return nil, invalidf("profile: no PayloadUUID")
	}
	return &Assignment{
		ID: newID(), Group: group, Kind: AssignProfile, Name: head.PayloadIdentifier,
		DisplayName: head.PayloadDisplayName, Payload: content,
	}, nil
}

// NewCommandAssignment checks a command dictionary (RequestType and the
// command's keys) and returns its assignment to a group.
func NewCommandAssignment(group, requestType string, keys map[string]any) (*Assignment, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	if _, err := mdm.CommandFromKeys(requestType, keys); err != nil {
		return nil, invalidf("%v", err)
	}
	dict := make(map[string]any, len(keys)+1)
	for k, v := range keys {
		dict[k] = v
	}
	dict["RequestType"] = requestType
	payload, err := plist.Marshal(dict)
	if err != nil {
		return nil, invalidf("command: %v", err)
	}
	return &Assignment{ID: newID(), Group: group, Kind: AssignCommand, Name: requestType, Payload: payload}, nil
}

// NewAndroidPolicyAssignment checks an Android Management API policy (the
// JSON of a Policy resource) and returns its assignment to a group.
func NewAndroidPolicyAssignment(group string, policy []byte) (*Assignment, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	var p am.Policy
	dec := json.NewDecoder(bytes.NewReader(policy))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, invalidf("android policy: %v", err)
	}
	canonical, err := json.Marshal(&p)
	if err != nil {
		return nil, invalidf("android policy: %v", err)
	}
	return &Assignment{ID: newID(), Group: group, Kind: AssignAndroidPolicy, Name: AndroidPolicyID(group), Payload: canonical}, nil
}

// AndroidPolicyID is the Android Management API policy id of a group:
// lower case, with anything but letters, digits, hyphens and underscores
// replaced by hyphens.
func AndroidPolicyID(group string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(group) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	return "group-" + b.String()
}

func checkGroup(group string) error {
	if strings.TrimSpace(group) == "" || len(group) > 128 || strings.ContainsAny(group, ";\x00") {
		return invalidf("bad group name %q (want 1 to 128 characters, no ';')", group)
	}
	return nil
}

func looksLikePlist(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n\xef\xbb\xbf")
	return bytes.HasPrefix(b, []byte("<?xml")) || bytes.HasPrefix(b, []byte("<plist")) || bytes.HasPrefix(b, []byte("bplist"))
}

// command builds the MDM command an assignment sends, with a signed
// profile when it installs one.
func (a *Assignment) command(signed []byte) (mdm.Command, error) {
	switch a.Kind {
	case AssignProfile:
		return &mdm.InstallProfile{Payload: signed}, nil
	case AssignCommand:
		var dict map[string]any
		if err := plist.Unmarshal(a.Payload, &dict); err != nil {
			return nil, fmt.Errorf("enroll: assignment %s: %w", a.ID, err)
		}
		rt, _ := dict["RequestType"].(string)
		delete(dict, "RequestType")
		return mdm.CommandFromKeys(rt, dict)
	}
	return nil, fmt.Errorf("enroll: assignment %s has unknown kind %q", a.ID, a.Kind)
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
