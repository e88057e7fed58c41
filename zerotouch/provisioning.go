package zerotouch

import (
	"context"
	"encoding/json"
	"fmt"

	dp "google.golang.org/api/androiddeviceprovisioning/v1"
	"google.golang.org/api/option"
)

// ProvisioningScope is the OAuth scope of the zero-touch customer API, as
// Google's customer-API guide gives it (the discovery document lists
// none).
const ProvisioningScope = "https://www.googleapis.com/auth/androidworkzerotouchemm"

// CloudDPCPackage is Android Device Policy's package: the DPC of devices
// managed through the Android Management API.
const CloudDPCPackage = "com.google.android.apps.work.clouddpc"

// A Provisioning calls the zero-touch customer API for one customer
// ("customers/ID"): configurations that make claimed devices enrol at
// first boot, and the customer's devices.
type Provisioning struct {
	svc      *dp.Service
	customer string
	retry    retryPolicy
}

// NewProvisioning returns a client for a customer (empty until one is
// chosen from Customers).
func NewProvisioning(ctx context.Context, customer string, opts ...option.ClientOption) (*Provisioning, error) {
	svc, err := dp.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("zerotouch: zero-touch client: %w", err)
	}
	return &Provisioning{svc: svc, customer: customer, retry: defaultRetry}, nil
}

// SetCustomer chooses the customer.
func (p *Provisioning) SetCustomer(name string) { p.customer = name }

// Customers lists the customers the credentials may act for.
func (p *Provisioning) Customers(ctx context.Context) ([]*dp.Company, error) {
	var out []*dp.Company
	token := ""
	for {
		resp, err := call(ctx, p.retry, func() (*dp.CustomerListCustomersResponse, error) {
			c := p.svc.Customers.List().Context(ctx)
			if token != "" {
				c = c.PageToken(token)
			}
			return c.Do()
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Customers...)
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// DPCs lists the DPCs a configuration may name.
func (p *Provisioning) DPCs(ctx context.Context) ([]*dp.Dpc, error) {
	resp, err := call(ctx, p.retry, func() (*dp.CustomerListDpcsResponse, error) {
		return p.svc.Customers.Dpcs.List(p.customer).Context(ctx).Do()
	})
	if err != nil {
		return nil, err
	}
	return resp.Dpcs, nil
}

// AndroidDevicePolicy returns the resource name of Android Device Policy
// among the customer's DPCs.
func (p *Provisioning) AndroidDevicePolicy(ctx context.Context) (string, error) {
	dpcs, err := p.DPCs(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range dpcs {
		if d.PackageName == CloudDPCPackage {
			return d.Name, nil
		}
	}
	return "", fmt.Errorf("%w: Android Device Policy is not among the customer's DPCs", ErrNotFound)
}

// DPCExtras is the dpcExtras JSON of a configuration that enrols devices
// with an enrollment token.
func DPCExtras(tokenValue string) string {
	b, _ := json.Marshal(map[string]any{
		"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE": map[string]string{ExtraEnrollmentToken: tokenValue},
	})
	return string(b)
}

// A ConfigSpec describes a zero-touch configuration.
type ConfigSpec struct {
	Name         string // configurationName, shown in the portal
	Company      string // shown to the user at setup
	ContactEmail string
	ContactPhone string
	Message      string // customMessage
	TokenValue   string // the enrollment token devices enrol with
	Default      bool   // applied to newly claimed devices
}

func (s ConfigSpec) configuration(dpc string) *dp.Configuration {
	return &dp.Configuration{
		ConfigurationName: s.Name, CompanyName: s.Company, ContactEmail: s.ContactEmail, ContactPhone: s.ContactPhone,
		CustomMessage: s.Message, DpcResourcePath: dpc, DpcExtras: DPCExtras(s.TokenValue), IsDefault: s.Default,
		ForceSendFields: []string{"IsDefault"},
	}
}

// CreateConfiguration creates a configuration naming Android Device
// Policy with the token in its DPC extras.
func (p *Provisioning) CreateConfiguration(ctx context.Context, s ConfigSpec) (*dp.Configuration, error) {
	dpc, err := p.AndroidDevicePolicy(ctx)
	if err != nil {
		return nil, err
	}
	return call(ctx, p.retry, func() (*dp.Configuration, error) {
		return p.svc.Customers.Configurations.Create(p.customer, s.configuration(dpc)).Context(ctx).Do()
	})
}

// UpdateConfiguration replaces a configuration's fields (a new token, a
// new message).
func (p *Provisioning) UpdateConfiguration(ctx context.Context, name string, s ConfigSpec) (*dp.Configuration, error) {
	dpc, err := p.AndroidDevicePolicy(ctx)
	if err != nil {
		return nil, err
	}
	mask := "configurationName,companyName,contactEmail,contactPhone,customMessage,dpcResourcePath,dpcExtras,isDefault"
	return call(ctx, p.retry, func() (*dp.Configuration, error) {
		return p.svc.Customers.Configurations.Patch(name, s.configuration(dpc)).UpdateMask(mask).Context(ctx).Do()
	})
}

// Configurations lists the customer's configurations.
func (p *Provisioning) Configurations(ctx context.Context) ([]*dp.Configuration, error) {
	resp, err := call(ctx, p.retry, func() (*dp.CustomerListConfigurationsResponse, error) {
		return p.svc.Customers.Configurations.List(p.customer).Context(ctx).Do()
	})
	if err != nil {
		return nil, err
	}
	return resp.Configurations, nil
}

// Devices calls fn for each device claimed for the customer, page by page,
// until it returns false.
func (p *Provisioning) Devices(ctx context.Context, fn func(*dp.Device) bool) error {
	token := ""
	for {
		resp, err := call(ctx, p.retry, func() (*dp.CustomerListDevicesResponse, error) {
			c := p.svc.Customers.Devices.List(p.customer).PageSize(100).Context(ctx)
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
		if token = resp.NextPageToken; token == "" {
			return nil
		}
	}
}

// A DeviceID names a claimed device by IMEI or by serial number (with its
// manufacturer, which zero-touch needs to tell serials apart).
type DeviceID struct {
	IMEI         string
	Serial       string
	Manufacturer string
}

func (id DeviceID) reference() (*dp.DeviceReference, error) {
	switch {
	case id.IMEI != "":
		return &dp.DeviceReference{DeviceIdentifier: &dp.DeviceIdentifier{Imei: id.IMEI, DeviceType: "DEVICE_TYPE_ANDROID"}}, nil
	case id.Serial != "":
		return &dp.DeviceReference{DeviceIdentifier: &dp.DeviceIdentifier{SerialNumber: id.Serial, Manufacturer: id.Manufacturer,
			DeviceType: "DEVICE_TYPE_ANDROID"}}, nil
	}
	return nil, fmt.Errorf("%w: a device needs an IMEI or a serial number", ErrInvalid)
}

// Apply applies a configuration to a claimed device.
func (p *Provisioning) Apply(ctx context.Context, configuration string, id DeviceID) error {
	ref, err := id.reference()
	if err != nil {
		return err
	}
	_, err = call(ctx, p.retry, func() (*dp.Empty, error) {
		return p.svc.Customers.Devices.ApplyConfiguration(p.customer, &dp.CustomerApplyConfigurationRequest{
			Configuration: configuration, Device: ref}).Context(ctx).Do()
	})
	return err
}

// Remove removes the configuration of a claimed device.
func (p *Provisioning) Remove(ctx context.Context, id DeviceID) error {
	ref, err := id.reference()
	if err != nil {
		return err
	}
	_, err = call(ctx, p.retry, func() (*dp.Empty, error) {
		return p.svc.Customers.Devices.RemoveConfiguration(p.customer, &dp.CustomerRemoveConfigurationRequest{Device: ref}).Context(ctx).Do()
	})
	return err
}
