// Command mdmgen generates the typed MDM check-in messages, commands and
// command responses of package mdm from Apple's device-management schema
// (github.com/apple/device-management, mdm/checkin and mdm/commands).
//
// Run it through go generate in package mdm. Each schema key becomes a Go
// field with an explicit plist tag: required keys are plain values; optional
// booleans, numbers, dates and dictionaries are pointers with omitempty, so a
// false or zero the server means to send is still sent. Nested dictionaries
// become named structs; one declared for a subkeytype is reused where the
// schema repeats that subkeytype with the same subkeys.
//
// The schema writes a dictionary whose keys are data (bundle identifiers,
// restriction names, profile identifiers, any app configuration key) as a
// single wildcard subkey, "ANY" or "ANY app identifier". Such a dictionary
// becomes a map field on its parent, always omitempty: map[string]T, T being
// the wildcard value's type: a struct for a dictionary with subkeys, named
// by its subkeytype or by the dictionary's name (less a Dictionary suffix)
// and what the keys name (restrictedBool's BooleanDictionary, keyed by
// "ANY restriction name", holds BooleanRestriction values; with nothing
// named, as for "ANY" or "ANY index", the suffix is Item, as for array
// elements); the scalar type for a scalar; any for <any>. So
// ManagedApplicationList is a map[string]ManagedApplicationItem keyed by
// bundle identifier. A dictionary with fixed keys and a wildcard (none in
// the schema today) becomes a struct with the fixed keys as fields and the
// other keys in a field Other map[string]T tagged plist:"-" mdm:"wildcard",
// with generated UnmarshalPlist and MarshalPlist that call package mdm's
// decodeWildcard and encodeWildcard; a fixed key wins over a key of Other
// of its name. mdm.UnknownKeys follows Other as it follows maps.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

type schemaFile struct {
	Title   string `yaml:"title"`
	Payload struct {
		RequestType string               `yaml:"requesttype"`
		SupportedOS map[string]osSupport `yaml:"supportedOS"`
	} `yaml:"payload"`
	PayloadKeys  []key `yaml:"payloadkeys"`
	ResponseKeys []key `yaml:"responsekeys"`
}

type key struct {
	Key        string `yaml:"key"`
	Title      string `yaml:"title"`
	Type       string `yaml:"type"`
	Presence   string `yaml:"presence"`
	RangeList  []any  `yaml:"rangelist"`
	SubkeyType string `yaml:"subkeytype"`
	Subkeys    []key  `yaml:"subkeys"`
	// SupportedOS is read for check-in messages only.
	SupportedOS map[string]osSupport `yaml:"supportedOS"`
	_           struct{}             `yaml:"-"`
}

func main() {
	schema := flag.String("schema", "", "path to the schema's mdm directory")
	out := flag.String("out", ".", "directory to write the generated files to")
	checkinSchema := flag.String("checkin-schema", "", "also write the check-in messages' keys, for the simulated device's tests, to this file")
	flag.Parse()
	if *schema == "" {
		log.Fatal("mdmgen: -schema is required")
	}
	checkins := load(filepath.Join(*schema, "checkin"))
	commands := load(filepath.Join(*schema, "commands"))

	g := &generator{names: map[string]bool{}, shared: map[string]sharedType{}}
	// Check-in messages keep their protocol names; a command whose name a
	// check-in message already has gets the suffix Command.
	for _, f := range checkins {
		g.names[f.Payload.RequestType] = true
	}
	g.omitEmptyStrings = true
	write(filepath.Join(*out, "checkin_gen.go"), g.checkinFile(checkins))
	g.omitEmptyStrings = false
	write(filepath.Join(*out, "commands_gen.go"), g.commandFile(commands))
	if *checkinSchema != "" {
		write(*checkinSchema, checkinSchemaFile(checkins))
	}
}

func load(dir string) []schemaFile {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		log.Fatalf("mdmgen: no schema files in %s (%v)", dir, err)
	}
	sort.Strings(paths)
	var files []schemaFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			log.Fatal(err)
		}
		var f schemaFile
		if err := yaml.Unmarshal(data, &f); err != nil {
			log.Fatalf("mdmgen: %s: %v", p, err)
		}
		if f.Payload.RequestType == "" {
			log.Fatalf("mdmgen: %s has no payload.requesttype", p)
		}
		files = append(files, f)
	}
	return files
}

func write(path string, src []byte) {
	formatted, err := format.Source(src)
	if err != nil {
		os.WriteFile(path+".broken", src, 0o644)
		log.Fatalf("mdmgen: %s does not format: %v", path, err)
	}
	if err := os.WriteFile(path, formatted, 0o644); err != nil {
		log.Fatal(err)
	}
}

type generator struct {
	buf   bytes.Buffer // nested types, written after the type that uses them
	names map[string]bool
	// shared are the structs declared for a subkeytype, by its Go name.
	shared map[string]sharedType
	// omitEmptyStrings gives every string and data field omitempty. The
	// check-in schema marks keys required that are really either/or (UDID
	// or EnrollmentID; the user keys only on the user channel), and an
	// empty string is never meaningful there.
	omitEmptyStrings bool
}

// sharedType is the struct declared for a subkeytype and the subkeys it
// was declared for.
type sharedType struct{ fingerprint, name string }

const header = "// Code generated by mdmgen from Apple's device-management schema; DO NOT EDIT.\n\npackage mdm\n\n"

func (g *generator) checkinFile(files []schemaFile) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("import \"time\"\n\nvar _ time.Time\n\n")
	var types []string
	for _, f := range files {
		name := f.Payload.RequestType
		types = append(types, name)
		fmt.Fprintf(&b, "// %s is the %s check-in message (%s).\n", name, quote(name), f.Title)
		fmt.Fprintf(&b, "type %s struct {\n", name)
		g.fields(&b, name, f.PayloadKeys, map[string]bool{"MessageType": true})
		b.WriteString("\n\t// Raw is the message as the device sent it.\n\tRaw []byte `plist:\"-\"`\n}\n\n")
		fmt.Fprintf(&b, "// MessageType returns %q.\nfunc (m *%s) MessageType() string { return %q }\n\n", name, name, name)
		fmt.Fprintf(&b, "func (m *%s) setRaw(raw []byte) { m.Raw = raw }\n\n", name)
		if len(f.ResponseKeys) > 0 {
			resp := name + "Response"
			g.names[resp] = true
			fmt.Fprintf(&b, "// %s is the server's answer to a %s check-in message.\n", resp, name)
			fmt.Fprintf(&b, "type %s struct {\n", resp)
			g.fields(&b, resp, f.ResponseKeys, map[string]bool{})
			b.WriteString("}\n\n")
		}
		b.Write(g.flush())
	}
	b.WriteString("// newCheckinMessage returns an empty message of the given MessageType.\n")
	b.WriteString("func newCheckinMessage(messageType string) CheckinMessage {\n\tswitch messageType {\n")
	for _, t := range types {
		fmt.Fprintf(&b, "\tcase %q:\n\t\treturn new(%s)\n", t, t)
	}
	b.WriteString("\t}\n\treturn nil\n}\n")
	return b.Bytes()
}

func (g *generator) commandFile(files []schemaFile) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("import \"time\"\n\nvar _ time.Time\n\n")
	type cmd struct{ rt, name string }
	var cmds []cmd
	for _, f := range files {
		rt := f.Payload.RequestType
		name := rt
		if g.names[name] {
			name += "Command"
		}
		g.names[name] = true
		cmds = append(cmds, cmd{rt, name})
		fmt.Fprintf(&b, "// %s is the %s command (%s).\n", name, quote(rt), f.Title)
		fmt.Fprintf(&b, "type %s struct {\n", name)
		g.fields(&b, name, f.PayloadKeys, map[string]bool{"RequestType": true})
		b.WriteString("}\n\n")
		fmt.Fprintf(&b, "// RequestType returns %q.\nfunc (*%s) RequestType() string { return %q }\n\n", rt, name, rt)
		fmt.Fprintf(&b, "// MarshalPlist adds the RequestType key.\nfunc (c *%s) MarshalPlist() (any, error) {\n", name)
		fmt.Fprintf(&b, "\ttype plain %s\n\treturn struct {\n\t\tRequestType string\n\t\t*plain\n\t}{%q, (*plain)(c)}, nil\n}\n\n", name, rt)

		resp := name + "Response"
		g.names[resp] = true
		fmt.Fprintf(&b, "// %s is a device's answer to %s.\n", resp, name)
		fmt.Fprintf(&b, "type %s struct {\n\tCommandResult\n", resp)
		g.fields(&b, resp, f.ResponseKeys, commandResultKeys)
		b.WriteString("}\n\n")
		b.Write(g.flush())
	}
	b.WriteString("// newCommand returns an empty command of the given RequestType.\n")
	b.WriteString("func newCommand(requestType string) Command {\n\tswitch requestType {\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "\tcase %q:\n\t\treturn new(%s)\n", c.rt, c.name)
	}
	b.WriteString("\t}\n\treturn nil\n}\n\n")
	b.WriteString("// newCommandResponse returns an empty response to a command of the given RequestType.\n")
	b.WriteString("func newCommandResponse(requestType string) any {\n\tswitch requestType {\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "\tcase %q:\n\t\treturn new(%sResponse)\n", c.rt, c.name)
	}
	b.WriteString("\t}\n\treturn nil\n}\n\n")
	b.WriteString("// RequestTypes lists the commands of Apple's schema this package has types for.\nfunc RequestTypes() []string {\n\treturn []string{\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "\t\t%q,\n", c.rt)
	}
	b.WriteString("\t}\n}\n")
	return b.Bytes()
}

// commandResultKeys are the keys of every command response, which the
// hand-written CommandResult carries; the schema repeats some of them.
var commandResultKeys = map[string]bool{
	"UDID": true, "EnrollmentID": true, "EnrollmentUserID": true, "UserID": true,
	"UserShortName": true, "UserLongName": true, "CommandUUID": true, "Status": true,
	"ErrorChain": true, "NotOnConsole": true, "RequestType": true,
}

func (g *generator) flush() []byte {
	out := bytes.Clone(g.buf.Bytes())
	g.buf.Reset()
	return out
}

// fields writes one struct field per key, skipping the names in skip.
func (g *generator) fields(b *bytes.Buffer, parent string, keys []key, skip map[string]bool) {
	seen := map[string]bool{}
	for _, k := range keys {
		if skip[k.Key] || k.Key == "" {
			continue
		}
		field := goName(k.Key)
		if seen[field] {
			continue
		}
		seen[field] = true
		nested := parent + field // base name of types declared for this key
		if strings.HasSuffix(parent, field) {
			nested = parent
		}
		typ, omit := g.goType(nested, k)
		tag := k.Key
		if omit {
			tag += ",omitempty"
		}
		var notes []string
		if k.Presence == "required" && !g.omitEmptyStrings {
			notes = append(notes, "required")
		}
		if w, fixed := wildcard(k); w != nil && len(fixed) == 0 && wildcardLabel(w.Key) != "" {
			notes = append(notes, "keyed by "+wildcardLabel(w.Key))
		}
		if len(notes) > 0 {
			fmt.Fprintf(b, "\t%s %s `plist:%q` // %s\n", field, typ, tag, strings.Join(notes, ", "))
		} else {
			fmt.Fprintf(b, "\t%s %s `plist:%q`\n", field, typ, tag)
		}
	}
}

// goType returns the Go type of a key and whether its field takes omitempty.
func (g *generator) goType(name string, k key) (string, bool) {
	required := k.Presence == "required"
	optionalPtr := func(t string) (string, bool) {
		if required {
			return t, false
		}
		return "*" + t, true
	}
	switch k.Type {
	case "<string>":
		return "string", !required || g.omitEmptyStrings
	case "<integer>":
		return optionalPtr("int")
	case "<real>":
		return optionalPtr("float64")
	case "<boolean>":
		return optionalPtr("bool")
	case "<date>":
		return optionalPtr("time.Time")
	case "<data>":
		return "[]byte", !required || g.omitEmptyStrings
	case "<any>":
		return "any", true
	case "<dictionary>":
		if len(k.Subkeys) == 0 {
			return "map[string]any", true
		}
		if w, fixed := wildcard(k); w != nil && len(fixed) == 0 {
			// A map field is always omitempty: the encoder cannot
			// write a nil map held in an interface.
			return "map[string]" + g.wildcardValue(g.dictName(name, k), k, *w), true
		}
		return optionalPtr(g.structType(name, k, ""))
	case "<array>":
		elem := g.elemType(name, k)
		return "[]" + elem, !required
	}
	log.Fatalf("mdmgen: key %s has unknown type %q", k.Key, k.Type)
	return "", false
}

// elemType is the element type of an array key.
func (g *generator) elemType(name string, k key) string {
	switch len(k.Subkeys) {
	case 0:
		return "any"
	case 1:
		e := k.Subkeys[0]
		e.Presence = "required" // an element is always present
		t, _ := g.goType(name+"Item", e)
		return t
	}
	// Several dictionaries: a polymorphic array (Settings), each variant
	// named by its Item key.
	iface := g.unique(name + "Item")
	// The interface includes MarshalPlist: the plist encoder only looks
	// through empty interfaces, but calls a Marshaler's method.
	fmt.Fprintf(&g.buf, "// %s is an element of %s: one of the %s* types.\ntype %s interface {\n\tis%s()\n\tMarshalPlist() (any, error)\n}\n\n", iface, name, name, iface, iface)
	for _, v := range k.Subkeys {
		vname := g.unique(name + goName(v.Key))
		item := v.Key
		var keys []key
		for _, sk := range v.Subkeys {
			if sk.Key == "Item" {
				if len(sk.RangeList) == 1 {
					item = fmt.Sprint(sk.RangeList[0])
				}
				continue
			}
			keys = append(keys, sk)
		}
		var inner bytes.Buffer
		g.fields(&inner, vname, keys, nil) // may declare nested types first
		fmt.Fprintf(&g.buf, "// %s is the %s element of %s.\ntype %s struct {\n", vname, quote(item), name, vname)
		g.buf.Write(inner.Bytes())
		fmt.Fprintf(&g.buf, "}\n\nfunc (*%s) is%s() {}\n\n", vname, iface)
		fmt.Fprintf(&g.buf, "// MarshalPlist adds the Item key.\nfunc (s *%s) MarshalPlist() (any, error) {\n\ttype plain %s\n\treturn struct {\n\t\tItem string\n\t\t*plain\n\t}{%q, (*plain)(s)}, nil\n}\n\n", vname, vname, item)
	}
	return iface
}

// structType declares a struct for a dictionary key and returns its name.
// A dictionary of the same subkeytype with the same subkeys (the schema
// repeats one through a YAML anchor: Restrictions' RestrictionsDictionary)
// is declared once. doc, when not empty, is the type's comment after its
// name. A dictionary with fixed keys and a wildcard gets the fixed keys as
// fields and the others in Other (see mixedMethods).
func (g *generator) structType(name string, k key, doc string) string {
	fp := ""
	if k.SubkeyType != "" {
		name = goName(k.SubkeyType)
		fp = fmt.Sprintf("%t %#v", g.omitEmptyStrings, k.Subkeys)
		if prev, ok := g.shared[name]; ok && prev.fingerprint == fp {
			return prev.name
		}
	}
	decl := g.unique(name)
	if fp != "" {
		if _, ok := g.shared[name]; !ok {
			g.shared[name] = sharedType{fp, decl}
		}
	}
	w, fixed := wildcard(k)
	var body bytes.Buffer
	g.fields(&body, decl, fixed, nil)
	other := ""
	if w != nil {
		for _, f := range fixed {
			if goName(f.Key) == "Other" {
				log.Fatalf("mdmgen: %s has a key named Other and a wildcard", decl)
			}
		}
		other = g.wildcardValue(decl, k, *w)
		fmt.Fprintf(&body, "\n\t// Other holds the keys other than the fields' (%s).\n\tOther map[string]%s `plist:\"-\" mdm:\"wildcard\"`\n", quote(w.Key), other)
	}
	if doc == "" {
		title := k.Title
		if title == "" {
			title = k.Key
		}
		doc = "is the " + quote(title) + " dictionary."
		if w != nil {
			doc = "is the " + quote(title) + " dictionary: its fixed keys are fields, any other key (" + quote(w.Key) + ") is in Other."
		}
	}
	fmt.Fprintf(&g.buf, "// %s %s\ntype %s struct {\n%s}\n\n", decl, doc, decl, body.String())
	if w != nil {
		g.mixedMethods(decl)
	}
	return decl
}

// mixedMethods writes the plist methods of a struct with fixed keys and a
// wildcard. They are not used by the current schema (no dictionary of its
// commands and check-in messages mixes the two) and rely on the helpers of
// package mdm's wildcard.go.
func (g *generator) mixedMethods(name string) {
	fmt.Fprintf(&g.buf, "// UnmarshalPlist decodes the fixed keys into the fields and the others into Other.\nfunc (d *%s) UnmarshalPlist(f func(any) error) error {\n\ttype plain %s\n\treturn decodeWildcard(f, (*plain)(d), &d.Other)\n}\n\n", name, name)
	fmt.Fprintf(&g.buf, "// MarshalPlist writes the fields and the keys of Other (a field wins over a key of Other of its name).\nfunc (d %s) MarshalPlist() (any, error) {\n\ttype plain %s\n\treturn encodeWildcard(plain(d), d.Other)\n}\n\n", name, name)
}

// wildcard splits a dictionary's subkeys into its wildcard key (ANY ...),
// nil if it has none, and its fixed keys.
func wildcard(k key) (*key, []key) {
	if k.Type != "<dictionary>" {
		return nil, k.Subkeys
	}
	var w *key
	var fixed []key
	for i, sk := range k.Subkeys {
		if !isWildcard(sk.Key) {
			fixed = append(fixed, sk)
			continue
		}
		if w != nil {
			log.Fatalf("mdmgen: %s has two wildcard keys, %q and %q", k.Key, w.Key, sk.Key)
		}
		w = &k.Subkeys[i]
	}
	return w, fixed
}

// isWildcard reports whether a schema key stands for any key: "ANY", or
// "ANY" and what the key is ("ANY app identifier").
func isWildcard(name string) bool {
	return name == "ANY" || strings.HasPrefix(name, "ANY ")
}

// wildcardLabel is what a wildcard's keys are: "app identifier" for
// "ANY app identifier", "" for a bare "ANY".
func wildcardLabel(name string) string {
	return strings.TrimSpace(strings.TrimPrefix(name, "ANY"))
}

// dictName is the name a dictionary's own struct would have: its
// subkeytype, or the name made from its place.
func (g *generator) dictName(name string, k key) string {
	if k.SubkeyType != "" {
		return goName(k.SubkeyType)
	}
	return name
}

// wildcardValue returns the Go type of the values of the dictionary
// parent, whose type name would be dict and whose wildcard key is w. A dictionary value
// is a struct named by its subkeytype, or by dict (less a Dictionary
// suffix) and what the keys name: BooleanDictionary's values, keyed by
// "ANY restriction name", are BooleanRestriction; with nothing to name
// (a bare "ANY", "ANY index") the suffix is Item, as for array elements.
func (g *generator) wildcardValue(dict string, parent key, w key) string {
	w.Presence = "required" // a map holds no absent value
	base := strings.TrimSuffix(dict, "Dictionary")
	if base == "" {
		base = dict
	}
	var words []string
	for _, word := range strings.Fields(strings.TrimPrefix(w.Key, "ANY")) {
		switch strings.ToLower(word) {
		case "name", "identifier", "index", "key", "id":
			continue
		}
		words = append(words, word)
	}
	noun := "Item"
	if len(words) > 0 {
		noun = goName(strings.Join(words, " "))
	}
	vname := base + noun
	if inner, fixed := wildcard(w); w.Type == "<dictionary>" && len(w.Subkeys) > 0 && (inner == nil || len(fixed) > 0) {
		doc := "is a value of the " + quote(parent.Key) + " dictionary"
		if l := wildcardLabel(w.Key); l != "" {
			doc += ", keyed by " + l
		}
		return g.structType(vname, w, doc+".")
	}
	t, _ := g.goType(vname, w)
	return t
}

func (g *generator) unique(name string) string {
	n := name
	for i := 2; g.names[n]; i++ {
		n = fmt.Sprintf("%s%d", name, i)
	}
	g.names[n] = true
	return n
}

// goName turns a schema key into an exported Go identifier.
func goName(key string) string {
	var b strings.Builder
	upper := true
	for _, r := range key {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			upper = true
			continue
		}
		if upper {
			r = unicode.ToUpper(r)
			upper = false
		}
		b.WriteRune(r)
	}
	s := b.String()
	if s == "" || unicode.IsDigit(rune(s[0])) {
		s = "K" + s
	}
	return s
}

func quote(s string) string { return "\"" + s + "\"" }
