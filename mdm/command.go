package mdm

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/micromdm/plist"
)

// A Command is an MDM command: one of the generated types of
// commands_gen.go, or a RawCommand. Its MarshalPlist writes the command
// dictionary, RequestType included.
type Command interface {
	RequestType() string
	MarshalPlist() (any, error)
}

// RawCommand is any command as a plain dictionary, for commands newer than
// the schema this package was generated from. Keys holds the command's keys
// other than RequestType.
type RawCommand struct {
	Type string
	Keys map[string]any
}

// RequestType returns c.Type.
func (c *RawCommand) RequestType() string { return c.Type }

// MarshalPlist writes the keys with RequestType added.
func (c *RawCommand) MarshalPlist() (any, error) {
	d := make(map[string]any, len(c.Keys)+1)
	for k, v := range c.Keys {
		d[k] = v
	}
	d["RequestType"] = c.Type
	return d, nil
}

// A CommandPayload is what the server sends a device: a command and the
// UUID its response will carry.
type CommandPayload struct {
	CommandUUID string
	Command     Command
}

// MarshalCommand encodes a command for the device as an XML plist.
func MarshalCommand(uuid string, c Command) ([]byte, error) {
	if uuid == "" {
		return nil, errors.New("mdm: command without a CommandUUID")
	}
	// The encoder does not look through an interface to a pointer, so the
	// command's dictionary is made here.
	dict, err := c.MarshalPlist()
	if err != nil {
		return nil, fmt.Errorf("mdm: %s: %w", c.RequestType(), err)
	}
	return plist.Marshal(struct {
		CommandUUID string
		Command     any
	}{uuid, dict})
}

// DecodeCommand decodes a command payload as a device receives it. A
// RequestType without a generated type decodes into a *RawCommand.
func DecodeCommand(raw []byte) (*CommandPayload, error) {
	var head struct {
		CommandUUID string
		Command     map[string]any
	}
	if err := plist.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("mdm: command payload is not a plist dictionary: %w", err)
	}
	rt, _ := head.Command["RequestType"].(string)
	if head.CommandUUID == "" || rt == "" {
		return nil, errors.New("mdm: command payload lacks CommandUUID or Command.RequestType")
	}
	c := newCommand(rt)
	if c == nil {
		delete(head.Command, "RequestType")
		return &CommandPayload{CommandUUID: head.CommandUUID, Command: &RawCommand{Type: rt, Keys: head.Command}}, nil
	}
	// Decode into a struct whose Command field has the command's concrete
	// type: the decoder replaces an interface's value rather than filling
	// the pointer it holds.
	wrapper := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "Command", Type: reflect.TypeOf(c)}}))
	if err := plist.Unmarshal(raw, wrapper.Interface()); err != nil {
		return nil, fmt.Errorf("mdm: %s command: %w", rt, err)
	}
	if decoded, ok := wrapper.Elem().Field(0).Interface().(Command); ok && !reflect.ValueOf(decoded).IsNil() {
		c = decoded
	}
	return &CommandPayload{CommandUUID: head.CommandUUID, Command: c}, nil
}

// Status values of a command response (or of an idle check-in).
const (
	StatusIdle               = "Idle"
	StatusAcknowledged       = "Acknowledged"
	StatusError              = "Error"
	StatusCommandFormatError = "CommandFormatError"
	StatusNotNow             = "NotNow"
)

// CommandResult holds the keys every response to the server URL carries.
// The generated response types embed it.
type CommandResult struct {
	Status           string           `plist:"Status"`
	CommandUUID      string           `plist:"CommandUUID,omitempty"`
	UDID             string           `plist:"UDID,omitempty"`
	EnrollmentID     string           `plist:"EnrollmentID,omitempty"`
	EnrollmentUserID string           `plist:"EnrollmentUserID,omitempty"`
	UserID           string           `plist:"UserID,omitempty"`
	UserShortName    string           `plist:"UserShortName,omitempty"`
	UserLongName     string           `plist:"UserLongName,omitempty"`
	NotOnConsole     bool             `plist:"NotOnConsole,omitempty"`
	ErrorChain       []ErrorChainItem `plist:"ErrorChain,omitempty"`
}

// Result returns the common keys; it lets code handle any response type.
func (r *CommandResult) Result() *CommandResult { return r }

// An ErrorChainItem is one error of a response's ErrorChain.
type ErrorChainItem struct {
	ErrorCode            int    `plist:"ErrorCode"`
	ErrorDomain          string `plist:"ErrorDomain"`
	LocalizedDescription string `plist:"LocalizedDescription,omitempty"`
	USEnglishDescription string `plist:"USEnglishDescription,omitempty"`
}

// A Response is a decoded response to the server URL.
type Response struct {
	CommandResult
	// Typed is the response decoded into the generated type for the
	// command's RequestType (*DeviceInformationResponse, say), when the
	// caller knows the RequestType and the Status carries a result.
	Typed any
	// Dropped lists the keys of the body that Typed does not hold, as
	// UnknownKeys writes them ("QueryResponses.NewKey"): keys newer than
	// the schema the types were generated from, worth logging. It is
	// filled only when Typed is.
	Dropped []string
	// Raw is the body as the device sent it.
	Raw []byte
}

// DecodeResponse decodes a request to the server URL: an Idle status or the
// response to a command. requestType, when not empty, is the RequestType of
// the command the response answers, known to the server from its queue.
func DecodeResponse(raw []byte, requestType string) (*Response, error) {
	var result CommandResult
	if err := plist.Unmarshal(raw, &result); err != nil {
		return nil, fmt.Errorf("mdm: response is not a plist dictionary: %w", err)
	}
	return newResponse(raw, result, requestType)
}

// newResponse validates decoded common keys and, for an Acknowledged
// response to a known RequestType, decodes the typed response.
func newResponse(raw []byte, result CommandResult, requestType string) (*Response, error) {
	r := &Response{CommandResult: result, Raw: raw}
	switch r.Status {
	case StatusIdle:
		return r, nil
	case StatusAcknowledged, StatusError, StatusCommandFormatError, StatusNotNow:
	case "":
		return nil, errors.New("mdm: response has no Status")
	default:
		return nil, fmt.Errorf("mdm: response has unknown Status %q", r.Status)
	}
	if r.CommandUUID == "" {
		return nil, fmt.Errorf("mdm: %s response has no CommandUUID", r.Status)
	}
	if requestType == "" || r.Status != StatusAcknowledged {
		return r, nil
	}
	if t := newCommandResponse(requestType); t != nil {
		both := typedAndKeys{typed: t}
		if err := plist.Unmarshal(raw, &both); err != nil {
			return nil, fmt.Errorf("mdm: %s response: %w", requestType, err)
		}
		r.Typed = t
		r.Dropped = unknownKeys(reflect.TypeOf(t), both.keys)
	}
	return r, nil
}

// typedAndKeys decodes one parse of a body twice: into typed and, for
// UnknownKeys, into a plain dictionary.
type typedAndKeys struct {
	typed any
	keys  map[string]any
}

func (b *typedAndKeys) UnmarshalPlist(f func(any) error) error {
	if err := f(b.typed); err != nil {
		return err
	}
	// Best effort: what the typed decode accepted is not refused here.
	if f(&b.keys) != nil {
		b.keys = nil
	}
	return nil
}

// CommandFromKeys builds a command from its RequestType and keys, as an API
// or a command line receives them. A RequestType of the schema gets its
// typed command, and a key it does not have, or a value of the wrong type,
// is an error naming the key; any other RequestType becomes a RawCommand.
func CommandFromKeys(requestType string, keys map[string]any) (Command, error) {
	if requestType == "" {
		return nil, errors.New("mdm: command without a RequestType")
	}
	c := newCommand(requestType)
	if c == nil {
		return &RawCommand{Type: requestType, Keys: keys}, nil
	}
	known := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(c).Elem()) {
		name, _, _ := strings.Cut(f.Tag.Get("plist"), ",")
		known[name] = f.Type
	}
	for k, v := range keys {
		t, ok := known[k]
		if !ok {
			return nil, fmt.Errorf("mdm: %s has no key %q", requestType, k)
		}
		// A lone value for an array key is a one-element array, as a
		// command line gives it.
		if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
			if rv := reflect.ValueOf(v); rv.Kind() != reflect.Slice {
				keys[k] = []any{v}
			}
		}
	}
	raw, err := plist.Marshal(keys)
	if err != nil {
		return nil, fmt.Errorf("mdm: %s keys: %w", requestType, err)
	}
	if err := plist.Unmarshal(raw, c); err != nil {
		return nil, fmt.Errorf("mdm: %s keys: %w", requestType, err)
	}
	return c, nil
}
