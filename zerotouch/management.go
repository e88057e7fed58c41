package zerotouch

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"
)

// ManagementScope is the OAuth scope of the Android Management API.
const ManagementScope = am.AndroidmanagementScope

// A Management calls the Android Management API for one enterprise
// ("enterprises/LC..."), through Google's generated client. Every call
// retries 429 and 503 answers with backoff, and returns Google's errors as
// *Error (errors.Is with ErrNotFound, ErrPermission...).
type Management struct {
	svc        *am.Service
	enterprise string
	retry      retryPolicy
}

// NewManagement returns a client for an enterprise (empty until Bind or
// CreateEnterprise names one). opts are the google.golang.org/api options:
// service-account credentials (option.WithCredentialsFile) in production,
// option.WithEndpoint and option.WithoutAuthentication against a fake.
func NewManagement(ctx context.Context, enterprise string, opts ...option.ClientOption) (*Management, error) {
	svc, err := am.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("zerotouch: android management client: %w", err)
	}
	return &Management{svc: svc, enterprise: enterprise, retry: defaultRetry}, nil
}

// Enterprise returns the name of the enterprise the client manages.
func (m *Management) EnterpriseName() string { return m.enterprise }

// SignupURL starts binding a new enterprise: the returned URL is where an
// administrator signs up; Google then redirects to callbackURL with an
// enterpriseToken for CreateEnterprise.
func (m *Management) SignupURL(ctx context.Context, projectID, callbackURL, adminEmail string) (*am.SignupUrl, error) {
	return call(ctx, m.retry, func() (*am.SignupUrl, error) {
		c := m.svc.SignupUrls.Create().ProjectId(projectID).CallbackUrl(callbackURL).Context(ctx)
		if adminEmail != "" {
			c = c.AdminEmail(adminEmail)
		}
		return c.Do()
	})
}

// CreateEnterprise completes the signup: it creates the enterprise from
// the signup URL's name and the token Google passed to the callback, and
// binds the client to it.
func (m *Management) CreateEnterprise(ctx context.Context, projectID, signupURLName, enterpriseToken string, e *am.Enterprise) (*am.Enterprise, error) {
	out, err := call(ctx, m.retry, func() (*am.Enterprise, error) {
		return m.svc.Enterprises.Create(e).ProjectId(projectID).SignupUrlName(signupURLName).
			EnterpriseToken(enterpriseToken).Context(ctx).Do()
	})
	if err == nil {
		m.enterprise = out.Name
	}
	return out, err
}

// GetEnterprise returns the bound enterprise.
func (m *Management) GetEnterprise(ctx context.Context) (*am.Enterprise, error) {
	return call(ctx, m.retry, func() (*am.Enterprise, error) {
		return m.svc.Enterprises.Get(m.enterprise).Context(ctx).Do()
	})
}

// PolicyName is the resource name of one of the enterprise's policies.
func (m *Management) PolicyName(id string) string { return m.enterprise + "/policies/" + id }

// PutPolicy creates or replaces a policy by id (enterprises.policies.patch
// without an update mask replaces the whole policy).
func (m *Management) PutPolicy(ctx context.Context, id string, p *am.Policy) (*am.Policy, error) {
	return call(ctx, m.retry, func() (*am.Policy, error) {
		return m.svc.Enterprises.Policies.Patch(m.PolicyName(id), p).Context(ctx).Do()
	})
}

// GetPolicy returns a policy by id.
func (m *Management) GetPolicy(ctx context.Context, id string) (*am.Policy, error) {
	return call(ctx, m.retry, func() (*am.Policy, error) {
		return m.svc.Enterprises.Policies.Get(m.PolicyName(id)).Context(ctx).Do()
	})
}

// Personal usage of a device enrolled with a token.
const (
	PersonalUsageAllowed    = "PERSONAL_USAGE_ALLOWED"    // a work profile on a personal device
	PersonalUsageDisallowed = "PERSONAL_USAGE_DISALLOWED" // a fully managed, company-owned device
)

// A TokenSpec says what enrollment token to create.
type TokenSpec struct {
	PolicyID string        // the policy enrolled devices get
	Duration time.Duration // how long the token is valid (Google's default, an hour, when zero)
	OneTime  bool          // one device only
	// PersonalUsage is PersonalUsageAllowed or PersonalUsageDisallowed.
	PersonalUsage string
	// AdditionalData comes back on the enrolled device
	// (enrollmentTokenData): our record's id.
	AdditionalData string
	// UserAccount, when set, is the managed user the device is for.
	UserAccount string
}

// CreateToken creates an enrollment token.
func (m *Management) CreateToken(ctx context.Context, s TokenSpec) (*am.EnrollmentToken, error) {
	t := &am.EnrollmentToken{
		PolicyName: m.PolicyName(s.PolicyID), OneTimeOnly: s.OneTime, AllowPersonalUsage: s.PersonalUsage,
		AdditionalData: s.AdditionalData,
		// A false oneTimeOnly is the default, but sent so that the request
		// says what we mean.
		ForceSendFields: []string{"OneTimeOnly"},
	}
	if s.Duration > 0 {
		t.Duration = fmt.Sprintf("%ds", int64(s.Duration/time.Second))
	}
	if s.UserAccount != "" {
		t.User = &am.User{AccountIdentifier: s.UserAccount}
	}
	return call(ctx, m.retry, func() (*am.EnrollmentToken, error) {
		return m.svc.Enterprises.EnrollmentTokens.Create(m.enterprise, t).Context(ctx).Do()
	})
}

// DeleteToken invalidates an enrollment token by name.
func (m *Management) DeleteToken(ctx context.Context, name string) error {
	_, err := call(ctx, m.retry, func() (*am.Empty, error) {
		return m.svc.Enterprises.EnrollmentTokens.Delete(name).Context(ctx).Do()
	})
	return err
}

// Devices calls fn with every device of the enterprise, page by page,
// until fn returns false.
func (m *Management) Devices(ctx context.Context, pageSize int, fn func(*am.Device) bool) error {
	token := ""
	for {
		resp, err := call(ctx, m.retry, func() (*am.ListDevicesResponse, error) {
			c := m.svc.Enterprises.Devices.List(m.enterprise).Context(ctx)
			if pageSize > 0 {
				c = c.PageSize(int64(pageSize))
			}
			if token != "" {
				c = c.PageToken(token)
			}
			return c.Do()
		})
		if err != nil {
			return err
		}
		for _, d := range resp.Devices {
			if !fn(d) {
				return nil
			}
		}
		if resp.NextPageToken == "" {
			return nil
		}
		token = resp.NextPageToken
	}
}

// Device returns a device by name.
func (m *Management) Device(ctx context.Context, name string) (*am.Device, error) {
	return call(ctx, m.retry, func() (*am.Device, error) {
		return m.svc.Enterprises.Devices.Get(name).Context(ctx).Do()
	})
}

// IssueCommand sends a command (LOCK, RESET_PASSWORD, REBOOT,
// START_LOST_MODE...) to a device and returns the operation that tracks
// it.
func (m *Management) IssueCommand(ctx context.Context, device string, c *am.Command) (*am.Operation, error) {
	return call(ctx, m.retry, func() (*am.Operation, error) {
		return m.svc.Enterprises.Devices.IssueCommand(device, c).Context(ctx).Do()
	})
}

// SetDevicePolicy makes a device apply another policy of the enterprise
// (by id), patching only its policyName.
func (m *Management) SetDevicePolicy(ctx context.Context, device, policyID string) (*am.Device, error) {
	return call(ctx, m.retry, func() (*am.Device, error) {
		return m.svc.Enterprises.Devices.Patch(device, &am.Device{PolicyName: m.PolicyName(policyID)}).
			UpdateMask("policyName").Context(ctx).Do()
	})
}

// Operation returns a command's operation by name.
func (m *Management) Operation(ctx context.Context, name string) (*am.Operation, error) {
	return call(ctx, m.retry, func() (*am.Operation, error) {
		return m.svc.Enterprises.Devices.Operations.Get(name).Context(ctx).Do()
	})
}

// Wipe data flags of DeleteDevice.
const (
	WipePreserveResetProtection = "PRESERVE_RESET_PROTECTION_DATA"
	WipeExternalStorage         = "WIPE_EXTERNAL_STORAGE"
	WipeESIMs                   = "WIPE_ESIMS"
)

// DeleteDevice deletes a device: a company-owned device is factory reset
// (with flags), a personal one loses its work profile. reason is shown to
// the user.
func (m *Management) DeleteDevice(ctx context.Context, name string, flags []string, reason string) error {
	_, err := call(ctx, m.retry, func() (*am.Empty, error) {
		c := m.svc.Enterprises.Devices.Delete(name).Context(ctx)
		if len(flags) > 0 {
			c = c.WipeDataFlags(flags...)
		}
		if reason != "" {
			c = c.WipeReasonMessage(reason)
		}
		return c.Do()
	})
	return err
}

// CloudDPC provisioning: the admin app that Android Enterprise devices
// managed through the Android Management API install at setup.
const (
	CloudDPCComponent         = "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver"
	CloudDPCSignatureChecksum = "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg"
	CloudDPCDownloadLocation  = "https://play.google.com/managed/downloadManagingApp?identifier=setup"
	ExtraEnrollmentToken      = "com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN"
	enrollLinkBase            = "https://enterprise.google.com/android/enroll?et="
)

// QRPayload returns the provisioning JSON a device scans at setup (six
// taps on the welcome screen): CloudDPC's component, signature checksum
// and download location, and the enrollment token in the admin extras.
func QRPayload(tokenValue string) []byte {
	b, _ := json.Marshal(map[string]any{
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME":            CloudDPCComponent,
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM":        CloudDPCSignatureChecksum,
		"android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": CloudDPCDownloadLocation,
		"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE":                    map[string]string{ExtraEnrollmentToken: tokenValue},
	})
	return b
}

// EnrollmentLink returns the link that enrols a personal device (a work
// profile) with a token.
func EnrollmentLink(tokenValue string) string { return enrollLinkBase + tokenValue }

// TokenFromQR reads the enrollment token out of a provisioning JSON, as a
// device does.
func TokenFromQR(payload []byte) (string, error) {
	var p struct {
		Component string            `json:"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME"`
		Extras    map[string]string `json:"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", fmt.Errorf("zerotouch: provisioning JSON: %w", err)
	}
	if p.Component != CloudDPCComponent || p.Extras[ExtraEnrollmentToken] == "" {
		return "", fmt.Errorf("zerotouch: provisioning JSON without CloudDPC or an enrollment token")
	}
	return p.Extras[ExtraEnrollmentToken], nil
}
