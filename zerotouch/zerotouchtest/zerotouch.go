package zerotouchtest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	dp "google.golang.org/api/androiddeviceprovisioning/v1"
)

// The zero-touch customer API: one customer (company) with the devices a
// reseller has claimed for it, its configurations, and Android Device
// Policy as its DPC.

// AndroidDevicePolicyDPC is the DPC resource the fake lists.
const AndroidDevicePolicyDPC = "customers/%s/dpcs/com.google.android.apps.work.clouddpc"

type zeroTouch struct {
	customer string // customers/ID
	configs  map[string]*dp.Configuration
	devices  map[string]*dp.Device // by name
	nextID   int64
}

func newZeroTouch() *zeroTouch {
	return &zeroTouch{customer: "customers/1234567", configs: map[string]*dp.Configuration{}, devices: map[string]*dp.Device{}}
}

// Customer returns the zero-touch customer's name.
func (s *Server) Customer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zt.customer
}

// ClaimDevice registers a device with the customer, as a reseller does when
// the company buys it, and returns its zero-touch device name.
func (s *Server) ClaimDevice(info DeviceInfo) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zt
	z.nextID++
	d := &dp.Device{
		DeviceId: z.nextID, Name: fmt.Sprintf("%s/devices/%d", z.customer, z.nextID),
		DeviceIdentifier: &dp.DeviceIdentifier{Imei: info.IMEI, SerialNumber: info.Serial, Manufacturer: orDefault(info.Manufacturer, "Google"),
			Model: orDefault(info.Model, "Pixel 8"), DeviceType: "DEVICE_TYPE_ANDROID"},
		Claims: []*dp.DeviceClaim{{OwnerCompanyId: 1234567, ResellerId: 42, SectionType: "SECTION_TYPE_ZERO_TOUCH"}},
	}
	z.devices[d.Name] = d
	return d.Name
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// ZeroTouchDevice returns a claimed device by IMEI or serial number, for
// tests.
func (s *Server) ZeroTouchDevice(imei, serial string) *dp.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.zt.find(&dp.DeviceIdentifier{Imei: imei, SerialNumber: serial}); d != nil {
		c := *d
		return &c
	}
	return nil
}

func (z *zeroTouch) find(id *dp.DeviceIdentifier) *dp.Device {
	for _, d := range z.devices {
		di := d.DeviceIdentifier
		if id.Imei != "" && di.Imei == id.Imei || id.SerialNumber != "" && di.SerialNumber == id.SerialNumber &&
			(id.Manufacturer == "" || strings.EqualFold(id.Manufacturer, di.Manufacturer)) {
			return d
		}
	}
	return nil
}

// Boot is a claimed device's first boot: it finds its zero-touch
// configuration, reads the enrollment token from the configuration's DPC
// extras, and enrols without anyone scanning anything. A device with no
// configuration boots unmanaged (an error).
func (s *Server) Boot(info DeviceInfo) (*Device, error) {
	s.mu.Lock()
	d := s.zt.find(&dp.DeviceIdentifier{Imei: info.IMEI, SerialNumber: info.Serial})
	var cfg *dp.Configuration
	if d != nil && d.Configuration != "" {
		cfg = s.zt.configs[d.Configuration]
	}
	s.mu.Unlock()
	if cfg == nil {
		return nil, errors.New("zerotouchtest: no zero-touch configuration for this device; it boots unmanaged")
	}
	var extras struct {
		Bundle map[string]string `json:"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"`
	}
	if err := json.Unmarshal([]byte(cfg.DpcExtras), &extras); err != nil {
		return nil, fmt.Errorf("zerotouchtest: the configuration's dpcExtras are not JSON: %w", err)
	}
	return s.enrol(extras.Bundle["com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN"], info, false)
}

// serveZeroTouch answers the zero-touch customer API (path without "v1/").
func (s *Server) serveZeroTouch(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	z := s.zt
	if path == "customers" && r.Method == http.MethodGet {
		writeJSON(w, dp.CustomerListCustomersResponse{Customers: []*dp.Company{{Name: z.customer, CompanyId: 1234567, CompanyName: "Example Org"}}})
		return
	}
	rest, ok := strings.CutPrefix(path, z.customer+"/")
	if !ok {
		googleError(w, 403, "PERMISSION_DENIED", "The caller does not have permission")
		return
	}
	switch {
	case rest == "dpcs" && r.Method == http.MethodGet:
		writeJSON(w, dp.CustomerListDpcsResponse{Dpcs: []*dp.Dpc{{
			Name: fmt.Sprintf(AndroidDevicePolicyDPC, strings.TrimPrefix(z.customer, "customers/")), DpcName: "Android Device Policy",
			PackageName: "com.google.android.apps.work.clouddpc"}}})
	case rest == "configurations" && r.Method == http.MethodPost:
		var c dp.Configuration
		if json.Unmarshal(body, &c) != nil || c.ConfigurationName == "" || c.DpcResourcePath == "" || c.CompanyName == "" {
			googleError(w, 400, "INVALID_ARGUMENT", "configurationName, companyName and dpcResourcePath are required")
			return
		}
		if c.DpcExtras != "" && !json.Valid([]byte(c.DpcExtras)) {
			googleError(w, 400, "INVALID_ARGUMENT", "dpcExtras must be a JSON string")
			return
		}
		z.nextID++
		c.ConfigurationId = z.nextID
		c.Name = fmt.Sprintf("%s/configurations/%d", z.customer, z.nextID)
		z.configs[c.Name] = &c
		writeJSON(w, c)
	case rest == "configurations" && r.Method == http.MethodGet:
		resp := dp.CustomerListConfigurationsResponse{}
		for _, c := range z.configs {
			resp.Configurations = append(resp.Configurations, c)
		}
		sort.Slice(resp.Configurations, func(i, j int) bool { return resp.Configurations[i].Name < resp.Configurations[j].Name })
		writeJSON(w, resp)
	case strings.HasPrefix(rest, "configurations/"):
		c := z.configs[path]
		if c == nil {
			googleError(w, 404, "NOT_FOUND", "Configuration not found.")
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, c)
		case http.MethodPatch:
			var in map[string]json.RawMessage
			if json.Unmarshal(body, &in) != nil {
				googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
				return
			}
			merged, _ := json.Marshal(c)
			var cur map[string]json.RawMessage
			json.Unmarshal(merged, &cur)
			mask := r.URL.Query().Get("updateMask")
			for k, v := range in {
				if mask == "" || strings.Contains(","+mask+",", ","+k+",") {
					cur[k] = v
				}
			}
			next, _ := json.Marshal(cur)
			var nc dp.Configuration
			json.Unmarshal(next, &nc)
			nc.Name, nc.ConfigurationId = c.Name, c.ConfigurationId
			z.configs[path] = &nc
			writeJSON(w, nc)
		case http.MethodDelete:
			delete(z.configs, path)
			writeJSON(w, struct{}{})
		}
	case rest == "devices" && r.Method == http.MethodGet:
		names := make([]string, 0, len(z.devices))
		for n := range z.devices {
			names = append(names, n)
		}
		sort.Strings(names)
		size := 100
		if v, err := strconv.Atoi(r.URL.Query().Get("pageSize")); err == nil && v > 0 {
			size = min(v, 100)
		}
		start := 0
		if tok := r.URL.Query().Get("pageToken"); tok != "" {
			b, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				googleError(w, 400, "INVALID_ARGUMENT", "Invalid page token.")
				return
			}
			start = sort.SearchStrings(names, string(b))
		}
		resp := dp.CustomerListDevicesResponse{}
		for _, n := range names[start:min(start+size, len(names))] {
			resp.Devices = append(resp.Devices, z.devices[n])
		}
		if start+size < len(names) {
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(names[start+size]))
		}
		writeJSON(w, resp)
	case (rest == "devices:applyConfiguration" || rest == "devices:removeConfiguration") && r.Method == http.MethodPost:
		var req struct {
			Configuration string              `json:"configuration"`
			Device        *dp.DeviceReference `json:"device"`
		}
		if json.Unmarshal(body, &req) != nil || req.Device == nil {
			googleError(w, 400, "INVALID_ARGUMENT", "device is required")
			return
		}
		var d *dp.Device
		if req.Device.DeviceId != 0 {
			d = z.devices[fmt.Sprintf("%s/devices/%d", z.customer, req.Device.DeviceId)]
		} else if req.Device.DeviceIdentifier != nil {
			d = z.find(req.Device.DeviceIdentifier)
		}
		if d == nil {
			googleError(w, 404, "NOT_FOUND", "Device not found.")
			return
		}
		if rest == "devices:removeConfiguration" {
			d.Configuration = ""
		} else {
			if z.configs[req.Configuration] == nil {
				googleError(w, 400, "INVALID_ARGUMENT", "Configuration not found.")
				return
			}
			d.Configuration = req.Configuration
		}
		writeJSON(w, struct{}{})
	default:
		googleError(w, 404, "NOT_FOUND", "unknown path "+path)
	}
}
