package campaign

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/custodymdm/custody/enroll"
)

// ReadMembers reads ring members from a CSV file: each row names a
// device by its serial number or, without one, a user by email (the
// columns are found as enroll's import finds them: "Serial Number",
// "Email Address"...). With where set ("column=value"), only the rows
// whose column holds that value (case-insensitively) count, so one file
// with a ring column can make every ring. Bad rows are reported with
// their line numbers, all of them.
func ReadMembers(r io.Reader, where string) ([]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, invalidf("CSV header: %v", err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	serialCol, emailCol, whereCol := -1, -1, -1
	var whereName, whereValue string
	if where != "" {
		var ok bool
		whereName, whereValue, ok = strings.Cut(where, "=")
		if !ok || strings.TrimSpace(whereName) == "" {
			return nil, invalidf("--where %q: want COLUMN=VALUE", where)
		}
		whereName, whereValue = strings.TrimSpace(whereName), strings.TrimSpace(whereValue)
	}
	for i, h := range header {
		if whereName != "" && strings.EqualFold(strings.TrimSpace(h), whereName) {
			whereCol = i
		}
		switch f, _ := enroll.ParseField(h); f {
		case enroll.FieldSerial:
			serialCol = i
		case enroll.FieldEmail:
			emailCol = i
		}
	}
	if serialCol < 0 && emailCol < 0 {
		return nil, invalidf("CSV has no serial number or email column (columns: %s)", strings.Join(header, ", "))
	}
	if whereName != "" && whereCol < 0 {
		return nil, invalidf("CSV has no column %q (columns: %s)", whereName, strings.Join(header, ", "))
	}
	cell := func(row []string, i int) string {
		if i < 0 || i >= len(row) {
			return ""
		}
		return strings.TrimSpace(row[i])
	}
	var members, bad []string
	seen := map[string]bool{}
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, invalidf("CSV: %v", err)
		}
		if whereCol >= 0 && !strings.EqualFold(cell(row, whereCol), whereValue) {
			continue
		}
		var ref string
		if s := cell(row, serialCol); s != "" {
			serial, err := enroll.NormalizeSerial(s)
			if err != nil {
				bad = append(bad, fmt.Sprintf("line %d: %v", line, err))
				continue
			}
			ref = enroll.RecordRef(serial)
		} else if e := cell(row, emailCol); e != "" {
			email, err := enroll.NormalizeEmail(e)
			if err != nil {
				bad = append(bad, fmt.Sprintf("line %d: %v", line, err))
				continue
			}
			ref = enroll.UserRef(email)
		} else {
			bad = append(bad, fmt.Sprintf("line %d: neither a serial number nor an email", line))
			continue
		}
		if !seen[ref] {
			seen[ref] = true
			members = append(members, ref)
		}
	}
	if len(bad) > 0 {
		return nil, invalidf("%d bad rows: %s", len(bad), strings.Join(bad, "; "))
	}
	if len(members) == 0 {
		return nil, invalidf("no rows name a member%s", map[bool]string{true: " where " + where}[where != ""])
	}
	return members, nil
}
