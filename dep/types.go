package dep

import "time"

// OAuth1Tokens is an ADE server token: the OAuth 1.0a credentials Apple
// Business Manager issues to an MDM server, as the JSON inside its .p7m.
type OAuth1Tokens struct {
	ConsumerKey       string    `json:"consumer_key"`
	ConsumerSecret    string    `json:"consumer_secret"`
	AccessToken       string    `json:"access_token"`
	AccessSecret      string    `json:"access_secret"`
	AccessTokenExpiry time.Time `json:"access_token_expiry"`
}

// Valid reports whether every credential is present.
func (t *OAuth1Tokens) Valid() bool {
	return t.ConsumerKey != "" && t.ConsumerSecret != "" && t.AccessToken != "" && t.AccessSecret != ""
}

// An Account describes the MDM server a token belongs to (GET /account).
type Account struct {
	ServerName    string       `json:"server_name"`
	ServerUUID    string       `json:"server_uuid"`
	AdminID       string       `json:"admin_id"`
	FacilitatorID string       `json:"facilitator_id,omitempty"`
	OrgName       string       `json:"org_name"`
	OrgEmail      string       `json:"org_email"`
	OrgPhone      string       `json:"org_phone"`
	OrgAddress    string       `json:"org_address"`
	OrgID         string       `json:"org_id,omitempty"`
	OrgIDHash     string       `json:"org_id_hash,omitempty"`
	OrgType       string       `json:"org_type,omitempty"`
	OrgVersion    string       `json:"org_version,omitempty"`
	URLs          []AccountURL `json:"urls,omitempty"`
}

// An AccountURL is an endpoint the account may call, with its methods.
type AccountURL struct {
	URI        string   `json:"uri"`
	HTTPMethod []string `json:"http_method"`
	Limit      *struct {
		Default int `json:"default"`
		Maximum int `json:"maximum"`
	} `json:"limit,omitempty"`
}

// Operation types of a synced device.
const (
	OpAdded    = "added"
	OpModified = "modified"
	OpDeleted  = "deleted"
)

// Profile statuses of a device.
const (
	ProfileEmpty    = "empty"
	ProfileAssigned = "assigned"
	ProfilePushed   = "pushed"
	ProfileRemoved  = "removed"
)

// A Device is a device assigned to the MDM server in Apple Business
// Manager, as fetch, sync and details return it.
type Device struct {
	SerialNumber       string    `json:"serial_number"`
	Model              string    `json:"model,omitempty"`
	Description        string    `json:"description,omitempty"`
	Color              string    `json:"color,omitempty"`
	AssetTag           string    `json:"asset_tag,omitempty"`
	ProfileStatus      string    `json:"profile_status,omitempty"`
	ProfileUUID        string    `json:"profile_uuid,omitempty"`
	ProfileAssignTime  time.Time `json:"profile_assign_time,omitzero"`
	ProfilePushTime    time.Time `json:"profile_push_time,omitzero"`
	DeviceAssignedDate time.Time `json:"device_assigned_date,omitzero"`
	DeviceAssignedBy   string    `json:"device_assigned_by,omitempty"`
	OS                 string    `json:"os,omitempty"`
	DeviceFamily       string    `json:"device_family,omitempty"`
	// OpType and OpDate are set by sync: added, modified or deleted.
	OpType string    `json:"op_type,omitempty"`
	OpDate time.Time `json:"op_date,omitzero"`
	// ResponseStatus is set by device details for a serial it cannot
	// return (NOT_ACCESSIBLE).
	ResponseStatus string `json:"response_status,omitempty"`
}

// A DeviceList is one page of fetched or synced devices.
type DeviceList struct {
	Devices      []Device  `json:"devices"`
	Cursor       string    `json:"cursor"`
	MoreToFollow bool      `json:"more_to_follow"`
	FetchedUntil time.Time `json:"fetched_until,omitzero"`
}

// Per-serial results of profile assignment and disowning.
const (
	ResultSuccess       = "SUCCESS"
	ResultNotAccessible = "NOT_ACCESSIBLE"
	ResultFailed        = "FAILED"
)

// A Profile is an ADE enrollment profile: what Setup Assistant shows and
// where the device enrols (URL).
type Profile struct {
	ProfileName           string   `json:"profile_name"`
	URL                   string   `json:"url"`
	AllowPairing          bool     `json:"allow_pairing"`
	IsSupervised          bool     `json:"is_supervised"`
	IsMultiUser           bool     `json:"is_multi_user"`
	IsMandatory           bool     `json:"is_mandatory"`
	AwaitDeviceConfigured bool     `json:"await_device_configured"`
	IsMDMRemovable        bool     `json:"is_mdm_removable"`
	AutoAdvanceSetup      bool     `json:"auto_advance_setup"`
	SupportPhoneNumber    string   `json:"support_phone_number,omitempty"`
	SupportEmailAddress   string   `json:"support_email_address,omitempty"`
	OrgMagic              string   `json:"org_magic,omitempty"`
	AnchorCerts           []string `json:"anchor_certs,omitempty"`
	SupervisingHostCerts  []string `json:"supervising_host_certs,omitempty"`
	SkipSetupItems        []string `json:"skip_setup_items,omitempty"`
	Department            string   `json:"department,omitempty"`
	Language              string   `json:"language,omitempty"`
	Region                string   `json:"region,omitempty"`
	ConfigurationWebURL   string   `json:"configuration_web_url,omitempty"`
	// Devices are serial numbers to assign the profile to as it is
	// defined.
	Devices []string `json:"devices,omitempty"`
	// ProfileUUID is set in what GET /profile returns.
	ProfileUUID string `json:"profile_uuid,omitempty"`
}

// A ProfileResult is what defining or assigning a profile returns.
type ProfileResult struct {
	ProfileUUID string            `json:"profile_uuid"`
	Devices     map[string]string `json:"devices"` // serial → SUCCESS, NOT_ACCESSIBLE or FAILED
}
