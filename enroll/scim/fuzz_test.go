package scim

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzPatchAndFilter feeds identity-provider input to the filter parser
// and evaluator and to PATCH: no panic, and a PATCH either fails with a
// SCIM error or yields a resource that still normalizes as valid input.
func FuzzPatchAndFilter(f *testing.F) {
	for _, seed := range []struct{ filter, patch string }{
		{`userName eq "ana@example.com"`, `[{"op":"replace","value":{"active":false}}]`},
		{`emails[type eq "work" and value co "@example"]`, `[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"x@y.z"}]`},
		{`meta.lastModified gt "2026-01-01T00:00:00Z" or active pr`, `[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"abc"}]`},
		{`not (name.givenName sw "A")`, `[{"op":"Remove","path":"members","value":[{"value":"1"}]}]`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"`, `[{"op":"remove","path":"name.givenName"}]`},
		{`members[value eq "1"]`, `[{"op":"add","path":"members","value":[{"value":"2","display":"b"}]}]`},
	} {
		f.Add(seed.filter, seed.patch, true)
		f.Add(seed.filter, seed.patch, false)
	}
	user := Resource{"userName": "ana@example.com", "active": true, "name": map[string]any{"givenName": "Ana"},
		"emails":             []any{map[string]any{"type": "work", "value": "ana@example.com", "primary": true}},
		"meta":               map[string]any{"lastModified": "2026-11-21T12:00:00Z"},
		SchemaEnterpriseUser: map[string]any{"department": "Sales"}}
	group := Resource{"displayName": "Sales", "members": []any{map[string]any{"value": "1"}}}
	f.Fuzz(func(t *testing.T, filterText, patchJSON string, isUser bool) {
		rt, r := GroupType, group
		if isUser {
			rt, r = UserType, user
		}
		if flt, err := ParseFilter(rt, filterText); err == nil {
			flt.Match(r)
		} else if _, ok := err.(*Error); !ok {
			t.Fatalf("filter %q: %T is not a SCIM error", filterText, err)
		}
		var ops []PatchOp
		dec := json.NewDecoder(strings.NewReader(patchJSON))
		dec.UseNumber()
		if dec.Decode(&ops) != nil {
			return
		}
		out, err := rt.Patch(r, ops)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("patch %s: %T is not a SCIM error: %v", patchJSON, err, err)
			}
			return
		}
		data, _ := json.Marshal(out)
		var back map[string]any
		dec = json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&back); err != nil {
			t.Fatalf("patched resource does not round-trip: %v", err)
		}
		if _, err := rt.normalize(back); err != nil {
			t.Fatalf("patch %s made an invalid resource: %v\n%s", patchJSON, err, data)
		}
	})
}
