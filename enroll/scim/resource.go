package scim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// A Resource is a SCIM resource as JSON decodes it: attribute names in
// their schema's spelling, extension attributes under the extension's
// URN, values normalized to their types (strings, bools, json.Number,
// RFC 3339 strings for dateTime, maps, slices).
type Resource map[string]any

// A ResourceType is what an endpoint serves: its core schema and
// extensions (RFC 7643 §6).
type ResourceType struct {
	Name       string
	Endpoint   string // "/Users"
	Schema     *Schema
	Extensions []*Schema
}

// The resource types this service provider serves.
var (
	UserType  = &ResourceType{Name: "User", Endpoint: "/Users", Schema: &UserSchema, Extensions: []*Schema{&EnterpriseUserSchema}}
	GroupType = &ResourceType{Name: "Group", Endpoint: "/Groups", Schema: &GroupSchema}
)

// attribute finds an attribute of the resource type by name (core or
// common), or an extension by URN.
func (rt *ResourceType) attribute(name string) *Attribute {
	if a := find(rt.Schema.Attributes, name); a != nil {
		return a
	}
	return find(commonAttributes, name)
}

func (rt *ResourceType) extension(urn string) *Schema {
	for _, e := range rt.Extensions {
		if strings.EqualFold(e.ID, urn) {
			return e
		}
	}
	return nil
}

// resolve finds the attribute a path names: "userName", "name.givenName",
// "urn:…:enterprise:2.0:User:department", "urn:…:core:2.0:User:userName".
// It returns the container key ("" for the core schema, else the
// extension URN), the attribute and the sub-attribute (nil if none).
func (rt *ResourceType) resolve(uri, name, sub string) (string, *Attribute, *Attribute, error) {
	container := ""
	attrs := rt.Schema.Attributes
	if uri != "" && !strings.EqualFold(uri, rt.Schema.ID) {
		ext := rt.extension(uri)
		if ext == nil {
			return "", nil, nil, fmt.Errorf("unknown schema %q", uri)
		}
		container, attrs = ext.ID, ext.Attributes
	}
	a := find(attrs, name)
	if a == nil && container == "" {
		a = find(commonAttributes, name)
	}
	if a == nil {
		return "", nil, nil, fmt.Errorf("unknown attribute %q", strings.TrimPrefix(uri+":"+name, ":"))
	}
	if sub == "" {
		return container, a, nil, nil
	}
	s := a.sub(sub)
	if s == nil {
		return "", nil, nil, fmt.Errorf("unknown attribute %q", a.Name+"."+sub)
	}
	return container, a, s, nil
}

// splitURN splits "urn:…:User:department" into the schema URN and the
// attribute path after it, for the URNs of the resource type.
func (rt *ResourceType) splitURN(path string) (uri, rest string) {
	for _, s := range append([]*Schema{rt.Schema}, rt.Extensions...) {
		if len(path) > len(s.ID) && strings.EqualFold(path[:len(s.ID)], s.ID) && path[len(s.ID)] == ':' {
			return s.ID, path[len(s.ID)+1:]
		}
	}
	return "", path
}

// normalize validates a client's representation of a resource and
// returns it in canonical form: known attributes only, read-only ones
// dropped, values of their types (a boolean may come as the string
// "True" or "false", as Entra ID sends them).
func (rt *ResourceType) normalize(in map[string]any) (Resource, error) {
	out := Resource{}
	for k, v := range in {
		switch {
		case strings.EqualFold(k, "schemas"):
			continue
		case rt.extension(k) != nil:
			ext := rt.extension(k)
			obj, ok := v.(map[string]any)
			if v == nil {
				continue
			}
			if !ok {
				return nil, invalidValue("%s must be an object", ext.ID)
			}
			norm := map[string]any{}
			for ek, ev := range obj {
				a := find(ext.Attributes, ek)
				if a == nil || a.Mutability == "readOnly" || ev == nil {
					continue
				}
				nv, err := normalizeValue(a, ev)
				if err != nil {
					return nil, err
				}
				norm[a.Name] = nv
			}
			if len(norm) > 0 {
				out[ext.ID] = norm
			}
		default:
			uri, rest := rt.splitURN(k)
			if uri != "" && !strings.EqualFold(uri, rt.Schema.ID) {
				continue // "urn:…:enterprise:2.0:User:department" as a key: handled by PATCH paths only
			}
			a := rt.attribute(rest)
			if a == nil || a.Mutability == "readOnly" || v == nil {
				continue // unknown attributes are ignored, as RFC 7644 §3.3 allows
			}
			nv, err := normalizeValue(a, v)
			if err != nil {
				return nil, err
			}
			out[a.Name] = nv
		}
	}
	return out, nil
}

// normalizeValue checks and converts one value of an attribute.
func normalizeValue(a *Attribute, v any) (any, error) {
	if a.MultiValued {
		list, ok := v.([]any)
		if !ok {
			list = []any{v} // a lone value where a list belongs
		}
		out := make([]any, 0, len(list))
		for _, e := range list {
			if e == nil {
				continue
			}
			nv, err := normalizeSingle(a, e)
			if err != nil {
				return nil, err
			}
			out = append(out, nv)
		}
		return out, nil
	}
	return normalizeSingle(a, v)
}

func normalizeSingle(a *Attribute, v any) (any, error) {
	switch a.Type {
	case typeString, typeReference:
		s, ok := v.(string)
		if !ok {
			return nil, invalidValue("%s must be a string", a.Name)
		}
		return s, nil
	case typeBoolean:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			switch strings.ToLower(b) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, invalidValue("%s must be a boolean", a.Name)
	case typeInteger:
		if n, ok := v.(json.Number); ok {
			if _, err := n.Int64(); err == nil {
				return n, nil
			}
		}
		return nil, invalidValue("%s must be an integer", a.Name)
	case typeDateTime:
		s, ok := v.(string)
		if !ok {
			return nil, invalidValue("%s must be a dateTime string", a.Name)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, invalidValue("%s: %q is not an RFC 3339 dateTime", a.Name, s)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	case typeComplex:
		obj, ok := v.(map[string]any)
		if str, isString := v.(string); isString && a.sub("value") != nil {
			// Entra ID sends a manager as its id alone.
			obj, ok = map[string]any{"value": str}, true
		}
		if !ok {
			return nil, invalidValue("%s must be an object", a.Name)
		}
		out := map[string]any{}
		for k, sv := range obj {
			s := a.sub(k)
			if s == nil || sv == nil {
				continue
			}
			nv, err := normalizeSingle(s, sv)
			if err != nil {
				return nil, err
			}
			out[s.Name] = nv
		}
		return out, nil
	}
	return v, nil
}

// checkRequired reports a required attribute the resource lacks.
func (rt *ResourceType) checkRequired(r Resource) error {
	for _, a := range rt.Schema.Attributes {
		if !a.Required {
			continue
		}
		if v, ok := r[a.Name]; !ok || v == "" {
			return invalidValue("%s is required", a.Name)
		}
	}
	return nil
}

// project returns what a response shows of a resource: attributes
// returned "never" left out; with attributes, only those (and those
// returned "always"); with excluded, all but those.
func (rt *ResourceType) project(r Resource, attributes, excluded []string) Resource {
	out := Resource{}
	keep := func(container string, a *Attribute) bool {
		switch {
		case a.Returned == "never":
			return false
		case a.Returned == "always":
			return true
		}
		full := a.Name
		if container != "" {
			full = container + ":" + a.Name
		}
		if len(attributes) > 0 {
			return listed(attributes, full, container)
		}
		return !listed(excluded, full, container)
	}
	for k, v := range r {
		if ext := rt.extension(k); ext != nil {
			obj, _ := v.(map[string]any)
			sub := map[string]any{}
			for ek, ev := range obj {
				if a := find(ext.Attributes, ek); a != nil && keep(ext.ID, a) {
					sub[ek] = ev
				}
			}
			if len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if k == "schemas" {
			out[k] = v
			continue
		}
		if a := rt.attribute(k); a != nil && keep("", a) {
			out[k] = v
		}
	}
	return out
}

// listed reports whether an attribute is named in a list (its name, its
// full URN path, or a sub-attribute of it; or its extension whole).
func listed(list []string, full, container string) bool {
	name := full[strings.LastIndexByte(full, ':')+1:]
	for _, l := range list {
		l = strings.TrimSpace(l)
		base, _, _ := strings.Cut(l, ".")
		if strings.EqualFold(base, full) || container == "" && strings.EqualFold(base, name) ||
			container != "" && strings.EqualFold(l, container) {
			return true
		}
		if container == "" {
			continue
		}
		if strings.EqualFold(l, container+":"+name) {
			return true
		}
	}
	return false
}
