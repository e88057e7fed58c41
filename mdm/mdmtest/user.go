package mdmtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/mdm"
)

// ErrUserDeclined is returned by UserChannel.Authenticate when the server
// declines to manage the user (HTTP 410): the Mac then opens no user
// channel.
var ErrUserDeclined = errors.New("mdmtest: server declined to manage the user")

// A UserChannel is the MDM channel of one user logged in on a Mac: its
// messages carry the device's UDID and the user's UserID, short and long
// names, and its commands are the user's (profiles for the user).
type UserChannel struct {
	Device    *Device
	UserID    string // the user's GUID
	ShortName string
	LongName  string
	// Password answers a non-empty DigestChallenge of UserAuthenticate.
	Password string
	// NotOnConsole is true for a user logged in over the network rather
	// than at the console.
	NotOnConsole bool
	// Token and PushMagic are the user channel's own push details.
	Token     []byte
	PushMagic string

	mu        sync.Mutex
	authToken string
	profiles  map[string][]byte
}

// User returns the user channel of a user on the Mac d, with push details
// of its own.
func (d *Device) User(userID, shortName, longName string) *UserChannel {
	return &UserChannel{
		Device: d, UserID: userID, ShortName: shortName, LongName: longName,
		Token: append([]byte("user:"), d.Token...), PushMagic: d.PushMagic + "-" + shortName,
	}
}

func (u *UserChannel) ids() ids {
	ch := u.Device.ids()
	ch.UserID, ch.UserShortName, ch.UserLongName = u.UserID, u.ShortName, u.LongName
	return ch
}

// AuthToken is what the server answered to the second UserAuthenticate, if
// it asked for one.
func (u *UserChannel) AuthToken() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.authToken
}

// Authenticate runs UserAuthenticate, Apple's two-step handshake: the first
// message carries no DigestResponse; a 410 declines the user
// (ErrUserDeclined); a zero-length DigestChallenge admits the user without
// a password; any other challenge is answered with an HTTP Digest (RFC 2617,
// MD5) of the short name and Password, and the server's AuthToken is kept.
func (u *UserChannel) Authenticate(ctx context.Context) error {
	d := u.Device
	if !d.mac() {
		return errors.New("mdmtest: UserAuthenticate is sent by Macs only")
	}
	first := &userAuthenticateMessage{MessageType: "UserAuthenticate", UDID: d.UDID, UserID: u.UserID}
	out, err := d.checkin(ctx, "UserAuthenticate", first)
	var he *HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusGone {
		return ErrUserDeclined
	}
	if err != nil {
		return err
	}
	var challenge struct{ DigestChallenge *string }
	if err := plist.Unmarshal(out, &challenge); err != nil || challenge.DigestChallenge == nil {
		return fmt.Errorf("mdmtest: UserAuthenticate answered without a DigestChallenge: %q", out)
	}
	if *challenge.DigestChallenge == "" {
		return nil
	}
	second := *first
	second.DigestResponse = digestResponse(*challenge.DigestChallenge, u.ShortName, u.Password)
	out, err = d.checkin(ctx, "UserAuthenticate", &second)
	if err != nil {
		return err
	}
	var token struct{ AuthToken string }
	if err := plist.Unmarshal(out, &token); err != nil || token.AuthToken == "" {
		return fmt.Errorf("mdmtest: second UserAuthenticate answered without an AuthToken: %q", out)
	}
	u.mu.Lock()
	u.authToken = token.AuthToken
	u.mu.Unlock()
	return nil
}

// digestResponse answers a challenge of the form
// `Digest realm="…", nonce="…"` as RFC 2617 does without qop.
func digestResponse(challenge, user, password string) string {
	params := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(strings.TrimSpace(challenge), "Digest "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		params[k] = strings.Trim(v, `"`)
	}
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(user + ":" + params["realm"] + ":" + password)
	ha2 := h("PUT:/")
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="/", response="%s"`,
		user, params["realm"], params["nonce"], h(ha1+":"+params["nonce"]+":"+ha2))
}

// TokenUpdate sends the user channel's TokenUpdate.
func (u *UserChannel) TokenUpdate(ctx context.Context) error {
	_, err := u.Device.checkin(ctx, "TokenUpdate", &userTokenUpdateMessage{
		MessageType: "TokenUpdate", Topic: u.Device.Topic, ids: u.ids(),
		NotOnConsole: u.NotOnConsole, PushMagic: u.PushMagic, Token: u.Token,
	})
	return err
}

// Poll reports Idle on the user channel and answers the user's commands
// until the server has none.
func (u *UserChannel) Poll(ctx context.Context) ([]*mdm.CommandPayload, error) {
	return u.Device.poll(ctx, u.ids(), u.execute)
}

// Profiles returns the identifiers of the profiles installed for the user.
func (u *UserChannel) Profiles() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var list []string
	for _, p := range profileList(u.profiles) {
		list = append(list, p.PayloadIdentifier)
	}
	return list
}

// execute carries out a command on the user channel: profiles are the
// user's; device commands are refused as a Mac refuses them there.
func (u *UserChannel) execute(ch ids, p *mdm.CommandPayload) any {
	ok := mdm.CommandResult{Status: mdm.StatusAcknowledged, CommandUUID: p.CommandUUID}
	setIDs(&ok, ch)
	u.mu.Lock()
	defer u.mu.Unlock()
	switch c := p.Command.(type) {
	case *mdm.ProfileList:
		return &mdm.ProfileListResponse{CommandResult: ok, ProfileList: profileList(u.profiles)}
	case *mdm.InstallProfile:
		return installProfile(&u.profiles, ok, c.Payload)
	case *mdm.RemoveProfile:
		return removeProfile(u.profiles, ok, c.Identifier)
	}
	return errorResult(ok, 12021, "MCMDMErrorDomain", "Unsupported command on the user channel: "+p.Command.RequestType())
}
