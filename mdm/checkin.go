package mdm

import (
	"errors"
	"fmt"

	"github.com/micromdm/plist"
)

// A CheckinMessage is one of the check-in messages of checkin_gen.go:
// *Authenticate, *TokenUpdate, *CheckOut, *UserAuthenticate,
// *SetBootstrapToken, *GetBootstrapToken, *DeclarativeManagement or
// *GetToken. Each keeps the bytes it was decoded from in its Raw field.
type CheckinMessage interface {
	MessageType() string
	setRaw([]byte)
}

// ErrUnknownMessageType is returned for a check-in message whose
// MessageType this package does not know.
var ErrUnknownMessageType = errors.New("mdm: unknown check-in MessageType")

// DecodeCheckin decodes a check-in request body (XML or binary plist) into
// its typed message.
func DecodeCheckin(raw []byte) (CheckinMessage, error) {
	var head struct{ MessageType string }
	if err := plist.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("mdm: check-in message is not a plist dictionary: %w", err)
	}
	if head.MessageType == "" {
		return nil, errors.New("mdm: check-in message has no MessageType")
	}
	m := newCheckinMessage(head.MessageType)
	if m == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMessageType, head.MessageType)
	}
	if err := plist.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("mdm: %s: %w", head.MessageType, err)
	}
	m.setRaw(raw)
	return m, nil
}
