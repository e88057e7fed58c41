package zerotouch

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dp "google.golang.org/api/androiddeviceprovisioning/v1"
	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

func newClients(t *testing.T) (*zerotouchtest.Server, *Management, *Provisioning) {
	t.Helper()
	fake := zerotouchtest.New()
	t.Cleanup(fake.Close)
	ctx := context.Background()
	opts := []option.ClientOption{option.WithEndpoint(fake.URL + "/"), option.WithoutAuthentication()}
	m, err := NewManagement(ctx, "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProvisioning(ctx, "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	fast := retryPolicy{attempts: 4, base: time.Millisecond, max: 10 * time.Millisecond}
	m.retry, p.retry = fast, fast
	return fake, m, p
}

func TestManagementLifecycle(t *testing.T) {
	fake, m, _ := newClients(t)
	ctx := context.Background()
	su, err := m.SignupURL(ctx, "custody-test", "https://mdm.example.com/android/callback", "")
	if err != nil || su.Name == "" || su.Url == "" {
		t.Fatalf("SignupURL = %+v, %v", su, err)
	}
	ent, err := m.CreateEnterprise(ctx, "custody-test", su.Name, fake.CompleteSignup(su.Name), &am.Enterprise{EnterpriseDisplayName: "Example"})
	if err != nil || !strings.HasPrefix(ent.Name, "enterprises/") || m.EnterpriseName() != ent.Name {
		t.Fatalf("CreateEnterprise = %+v, %v", ent, err)
	}
	if _, err := m.PutPolicy(ctx, "corporate", &am.Policy{CameraDisabled: true, PasswordRequirements: &am.PasswordRequirements{PasswordMinimumLength: 6, PasswordQuality: "NUMERIC"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.CreateToken(ctx, TokenSpec{PolicyID: "corporate", Duration: 24 * time.Hour, OneTime: true,
		PersonalUsage: PersonalUsageDisallowed, AdditionalData: "record:SN1"})
	if err != nil || tok.Value == "" || tok.PolicyName != m.PolicyName("corporate") {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	qr := QRPayload(tok.Value)
	if v, err := TokenFromQR(qr); err != nil || v != tok.Value {
		t.Fatalf("TokenFromQR = %q, %v", v, err)
	}
	dev, err := fake.ScanQR(qr, zerotouchtest.DeviceInfo{Serial: "SN1", IMEI: "490154203237518"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fake.ScanQR(qr, zerotouchtest.DeviceInfo{Serial: "SN2"}); err == nil {
		t.Error("a one-time token enrolled a second device")
	}
	var listed []*am.Device
	if err := m.Devices(ctx, 0, func(d *am.Device) bool { listed = append(listed, d); return true }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].EnrollmentTokenData != "record:SN1" || listed[0].HardwareInfo.SerialNumber != "SN1" ||
		listed[0].Ownership != "COMPANY_OWNED" || listed[0].NetworkInfo.Imei != "490154203237518" {
		t.Fatalf("devices %+v", listed)
	}
	op, err := m.IssueCommand(ctx, dev.Name, &am.Command{Type: "LOCK"})
	if err != nil || op.Done {
		t.Fatalf("IssueCommand = %+v, %v", op, err)
	}
	if ran, err := dev.Poll(); err != nil || len(ran) != 1 || !dev.Locked() {
		t.Fatalf("Poll = %v, %v", ran, err)
	}
	if op, err := m.Operation(ctx, op.Name); err != nil || !op.Done || op.Error != nil {
		t.Errorf("operation after the device ran it: %+v, %v", op, err)
	}
	if err := m.DeleteDevice(ctx, dev.Name, []string{WipeExternalStorage}, "lost"); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Poll(); !errors.Is(err, zerotouchtest.ErrWiped) || !dev.Wiped() {
		t.Errorf("deleted device: %v, wiped %v", err, dev.Wiped())
	}
	if flags, reason := dev.WipeFlags(); len(flags) != 1 || flags[0] != WipeExternalStorage || reason != "lost" {
		t.Errorf("wipe flags %v %q", flags, reason)
	}
	if _, err := m.Device(ctx, dev.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device after delete: %v, want ErrNotFound", err)
	}
	// 429 and 503 are retried; other refusals are typed.
	fake.Inject(zerotouchtest.Fault{Path: "/policies/", Times: 2, Status: 429})
	if _, err := m.GetPolicy(ctx, "corporate"); err != nil {
		t.Errorf("GetPolicy through two 429s: %v", err)
	}
	fake.Inject(zerotouchtest.Fault{Path: "/policies/", Times: 10, Status: 503})
	if _, err := m.GetPolicy(ctx, "corporate"); !isStatus(err, 503, "UNAVAILABLE") {
		t.Errorf("GetPolicy through a 503 storm: %v", err)
	}
	// A 500 that says "not found" is the 404 it means; another 500 is not.
	fake.Inject(zerotouchtest.Fault{Path: "/devices/", Times: 1, Status: 500, Message: "Device not found."})
	if _, err := m.Device(ctx, ent.Name+"/devices/gone"); !errors.Is(err, ErrNotFound) || !isStatus(err, 404, "NOT_FOUND") {
		t.Errorf("500 Device not found: %v, want ErrNotFound", err)
	}
	fake.Inject(zerotouchtest.Fault{Path: "/enrollmentTokens", Times: 1, Status: 500, Message: "Internal error."})
	if _, err := m.CreateToken(ctx, TokenSpec{PolicyID: "corporate"}); errors.Is(err, ErrNotFound) || !isStatus(err, 500, "INTERNAL") {
		t.Errorf("a plain 500: %v", err)
	}
	if _, err := m.CreateToken(ctx, TokenSpec{PolicyID: "nope"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a token for an unknown policy: %v, want ErrInvalid", err)
	}
}

func isStatus(err error, code int, status string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code && e.Status == status
}

func TestZeroTouch(t *testing.T) {
	fake, m, p := newClients(t)
	ctx := context.Background()
	m.enterprise = fake.AddEnterprise("Example")
	m.PutPolicy(ctx, "fleet", &am.Policy{})
	customers, err := p.Customers(ctx)
	if err != nil || len(customers) != 1 {
		t.Fatalf("Customers = %v, %v", customers, err)
	}
	p.SetCustomer(customers[0].Name)
	tok, err := m.CreateToken(ctx, TokenSpec{PolicyID: "fleet", Duration: 365 * 24 * time.Hour, PersonalUsage: PersonalUsageDisallowed, AdditionalData: "zero-touch"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := p.CreateConfiguration(ctx, ConfigSpec{Name: "Fleet", Company: "Example Org", ContactEmail: "it@example.com", TokenValue: tok.Value})
	if err != nil || cfg.Name == "" || !strings.HasSuffix(cfg.DpcResourcePath, "/dpcs/"+CloudDPCPackage) {
		t.Fatalf("CreateConfiguration = %+v, %v", cfg, err)
	}
	var extras map[string]map[string]string
	if json.Unmarshal([]byte(cfg.DpcExtras), &extras) != nil || extras["android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"][ExtraEnrollmentToken] != tok.Value {
		t.Errorf("dpcExtras %s", cfg.DpcExtras)
	}
	fake.ClaimDevice(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "ZT1"})
	fake.ClaimDevice(zerotouchtest.DeviceInfo{Serial: "ZT2"})
	n := 0
	if err := p.Devices(ctx, func(*dp.Device) bool { n++; return true }); err != nil || n != 2 {
		t.Fatalf("Devices: %d, %v", n, err)
	}
	if _, err := fake.Boot(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "ZT1"}); err == nil {
		t.Error("a device without a configuration enrolled at boot")
	}
	if err := p.Apply(ctx, cfg.Name, DeviceID{IMEI: "356938035643809"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, cfg.Name, DeviceID{Serial: "ZT2", Manufacturer: "Google"}); err != nil {
		t.Fatal(err)
	}
	d, err := fake.Boot(zerotouchtest.DeviceInfo{IMEI: "356938035643809", Serial: "ZT1"})
	if err != nil {
		t.Fatalf("zero-touch boot: %v", err)
	}
	got, err := m.Device(ctx, d.Name)
	if err != nil || got.EnrollmentTokenData != "zero-touch" || got.HardwareInfo.SerialNumber != "ZT1" {
		t.Errorf("zero-touch device %+v, %v", got, err)
	}
	if err := p.Remove(ctx, DeviceID{Serial: "ZT2", Manufacturer: "Google"}); err != nil {
		t.Fatal(err)
	}
	if dev := fake.ZeroTouchDevice("", "ZT2"); dev.Configuration != "" {
		t.Errorf("configuration after Remove: %q", dev.Configuration)
	}
	if err := p.Apply(ctx, cfg.Name, DeviceID{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Apply without an identifier: %v", err)
	}
}

// discovery reads a google.golang.org/api discovery document from the
// module cache: the request shapes Google's generated clients follow.
func discovery(t *testing.T, api string) map[string]any {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api").Output()
	if err != nil {
		t.Skipf("go list google.golang.org/api: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	data, err := os.ReadFile(filepath.Join(dir, api+"/v1", api+"-api.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

type method struct {
	id, httpMethod string
	path           *regexp.Regexp
	params         map[string]bool
	request        string
}

func methods(doc map[string]any) []method {
	var out []method
	var walk func(res map[string]any)
	walk = func(res map[string]any) {
		for _, r := range res {
			rm := r.(map[string]any)
			for _, m := range mapOf(rm["methods"]) {
				mm := m.(map[string]any)
				flat, _ := mm["flatPath"].(string)
				if flat == "" {
					flat = mm["path"].(string)
				}
				params := map[string]bool{}
				for p := range mapOf(mm["parameters"]) {
					params[p] = true
				}
				req := ""
				if r, ok := mm["request"].(map[string]any); ok {
					req = r["$ref"].(string)
				}
				out = append(out, method{mm["id"].(string), mm["httpMethod"].(string), regexp.MustCompile(fixBraces(flat)), params, req})
			}
			walk(mapOf(rm["resources"]))
		}
	}
	walk(mapOf(doc["resources"]))
	return out
}

func fixBraces(flat string) string {
	parts := regexp.MustCompile(`\{[^}]+\}`).Split(flat, -1)
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return "^/" + strings.Join(parts, `[^/:]+`) + "$"
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// Every request our clients made in the tests above matches a method of
// Google's discovery documents: its HTTP method and path template, query
// parameters the method declares, and a body whose keys are properties of
// the method's request schema. The fake answers only what our clients
// sent, so it cannot drift from Google's API without this failing.
func TestRequestShapes(t *testing.T) {
	fake, m, p := newClients(t)
	ctx := context.Background()
	// Drive every call the package makes.
	su, _ := m.SignupURL(ctx, "proj", "https://cb.example.com/", "admin@example.com")
	m.CreateEnterprise(ctx, "proj", su.Name, fake.CompleteSignup(su.Name), &am.Enterprise{EnterpriseDisplayName: "E"})
	m.GetEnterprise(ctx)
	m.PutPolicy(ctx, "p", &am.Policy{CameraDisabled: true})
	m.GetPolicy(ctx, "p")
	tok, _ := m.CreateToken(ctx, TokenSpec{PolicyID: "p", Duration: time.Hour, PersonalUsage: PersonalUsageAllowed, AdditionalData: "x", UserAccount: "u1"})
	dev, _ := fake.ScanQR(QRPayload(tok.Value), zerotouchtest.DeviceInfo{Serial: "S1"})
	m.Devices(ctx, 10, func(*am.Device) bool { return true })
	m.Device(ctx, dev.Name)
	op, _ := m.IssueCommand(ctx, dev.Name, &am.Command{Type: "RESET_PASSWORD", NewPassword: "1234", ResetPasswordFlags: []string{"LOCK_NOW"}})
	m.Operation(ctx, op.Name)
	m.DeleteDevice(ctx, dev.Name, []string{WipeExternalStorage, WipeESIMs}, "bye")
	m.DeleteToken(ctx, tok.Name)
	cs, _ := p.Customers(ctx)
	p.SetCustomer(cs[0].Name)
	p.DPCs(ctx)
	cfg, _ := p.CreateConfiguration(ctx, ConfigSpec{Name: "c", Company: "E", TokenValue: "T"})
	p.UpdateConfiguration(ctx, cfg.Name, ConfigSpec{Name: "c2", Company: "E", TokenValue: "T2", Default: true})
	p.Configurations(ctx)
	fake.ClaimDevice(zerotouchtest.DeviceInfo{IMEI: "1", Serial: "Z"})
	p.Devices(ctx, func(*dp.Device) bool { return true })
	p.Apply(ctx, cfg.Name, DeviceID{IMEI: "1"})
	p.Remove(ctx, DeviceID{Serial: "Z", Manufacturer: "Google"})

	docs := map[string][]method{}
	schemas := map[string]map[string]any{}
	for _, api := range []string{"androidmanagement", "androiddeviceprovisioning"} {
		d := discovery(t, api)
		docs[api] = methods(d)
		for name, s := range mapOf(d["schemas"]) {
			schemas[api+"/"+name] = mapOf(mapOf(s)["properties"])
		}
	}
	reqs := fake.Requests()
	if len(reqs) < 20 {
		t.Fatalf("only %d requests recorded", len(reqs))
	}
	seen := map[string]bool{}
	for _, r := range reqs {
		api := "androidmanagement"
		if strings.HasPrefix(r.Path, "/v1/customers") {
			api = "androiddeviceprovisioning"
		}
		var match *method
		for i, mm := range docs[api] {
			if mm.httpMethod == r.Method && mm.path.MatchString(r.Path) {
				match = &docs[api][i]
				break
			}
		}
		if match == nil {
			t.Errorf("%s %s matches no method of %s", r.Method, r.Path, api)
			continue
		}
		seen[match.id] = true
		for q := range r.Query {
			if !match.params[q] && q != "alt" && q != "prettyPrint" {
				t.Errorf("%s: query parameter %q is not one of %s's", r.Path, q, match.id)
			}
		}
		if len(r.Body) > 0 && match.request != "" {
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Errorf("%s: body is not a JSON object: %v", match.id, err)
				continue
			}
			props := schemas[api+"/"+match.request]
			for k := range body {
				if _, ok := props[k]; !ok {
					t.Errorf("%s: body key %q is not a property of %s", match.id, k, match.request)
				}
			}
		}
	}
	for _, want := range []string{"androidmanagement.signupUrls.create", "androidmanagement.enterprises.create",
		"androidmanagement.enterprises.policies.patch", "androidmanagement.enterprises.enrollmentTokens.create",
		"androidmanagement.enterprises.devices.list", "androidmanagement.enterprises.devices.issueCommand",
		"androidmanagement.enterprises.devices.operations.get", "androidmanagement.enterprises.devices.delete",
		"androiddeviceprovisioning.customers.configurations.create", "androiddeviceprovisioning.customers.configurations.patch",
		"androiddeviceprovisioning.customers.devices.applyConfiguration", "androiddeviceprovisioning.customers.devices.removeConfiguration"} {
		if !seen[want] {
			t.Errorf("no request matched %s", want)
		}
	}
}
