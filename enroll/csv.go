package enroll

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// A Field is a column a CSV import understands.
type Field string

// Fields of an import.
const (
	FieldName       Field = "name"
	FieldEmail      Field = "email"
	FieldMobile     Field = "mobile"
	FieldOwnership  Field = "ownership"
	FieldSerial     Field = "serial"
	FieldPlatform   Field = "platform"
	FieldDeviceName Field = "device_name"
	FieldGroups     Field = "groups" // several separated by ';'
	FieldIMEI       Field = "imei"   // Android devices known by IMEI
)

// headerSynonyms maps a squashed header (see squash) to its field.
var headerSynonyms = map[string]Field{
	"name": FieldName, "fullname": FieldName, "username": FieldName, "user": FieldName, "displayname": FieldName,
	"email": FieldEmail, "emailaddress": FieldEmail, "mail": FieldEmail, "useremail": FieldEmail,
	"mobile": FieldMobile, "mobilenumber": FieldMobile, "phone": FieldMobile, "phonenumber": FieldMobile, "mobilephone": FieldMobile,
	"ownership": FieldOwnership, "ownershiptype": FieldOwnership,
	"serial": FieldSerial, "serialnumber": FieldSerial, "serialno": FieldSerial, "sn": FieldSerial,
	"platform": FieldPlatform, "os": FieldPlatform,
	"devicename": FieldDeviceName, "device": FieldDeviceName,
	"group": FieldGroups, "groups": FieldGroups,
	"imei": FieldIMEI, "imeinumber": FieldIMEI,
}

// ParseField reads a field name as --map gives it ("serial", "device_name",
// "SerialNumber"...), with the same synonyms as header auto-mapping.
func ParseField(s string) (Field, error) {
	if f, ok := headerSynonyms[squash(s)]; ok {
		return f, nil
	}
	return "", invalidf("unknown field %q (want name, email, mobile, ownership, serial, platform, device_name, groups or imei)", s)
}

// What a CSV file imports, and so which columns it requires.
var (
	// RecordFields are required to import pre-enrollment records.
	RecordFields = []Field{FieldName, FieldEmail, FieldOwnership, FieldSerial, FieldPlatform}
	// UserFields are required to import users without devices.
	UserFields = []Field{FieldName, FieldEmail, FieldOwnership}
)

// CSVOptions tune ReadCSV.
type CSVOptions struct {
	// Required are the fields every row must have: RecordFields or
	// UserFields.
	Required []Field
	// Map names the field of a column by its header, overriding (or
	// completing) the automatic mapping.
	Map map[string]Field
	// Groups are added to every row's groups.
	Groups []string
	// Progress, when set, is told how many bytes of the input have been
	// read, after each row.
	Progress func(n int64)
}

// A Row is one valid row of a CSV import: a record (when the import has
// serial numbers) and its user.
type Row struct {
	Line   int
	Record *Record // nil in a users-only import
	User   *User
}

// A RowError is one bad row: its line in the file and what is wrong.
type RowError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// A CSVImport is what ReadCSV found: the valid rows, in file order, and
// every bad row.
type CSVImport struct {
	Columns map[Field]string // the header each field was read from
	Rows    []Row
	Errors  []RowError
}

// ErrCSVHeader is returned when the header lacks a required column or maps
// two columns to one field; nothing in the file can be read then.
var ErrCSVHeader = errors.New("enroll: CSV header")

// MaxCSVErrors bounds the bad rows ReadCSV keeps; past it, it stops reading
// (the file is not what it was meant to be).
const MaxCSVErrors = 1000

// ReadCSV reads a CSV import: a header row, then one row per device (or
// user). It accepts UTF-8 with or without a byte-order mark, CRLF or LF line
// ends and quoted fields, maps the header to fields (case, spaces,
// underscores and common synonyms do not matter), and validates every row:
// required fields present, email, ownership, platform and serial number
// well-formed, no serial twice. It returns the valid rows and every bad one
// with its line number; the caller decides whether a file with bad rows is
// written at all. It returns an error only when the input cannot be read as
// CSV with a usable header.
func ReadCSV(r io.Reader, opts CSVOptions) (*CSVImport, error) {
	cr := &countingReader{r: r}
	br := bufio.NewReader(cr)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xEF\xBB\xBF")) {
		br.Discard(3)
	}
	c := csv.NewReader(br)
	c.FieldsPerRecord = -1
	c.TrimLeadingSpace = true
	c.ReuseRecord = true

	header, err := c.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: the file is empty", ErrCSVHeader)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCSVHeader, err)
	}
	columns, index, err := mapHeader(header, opts)
	if err != nil {
		return nil, err
	}
	imp := &CSVImport{Columns: columns}
	seen := map[string]int{} // serial → line
	for len(imp.Errors) < MaxCSVErrors {
		fields, err := c.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			imp.Errors = append(imp.Errors, RowError{pe.StartLine, pe.Err.Error()})
			continue
		}
		if err != nil {
			return nil, invalidf("reading the CSV file: %v", err)
		}
		line, _ := c.FieldPos(0) // a successful Read has at least one field
		if opts.Progress != nil {
			opts.Progress(cr.n)
		}
		if allEmpty(fields) {
			continue
		}
		if len(fields) > len(header) {
			imp.Errors = append(imp.Errors, RowError{line, fmt.Sprintf("%d fields, the header has %d", len(fields), len(header))})
			continue
		}
		row, reasons := readRow(fields, index, opts)
		if row.Record != nil {
			if first, dup := seen[row.Record.Serial]; dup {
				reasons = append(reasons, fmt.Sprintf("serial number %s is already on line %d", row.Record.Serial, first))
			} else {
				seen[row.Record.Serial] = line
			}
		}
		if len(reasons) > 0 {
			imp.Errors = append(imp.Errors, RowError{line, strings.Join(reasons, "; ")})
			continue
		}
		row.Line = line
		imp.Rows = append(imp.Rows, row)
	}
	return imp, nil
}

// mapHeader maps each field to its column index.
func mapHeader(header []string, opts CSVOptions) (map[Field]string, map[Field]int, error) {
	columns, index := map[Field]string{}, map[Field]int{}
	override := map[string]Field{}
	for h, f := range opts.Map {
		override[squash(h)] = f
	}
	for i, h := range header {
		f, ok := override[squash(h)]
		if !ok {
			if f, ok = headerSynonyms[squash(h)]; !ok {
				continue // a column the import does not use
			}
		}
		if prev, dup := columns[f]; dup {
			return nil, nil, fmt.Errorf("%w: columns %q and %q both map to %s; use --map to choose", ErrCSVHeader, prev, h, f)
		}
		columns[f], index[f] = h, i
	}
	var missing []string
	for _, f := range opts.Required {
		if _, ok := index[f]; !ok {
			missing = append(missing, string(f))
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: no column for %s (columns: %s)", ErrCSVHeader, strings.Join(missing, ", "), strings.Join(header, ", "))
	}
	return columns, index, nil
}

// readRow validates one row and returns it, or the reasons it is bad.
func readRow(fields []string, index map[Field]int, opts CSVOptions) (Row, []string) {
	get := func(f Field) string {
		i, ok := index[f]
		if !ok || i >= len(fields) {
			return ""
		}
		return strings.TrimSpace(fields[i])
	}
	var reasons []string
	for _, f := range opts.Required {
		if get(f) == "" {
			reasons = append(reasons, "missing "+string(f))
		}
	}
	u := &User{Name: get(FieldName), Mobile: get(FieldMobile)}
	if v := get(FieldEmail); v != "" {
		email, err := NormalizeEmail(v)
		if err != nil {
			reasons = append(reasons, err.Error())
		}
		u.Email = email
	}
	if v := get(FieldOwnership); v != "" {
		o, err := ParseOwnership(v)
		if err != nil {
			reasons = append(reasons, err.Error())
		}
		u.Ownership = o
	}
	groups := slices.Clone(opts.Groups)
	for g := range strings.SplitSeq(get(FieldGroups), ";") {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	u.Groups = groups
	row := Row{User: u}
	if _, ok := index[FieldSerial]; ok {
		rec := &Record{
			Ownership: u.Ownership, UserEmail: u.Email, UserName: u.Name, Mobile: u.Mobile,
			DeviceName: get(FieldDeviceName), Groups: groups, Status: StatusPreApproved, Source: SourceCSV,
		}
		if v := get(FieldSerial); v != "" {
			serial, err := NormalizeSerial(v)
			if err != nil {
				reasons = append(reasons, err.Error())
			}
			rec.Serial = serial
		}
		if v := get(FieldIMEI); v != "" {
			imei, err := NormalizeIMEI(v)
			if err != nil {
				reasons = append(reasons, err.Error())
			}
			rec.IMEI = imei
		}
		if v := get(FieldPlatform); v != "" {
			p, err := ParsePlatform(v)
			if err != nil {
				reasons = append(reasons, err.Error())
			}
			rec.Platform = p
		}
		row.Record = rec
	}
	return row, reasons
}

func allEmpty(fields []string) bool {
	for _, f := range fields {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ImportOptions say what Import does with a CSV file.
type ImportOptions struct {
	CSVOptions
	// DryRun validates the file and writes nothing.
	DryRun bool
	// SkipInvalid writes the valid rows of a file with bad rows; without
	// it such a file writes nothing.
	SkipInvalid bool
	// UsersOnly imports the users of the rows and no records.
	UsersOnly bool
}

// An ImportResult reports an import.
type ImportResult struct {
	Columns map[Field]string `json:"columns"`
	Rows    int              `json:"rows"` // valid rows
	Errors  []RowError       `json:"errors"`
	// Truncated is set when reading stopped at MaxCSVErrors bad rows.
	Truncated bool `json:"truncated,omitempty"`
	// Written is set when the valid rows were stored.
	Written bool         `json:"written"`
	Stats   *ImportStats `json:"stats,omitempty"`
}

// Import reads a CSV file and stores its records and users in one
// transaction: all of the file or nothing. A file with a bad row is
// written only with SkipInvalid, and then without its bad rows. It returns
// an error wrapping ErrCSVHeader when the header is unusable.
func Import(ctx context.Context, store RecordStore, r io.Reader, opts ImportOptions, now time.Time) (*ImportResult, error) {
	for _, g := range opts.Groups {
		if err := checkGroup(g); err != nil {
			return nil, err
		}
	}
	imp, err := ReadCSV(r, opts.CSVOptions)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{Columns: imp.Columns, Rows: len(imp.Rows), Errors: imp.Errors, Truncated: len(imp.Errors) >= MaxCSVErrors}
	if res.Errors == nil {
		res.Errors = []RowError{}
	}
	if opts.DryRun || len(imp.Rows) == 0 || len(imp.Errors) > 0 && !opts.SkipInvalid {
		return res, nil
	}
	records := make([]*Record, 0, len(imp.Rows))
	users := make([]*User, 0, len(imp.Rows))
	for _, row := range imp.Rows {
		if row.Record != nil && !opts.UsersOnly {
			records = append(records, row.Record)
		}
		if row.User != nil {
			users = append(users, row.User)
		}
	}
	// Keys in order make the B+tree inserts sequential.
	slices.SortStableFunc(records, func(a, b *Record) int { return strings.Compare(a.Serial, b.Serial) })
	slices.SortStableFunc(users, func(a, b *User) int { return strings.Compare(a.Email, b.Email) })
	if res.Stats, err = store.Import(ctx, records, users, now); err != nil {
		return nil, err
	}
	res.Written = true
	return res, nil
}

// WriteSampleCSV writes a sample import file: the header of every field and
// n example rows with distinct serial numbers and users
// (SN00000001 for user00001@example.com, ...), platforms and ownerships in
// turn.
func WriteSampleCSV(w io.Writer, n int) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"Name", "Email", "Mobile", "Ownership", "SerialNumber", "Platform", "Device Name", "Groups"})
	owners := []Ownership{OwnershipCorporate, OwnershipPersonal, OwnershipSelectUser}
	platforms := []string{"ios", "apple", "android"}
	for i := 1; i <= n; i++ {
		cw.Write([]string{
			fmt.Sprintf("User %05d", i), fmt.Sprintf("user%05d@example.com", i), fmt.Sprintf("+1 555 %07d", i),
			string(owners[i%len(owners)]), fmt.Sprintf("SN%08d", i), platforms[i%len(platforms)],
			fmt.Sprintf("Device %d", i), "",
		})
	}
	cw.Flush()
	return cw.Error()
}
