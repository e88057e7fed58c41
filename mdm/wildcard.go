package mdm

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/micromdm/plist"
)

// Apple's schema writes a dictionary whose keys are not fixed (bundle
// identifiers, restriction names, profile identifiers) as one key named
// "ANY" or "ANY app identifier". The generated types hold such a
// dictionary as a map: ManagedApplicationListResponse.ManagedApplicationList
// is a map[string]ManagedApplicationItem keyed by bundle identifier. A
// dictionary with fixed keys and a wildcard (none in the current schema)
// gets a struct with the fixed keys as fields and the other keys in a map
// field Other, whose generated UnmarshalPlist and MarshalPlist call
// decodeWildcard and encodeWildcard.

// deferredValue keeps a plist value undecoded: its UnmarshalPlist stores
// the decoder's function, which decodes the value when called later.
type deferredValue struct{ decode func(any) error }

func (d *deferredValue) UnmarshalPlist(f func(any) error) error {
	d.decode = f
	return nil
}

// decodeWildcard decodes a dictionary into fixed (a pointer to a struct
// with the dictionary's fixed keys as fields and no plist methods) and its
// other keys into *rest.
func decodeWildcard[T any](f func(any) error, fixed any, rest *map[string]T) error {
	if err := f(fixed); err != nil {
		return err
	}
	var all map[string]deferredValue
	if err := f(&all); err != nil {
		return err
	}
	known := plistFields(reflect.TypeOf(fixed).Elem())
	for k, v := range all {
		if _, ok := known.fields[k]; ok {
			continue
		}
		var t T
		if err := v.decode(&t); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if *rest == nil {
			*rest = make(map[string]T)
		}
		(*rest)[k] = t
	}
	return nil
}

// encodeWildcard is the dictionary of fixed (a struct with no plist
// methods) with the keys of rest added; a field wins over a key of rest of
// the same name.
func encodeWildcard[T any](fixed any, rest map[string]T) (any, error) {
	raw, err := plist.Marshal(fixed)
	if err != nil {
		return nil, err
	}
	var d map[string]any
	if err := plist.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	for k, v := range rest {
		if _, ok := d[k]; ok {
			continue
		}
		var val any = v
		// The encoder does not look for a Marshaler behind an interface.
		if m, ok := val.(plist.Marshaler); ok {
			if val, err = m.MarshalPlist(); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
		}
		d[k] = val
	}
	return d, nil
}

// UnknownKeys lists the keys of the plist dictionary raw that a decode
// into typed (a pointer to a generated message, command or response type,
// or any struct with plist tags) does not keep: keys with no field, at any
// depth. A key is a path from the top: "QueryResponses.NewKey". Map keys
// (a wildcard of the schema: bundle identifiers, restriction names) are
// written "*" and array elements "[]", so a key missing from every app of
// a ManagedApplicationList is listed once, as
// "ManagedApplicationList.*.NewKey". The list is sorted; it is nil when
// nothing is dropped or raw is not a plist dictionary. Values held by an
// any field (map[string]any, []any) are kept whole and never listed.
func UnknownKeys(raw []byte, typed any) []string {
	var d map[string]any
	if err := plist.Unmarshal(raw, &d); err != nil {
		return nil
	}
	return unknownKeys(reflect.TypeOf(typed), d)
}

// unknownKeys is UnknownKeys over a decoded dictionary.
func unknownKeys(t reflect.Type, d map[string]any) []string {
	if t == nil {
		return nil
	}
	seen := map[string]bool{}
	walkUnknown(t, d, "", seen)
	if len(seen) == 0 {
		return nil
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var timeType = reflect.TypeFor[time.Time]()

func walkUnknown(t reflect.Type, v any, path string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d, ok := v.(map[string]any)
		if !ok {
			return
		}
		fs := plistFields(t)
		for k, val := range d {
			if ft, ok := fs.fields[k]; ok {
				walkUnknown(ft, val, join(path, k), out)
			} else if fs.rest != nil {
				walkUnknown(fs.rest, val, join(path, "*"), out)
			} else {
				out[join(path, k)] = true
			}
		}
	case reflect.Map:
		d, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, val := range d {
			walkUnknown(t.Elem(), val, join(path, "*"), out)
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			return
		}
		for _, val := range a {
			walkUnknown(t.Elem(), val, path+"[]", out)
		}
	}
	// Interfaces (any) keep whatever they are given; scalars have no keys.
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structKeys are the plist keys of a struct type and the types of their
// fields, embedded structs' promoted as the plist encoder does, and the
// value type of its Other map when it has one (a mixed dictionary).
type structKeys struct {
	fields map[string]reflect.Type
	rest   reflect.Type
}

var structKeysCache sync.Map // reflect.Type -> *structKeys

func plistFields(t reflect.Type) *structKeys {
	if c, ok := structKeysCache.Load(t); ok {
		return c.(*structKeys)
	}
	s := &structKeys{fields: map[string]reflect.Type{}}
	addFields(t, s)
	c, _ := structKeysCache.LoadOrStore(t, s)
	return c.(*structKeys)
}

// addFields adds t's fields, then those its embedded structs promote: a
// field hides a deeper one of the same key.
func addFields(t reflect.Type, s *structKeys) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("plist")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "-" {
			if f.Tag.Get("mdm") == "wildcard" && f.Type.Kind() == reflect.Map && s.rest == nil {
				s.rest = f.Type.Elem()
			}
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Name() == "" {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, ft)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := s.fields[name]; !ok {
			s.fields[name] = f.Type
		}
	}
	for _, e := range embedded {
		addFields(e, s)
	}
}
