package main

import (
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func generate(t *testing.T, src string) string {
	t.Helper()
	var f schemaFile
	if err := yaml.Unmarshal([]byte(src), &f); err != nil {
		t.Fatal(err)
	}
	g := &generator{names: map[string]bool{}, shared: map[string]sharedType{}}
	out, err := format.Source(g.commandFile([]schemaFile{f}))
	if err != nil {
		t.Fatalf("generated code does not format: %v", err)
	}
	return string(out)
}

func wantLines(t *testing.T, src string, lines ...string) {
	t.Helper()
	norm := regexp.MustCompile(`[ \t]+`)
	flat := norm.ReplaceAllString(src, " ")
	for _, l := range lines {
		if !strings.Contains(flat, norm.ReplaceAllString(l, " ")) {
			t.Errorf("generated code lacks %q:\n%s", l, src)
		}
	}
}

// A dictionary of only a wildcard is a map on its parent, its values
// named after what they are; a subkeytype repeated with the same subkeys
// is one type.
func TestGenWildcardMaps(t *testing.T) {
	src := generate(t, `
payload: {requesttype: Thing}
responsekeys:
- key: Apps
  type: <dictionary>
  presence: required
  subkeytype: AppListItem
  subkeys:
  - key: ANY app identifier
    type: <dictionary>
    subkeytype: AppItem
    subkeys:
    - {key: Status, type: <string>, presence: required}
- key: Global
  type: <dictionary>
  presence: required
  subkeytype: RulesDictionary
  subkeys: &rules
  - key: bools
    type: <dictionary>
    presence: optional
    subkeytype: BooleanDictionary
    subkeys:
    - key: ANY rule name
      type: <dictionary>
      subkeys:
      - {key: value, type: <boolean>, presence: required}
- key: PerProfile
  type: <dictionary>
  presence: required
  subkeys:
  - key: ANY profile identifier
    type: <dictionary>
    subkeytype: RulesDictionary
    subkeys: *rules
- key: Config
  type: <dictionary>
  presence: optional
  subkeys:
  - {key: ANY, type: <any>}
- key: Counts
  type: <dictionary>
  presence: optional
  subkeys:
  - {key: ANY index, type: <integer>}
- key: Errors
  type: <array>
  subkeys:
  - key: ErrorsItem
    type: <dictionary>
    subkeys:
    - {key: ANY, type: <any>}
`)
	wantLines(t, src,
		"Apps map[string]AppItem `plist:\"Apps,omitempty\"` // required, keyed by app identifier",
		"type AppItem struct {",
		"Global RulesDictionary `plist:\"Global\"` // required",
		"PerProfile map[string]RulesDictionary `plist:\"PerProfile,omitempty\"` // required, keyed by profile identifier",
		"Bools map[string]BooleanRule `plist:\"bools,omitempty\"` // keyed by rule name",
		"// BooleanRule is a value of the \"bools\" dictionary, keyed by rule name.",
		"Config map[string]any `plist:\"Config,omitempty\"`",
		"Counts map[string]int `plist:\"Counts,omitempty\"` // keyed by index",
		"Errors []map[string]any `plist:\"Errors,omitempty\"`",
	)
	for _, bad := range []string{"ANY", "RulesDictionary2", "AppListItem", "BooleanDictionary"} {
		if strings.Contains(src, bad) {
			t.Errorf("generated code has %q:\n%s", bad, src)
		}
	}
}

// A dictionary with fixed keys and a wildcard keeps the fixed keys as
// fields and the others in Other, through the methods package mdm's
// TestDecodeMixedDictionary runs on a hand-written copy.
func TestGenMixedDictionary(t *testing.T) {
	src := generate(t, `
payload: {requesttype: Thing}
responsekeys:
- key: Mixed
  type: <dictionary>
  presence: optional
  subkeys:
  - {key: Name, type: <string>, presence: required}
  - {key: Count, type: <integer>, presence: optional}
  - key: ANY restriction name
    type: <dictionary>
    subkeys:
    - {key: value, type: <boolean>, presence: required}
`)
	wantLines(t, src,
		"Mixed *ThingResponseMixed `plist:\"Mixed,omitempty\"`",
		"type ThingResponseMixed struct {",
		"Name string `plist:\"Name\"` // required",
		"Count *int `plist:\"Count,omitempty\"`",
		"Other map[string]ThingResponseMixedRestriction `plist:\"-\" mdm:\"wildcard\"`",
		"type ThingResponseMixedRestriction struct {",
		"func (d *ThingResponseMixed) UnmarshalPlist(f func(any) error) error {\n\ttype plain ThingResponseMixed\n\treturn decodeWildcard(f, (*plain)(d), &d.Other)\n}",
		"func (d ThingResponseMixed) MarshalPlist() (any, error) {\n\ttype plain ThingResponseMixed\n\treturn encodeWildcard(plain(d), d.Other)\n}",
	)
}

// Over Apple's schema: no literal ANY field and no numbered type name
// left by one.
func TestGenSchemaHasNoWildcardFields(t *testing.T) {
	dir := "../../../../shared/apple-device-management/mdm"
	if _, err := os.Stat(filepath.Join(dir, "commands")); err != nil {
		t.Skipf("Apple's device-management schema is not at %s: %v", dir, err)
	}
	g := &generator{names: map[string]bool{}, shared: map[string]sharedType{}}
	checkins := load(filepath.Join(dir, "checkin"))
	for _, f := range checkins {
		g.names[f.Payload.RequestType] = true
	}
	g.omitEmptyStrings = true
	src := string(g.checkinFile(checkins))
	g.omitEmptyStrings = false
	src += string(g.commandFile(load(filepath.Join(dir, "commands"))))
	if m := regexp.MustCompile(`(?m)^\s+ANY\w*\s.*$`).FindAllString(src, -1); len(m) > 0 {
		t.Errorf("literal wildcard fields: %q", m)
	}
	if m := regexp.MustCompile(`\w*(ANY\w*|Dictionary\d+)\b`).FindAllString(src, -1); len(m) > 0 {
		t.Errorf("names from wildcard keys or their clashes: %q", m)
	}
}
