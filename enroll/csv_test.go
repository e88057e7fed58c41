package enroll

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	in := "\xEF\xBB\xBF" + // a byte-order mark, as Excel writes
		"Name,E-mail Address,Ownership,Serial Number,platform,devicename,Mobile\r\n" +
		"Ada Lovelace,Ada@Example.com,Corporate,c02xl0abjg5h,Apple,\"Ada's Mac, the first\",+44 20 7946 0000\r\n" +
		"\r\n" + // blank lines are skipped
		"\"Grace\nHopper\",grace@example.com,select user,R58M12ABCDE,android,,\r\n" +
		"Alan,not-an-email,corporate,F2LXK1,ios,,\r\n" +
		"Linus,linus@example.com,leased,F2LXK2,ios,,\r\n" +
		"Ken,ken@example.com,corporate,F2LXK3,windows,,\r\n" +
		"Dennis,dennis@example.com,corporate,C02XL0ABJG5H,ios,,\r\n" +
		"Barbara,,personal,F2LXK4,ios,,\r\n" +
		"Edsger,edsger@example.com,personal,F2LX K5,ios,,\r\n"
	imp, err := ReadCSV(strings.NewReader(in), CSVOptions{Required: RecordFields, Groups: []string{"ring-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(imp.Rows) != 2 {
		t.Fatalf("%d valid rows, want 2: %+v", len(imp.Rows), imp.Rows)
	}
	ada := imp.Rows[0]
	want := Record{Serial: "C02XL0ABJG5H", Platform: PlatformMacOS, Ownership: OwnershipCorporate,
		UserEmail: "ada@example.com", UserName: "Ada Lovelace", Mobile: "+44 20 7946 0000",
		DeviceName: "Ada's Mac, the first", Status: StatusPreApproved, Source: SourceCSV}
	got := *ada.Record
	got.Groups = nil
	if !reflect.DeepEqual(got, want) || ada.Line != 2 || len(ada.Record.Groups) != 1 || ada.Record.Groups[0] != "ring-1" {
		t.Errorf("row 1 = line %d %+v, want line 2 %+v in ring-1", ada.Line, *ada.Record, want)
	}
	if g := imp.Rows[1]; g.Line != 4 || g.Record.UserName != "Grace\nHopper" || g.Record.Ownership != OwnershipSelectUser || g.Record.Platform != PlatformAndroid {
		t.Errorf("row 2 = line %d %+v", g.Line, *g.Record)
	}
	wantErrs := []struct {
		line int
		text string
	}{
		{6, `bad email "not-an-email"`},
		{7, `unknown ownership "leased"`},
		{8, `unknown platform "windows"`},
		{9, "serial number C02XL0ABJG5H is already on line 2"},
		{10, "missing email"},
		{11, `bad serial number "F2LX K5"`},
	}
	if len(imp.Errors) != len(wantErrs) {
		t.Fatalf("errors: %v, want %d", imp.Errors, len(wantErrs))
	}
	for i, w := range wantErrs {
		if e := imp.Errors[i]; e.Line != w.line || !strings.Contains(e.Reason, w.text) {
			t.Errorf("error %d = %v, want line %d: %s", i, e, w.line, w.text)
		}
	}
	if imp.Columns[FieldEmail] != "E-mail Address" || imp.Columns[FieldDeviceName] != "devicename" {
		t.Errorf("columns: %v", imp.Columns)
	}
}

func TestReadCSVHeader(t *testing.T) {
	for _, c := range []struct {
		name, in string
		opts     CSVOptions
		err      string
	}{
		{"empty", "", CSVOptions{Required: RecordFields}, "empty"},
		{"missing column", "name,email,ownership,platform\n", CSVOptions{Required: RecordFields}, "no column for serial"},
		{"two columns for one field", "name,email,mail,ownership,serial,platform\n", CSVOptions{Required: RecordFields}, `"email" and "mail"`},
	} {
		_, err := ReadCSV(strings.NewReader(c.in), c.opts)
		if !errors.Is(err, ErrCSVHeader) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want ErrCSVHeader mentioning %q", c.name, err, c.err)
		}
	}
	// --map names columns the synonyms do not know, and chooses between
	// two that both look like the email.
	in := "Who,email,mail,Kind,Hardware ID,OS\nAda,ada@example.com,old@example.com,corporate,ABC123,ios\n"
	imp, err := ReadCSV(strings.NewReader(in), CSVOptions{Required: RecordFields,
		Map: map[string]Field{"who": FieldName, "kind": FieldOwnership, "hardware_id": FieldSerial, "mail": "unused"}})
	if err != nil || len(imp.Rows) != 1 || imp.Rows[0].Record.Serial != "ABC123" || imp.Rows[0].User.Email != "ada@example.com" {
		t.Fatalf("mapped import: %+v, %v", imp, err)
	}
}

func TestReadCSVUsers(t *testing.T) {
	in := "name,email,ownership\nAda,ada@example.com,personal\nBob,bob@example.com,\n"
	imp, err := ReadCSV(strings.NewReader(in), CSVOptions{Required: UserFields})
	if err != nil {
		t.Fatal(err)
	}
	if len(imp.Rows) != 1 || imp.Rows[0].Record != nil || imp.Rows[0].User.Email != "ada@example.com" || imp.Rows[0].User.Ownership != OwnershipPersonal {
		t.Errorf("rows: %+v", imp.Rows)
	}
	if len(imp.Errors) != 1 || imp.Errors[0].Line != 3 || imp.Errors[0].Reason != "missing ownership" {
		t.Errorf("errors: %v", imp.Errors)
	}
}

// A malformed quote spoils its row, not the rest of the file.
func TestReadCSVBadQuote(t *testing.T) {
	in := "name,email,ownership,serial,platform\n" +
		"Ada,ada@example.com,corporate,A1,ios\n" +
		"Bo\"b,bob@example.com,corporate,A2,ios\n" +
		"Cy,cy@example.com,corporate,A3,ios\n"
	imp, err := ReadCSV(strings.NewReader(in), CSVOptions{Required: RecordFields})
	if err != nil {
		t.Fatal(err)
	}
	if len(imp.Rows) != 2 || imp.Rows[1].Record.Serial != "A3" || len(imp.Errors) != 1 || imp.Errors[0].Line != 3 {
		t.Errorf("rows %+v, errors %v", imp.Rows, imp.Errors)
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("name,email,ownership,serial,platform\nAda,ada@example.com,corporate,A1,ios\n")
	f.Add("\xEF\xBB\xBFName,Email,Ownership,Serial Number,Platform,Device Name\r\n\"a,\"\"b\"\"\",x@y.z,personal,S-1,apple,\"d\ne\"\r\n")
	f.Add("name,email,ownership,serial,platform\nA,a@b.c,corporate,A1,ios\nB,b@b.c,corporate,a1,ios\n")
	f.Fuzz(func(t *testing.T, in string) {
		imp, err := ReadCSV(strings.NewReader(in), CSVOptions{Required: RecordFields})
		if err != nil {
			if !errors.Is(err, ErrCSVHeader) {
				t.Fatalf("error that is not about the header: %v", err)
			}
			return
		}
		serials := map[string]bool{}
		for _, r := range imp.Rows {
			rec := r.Record
			if s, err := NormalizeSerial(rec.Serial); err != nil || s != rec.Serial || serials[s] {
				t.Fatalf("row %d: serial %q invalid or repeated", r.Line, rec.Serial)
			}
			serials[rec.Serial] = true
			if e, err := NormalizeEmail(rec.UserEmail); err != nil || e != rec.UserEmail {
				t.Fatalf("row %d: email %q", r.Line, rec.UserEmail)
			}
			if rec.Platform == "" || rec.Ownership == "" || rec.UserName == "" {
				t.Fatalf("row %d: missing a required field: %+v", r.Line, rec)
			}
		}
		for _, e := range imp.Errors {
			if e.Line < 1 || e.Reason == "" {
				t.Fatalf("bad row error %+v", e)
			}
		}
	})
}
