package enroll_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/dep/deptest"
	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/storage/bolt"
)

func adeFixture(tb testing.TB, devices int) (*enroll.ADE, *dep.Token, *dep.Client, *deptest.Account, *bolt.DB) {
	tb.Helper()
	fake := deptest.New()
	tb.Cleanup(fake.Close)
	a := fake.AddAccount("bench")
	a.AddDevices(deptest.Devices("B", devices)...)
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ade := &enroll.ADE{Records: db.Records(), Tokens: db.DEP(), Logger: quiet}
	tok := &dep.Token{Name: "abm", OAuth: a.Tokens, BaseURL: fake.URL, Group: "ade"}
	client := dep.NewClient(a.Tokens, dep.Options{BaseURL: fake.URL, Logger: quiet})
	return ade, tok, client, a, db
}

func TestADEStore(t *testing.T) {
	ade, tok, client, a, db := adeFixture(t, 3)
	ctx := context.Background()
	// A record imported by CSV before the device reached ADE keeps its
	// source and user, and gains Apple's details and the token's group.
	db.Records().Import(ctx, []*enroll.Record{{Serial: "B00000002", Platform: enroll.PlatformIOS, Ownership: enroll.OwnershipCorporate,
		UserEmail: "ana@example.com", Status: enroll.StatusPreApproved, Source: enroll.SourceCSV}}, nil, time.Now())
	st, err := ade.Sync(ctx, tok, client, false)
	if err != nil || st.Fetched != 3 || st.Assigned != 0 {
		t.Fatalf("Sync = %+v, %v", st, err)
	}
	r1, _ := db.Records().Record(ctx, "B00000001")
	r2, _ := db.Records().Record(ctx, "B00000002")
	r3, _ := db.Records().Record(ctx, "B00000003")
	switch {
	case r1.Source != enroll.SourceADE || r1.Platform != enroll.PlatformIOS || r1.ADE == nil || r1.ADE.Model != "iPhone 15" || r1.Groups[0] != "ade":
		t.Errorf("new ADE record %+v", r1)
	case r2.Source != enroll.SourceCSV || r2.UserEmail != "ana@example.com" || r2.ADE == nil || r2.ADE.DeviceFamily != "iPad":
		t.Errorf("imported record after ADE %+v", r2)
	case r3.Platform != enroll.PlatformMacOS:
		t.Errorf("a Mac's platform: %s", r3.Platform)
	}
	// Deleted in ABM: marked, not removed.
	a.DeleteDevices("B00000001")
	if st, err := ade.Sync(ctx, tok, client, false); err != nil || st.Deleted != 1 {
		t.Fatalf("Sync after a delete = %+v, %v", st, err)
	}
	if r, _ := db.Records().Record(ctx, "B00000001"); r.ADE.DeletedAt.IsZero() {
		t.Errorf("deleted device's record %+v", r.ADE)
	}
	// With a default profile, the rest get it; the deleted one does not.
	res, err := client.DefineProfile(ctx, &dep.Profile{ProfileName: "p", URL: "https://mdm.example.com/ade/enroll"})
	if err != nil {
		t.Fatal(err)
	}
	tok.DefaultProfile = res.ProfileUUID
	if st, err := ade.Sync(ctx, tok, client, false); err != nil || st.Assigned != 2 {
		t.Fatalf("Sync with a default profile = %+v, %v", st, err)
	}
	// Assigning again changes nothing.
	if ok, failed, err := ade.AssignDefault(ctx, tok, client); ok+failed != 0 || err != nil {
		t.Errorf("a second AssignDefault: %d, %d, %v", ok, failed, err)
	}
}

// MachineInfo as devices send it: SHA-1 and RSA, under an expired device
// CA, with a signingTime after the identity's validity. The stock pkcs7
// verifier refuses that; ParseMachineInfo takes it, checks the signature
// and, with roots, the chain.
func TestParseMachineInfo(t *testing.T) {
	signed, err := mdmtest.SignMachineInfo("UDID-1", "C02XYZ", "iPhone15,2", "22B83")
	if err != nil {
		t.Fatal(err)
	}
	if p7, err := pkcs7.Parse(signed); err != nil || p7.Verify() == nil {
		t.Fatalf("the stock verifier accepts this MachineInfo (%v): the test no longer shows what it should", err)
	}
	mi, err := enroll.ParseMachineInfo(signed, nil)
	if err != nil || mi.UDID != "UDID-1" || mi.Serial != "C02XYZ" || mi.Product != "iPhone15,2" || mi.Version != "22B83" {
		t.Fatalf("ParseMachineInfo = %+v, %v", mi, err)
	}
	ca, err := mdmtest.AppleDeviceCA()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.ParseMachineInfo(signed, []*x509.Certificate{ca}); err != nil {
		t.Errorf("with the device CA as root: %v", err)
	}
	other, _, _ := dep.NewKeyPair("not apple", time.Hour)
	if _, err := enroll.ParseMachineInfo(signed, []*x509.Certificate{other}); !errors.Is(err, enroll.ErrMachineInfo) {
		t.Errorf("with another root: %v", err)
	}
	tampered := bytes.Replace(signed, []byte("C02XYZ"), []byte("C02XYA"), 1)
	if _, err := enroll.ParseMachineInfo(tampered, nil); !errors.Is(err, enroll.ErrMachineInfo) {
		t.Errorf("tampered content: %v, want ErrMachineInfo", err)
	}
	for _, in := range [][]byte{nil, []byte("<plist/>"), signed[:len(signed)/2]} {
		if _, err := enroll.ParseMachineInfo(in, nil); !errors.Is(err, enroll.ErrMachineInfo) {
			t.Errorf("ParseMachineInfo(%.20q): %v", in, err)
		}
	}
}

// FuzzMachineInfo feeds arbitrary bodies to the MachineInfo parser: an
// ErrMachineInfo or a MachineInfo with a serial and UDID, never a panic.
func FuzzMachineInfo(f *testing.F) {
	signed, err := mdmtest.SignMachineInfo("UDID-1", "C02XYZ", "iPhone15,2", "22B83")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte("\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x80"))
	f.Fuzz(func(t *testing.T, in []byte) {
		mi, err := enroll.ParseMachineInfo(in, nil)
		if err != nil {
			if !errors.Is(err, enroll.ErrMachineInfo) {
				t.Fatalf("error that is not ErrMachineInfo: %v", err)
			}
			return
		}
		if mi.Serial == "" || mi.UDID == "" {
			t.Fatalf("accepted a MachineInfo without SERIAL or UDID: %+v", mi)
		}
	})
}

// BenchmarkADEFetch100k is a first sync of an ADE server with 100,000
// devices: paged fetch from the fake service over loopback HTTP, and
// 100,000 pre-enrollment records stored in bbolt (one transaction per page
// of 1,000).
func BenchmarkADEFetch100k(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		ade, tok, client, _, db := adeFixture(b, 100_000)
		b.StartTimer()
		st, err := ade.Sync(context.Background(), tok, client, false)
		if err != nil || st.Fetched != 100_000 {
			b.Fatalf("Sync = %+v, %v", st, err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
}
