package scim

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// A PatchOp is one operation of a PATCH request (RFC 7644 §3.5.2).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// A PatchRequest is the body of a PATCH.
type PatchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []PatchOp `json:"Operations"`
}

func invalidPath(format string, args ...any) *Error {
	return &Error{Status: 400, ScimType: "invalidPath", Detail: fmt.Sprintf(format, args...)}
}

func noTarget(format string, args ...any) *Error {
	return &Error{Status: 400, ScimType: "noTarget", Detail: fmt.Sprintf(format, args...)}
}

func mutability(name string) *Error {
	return &Error{Status: 400, ScimType: "mutability", Detail: fmt.Sprintf("%s is read-only", name)}
}

// Patch applies a PATCH request's operations, in order, to a copy of a
// resource, as identity providers send them: operation names in any
// case; add and replace without a path whose value names attributes
// ("name.givenName" and extension URNs included, as Entra ID sends);
// value paths (members[value eq "id"], emails[type eq "work"].value);
// removal of members by a value list (Entra ID).
func (rt *ResourceType) Patch(r Resource, ops []PatchOp) (Resource, error) {
	out := deepCopy(r)
	for i, op := range ops {
		if err := rt.apply(out, op); err != nil {
			if e, ok := err.(*Error); ok {
				e.Detail = fmt.Sprintf("operation %d (%s %s): %s", i+1, op.Op, op.Path, e.Detail)
				return nil, e
			}
			return nil, err
		}
	}
	return out, nil
}

func (rt *ResourceType) apply(r Resource, op PatchOp) error {
	kind := strings.ToLower(op.Op)
	switch kind {
	case "add", "replace", "remove":
	default:
		return invalidSyntaxf("op %q: want add, replace or remove", op.Op)
	}
	if strings.TrimSpace(op.Path) == "" {
		if kind == "remove" {
			return noTarget("remove needs a path")
		}
		obj, ok := op.Value.(map[string]any)
		if !ok {
			return invalidValue("without a path, the value must be an object of attributes")
		}
		for k, v := range obj {
			switch strings.ToLower(k) {
			case "schemas", "meta", "id":
				continue // Okta's group rename sends the id along; it cannot change
			}
			if ext := rt.extension(k); ext != nil {
				sub, ok := v.(map[string]any)
				if !ok {
					return invalidValue("%s must be an object", ext.ID)
				}
				for ek, ev := range sub {
					if err := rt.applyPath(r, kind, ext.ID+":"+ek, ev); err != nil {
						return err
					}
				}
				continue
			}
			if err := rt.applyPath(r, kind, k, v); err != nil {
				return err
			}
		}
		return nil
	}
	return rt.applyPath(r, kind, op.Path, op.Value)
}

// applyPath applies one operation at a path.
func (rt *ResourceType) applyPath(r Resource, kind, path string, value any) error {
	uri, rest := rt.splitURN(path)
	p, err := filter.ParsePath([]byte(rest))
	if err != nil {
		return invalidPath("path %q: %v", path, err)
	}
	container, a, sub, err := rt.resolve(uri, p.AttributePath.AttributeName, p.AttributePath.SubAttributeName())
	if err != nil {
		return invalidPath("path %q: %v", path, err)
	}
	if a.Mutability == "readOnly" || sub != nil && sub.Mutability == "readOnly" {
		if strings.EqualFold(a.Name, "id") || strings.EqualFold(a.Name, "meta") || strings.EqualFold(a.Name, "groups") {
			return mutability(a.Name)
		}
	}
	if p.SubAttribute != nil && sub == nil {
		if sub = a.sub(*p.SubAttribute); sub == nil {
			return invalidPath("path %q: %s has no sub-attribute %s", path, a.Name, *p.SubAttribute)
		}
	}
	obj := containerOf(r, container, kind != "remove")
	if obj == nil {
		return nil // removing from an extension the resource lacks
	}
	if p.ValueExpression != nil {
		f := &Filter{rt: rt, expr: p.ValueExpression}
		if a.Type != typeComplex || !a.MultiValued {
			return invalidPath("path %q: a value filter needs a multi-valued complex attribute", path)
		}
		if err := f.check(p.ValueExpression, a); err != nil {
			return invalidPath("path %q: %v", path, err)
		}
		return applyFiltered(obj, a, sub, f, kind, value, path)
	}
	if sub != nil {
		return applySub(obj, a, sub, kind, value, path)
	}
	switch kind {
	case "remove":
		if list, ok := value.([]any); ok && a.MultiValued && len(list) > 0 {
			return removeValues(obj, a, list) // Entra ID: remove these members
		}
		delete(obj, a.Name)
		return nil
	case "replace":
		if value == nil {
			delete(obj, a.Name)
			return nil
		}
		nv, err := normalizeValue(a, value)
		if err != nil {
			return err
		}
		if a.Type == typeComplex && !a.MultiValued {
			merged, _ := obj[a.Name].(map[string]any)
			obj[a.Name] = mergeObjects(merged, nv.(map[string]any))
			return nil
		}
		obj[a.Name] = nv
		return nil
	}
	// add
	if value == nil {
		return invalidValue("add of %s without a value", a.Name)
	}
	nv, err := normalizeValue(a, value)
	if err != nil {
		return err
	}
	switch {
	case a.MultiValued:
		have, _ := obj[a.Name].([]any)
		for _, v := range nv.([]any) {
			if !containsValue(have, v) {
				have = append(have, v)
			}
		}
		obj[a.Name] = have
	case a.Type == typeComplex:
		merged, _ := obj[a.Name].(map[string]any)
		obj[a.Name] = mergeObjects(merged, nv.(map[string]any))
	default:
		obj[a.Name] = nv
	}
	return nil
}

// containerOf returns the map an attribute lives in: the resource, or
// its extension's object (created when create is set).
func containerOf(r Resource, container string, create bool) map[string]any {
	if container == "" {
		return r
	}
	ext, ok := r[container].(map[string]any)
	if !ok {
		if !create {
			return nil
		}
		ext = map[string]any{}
		r[container] = ext
	}
	return ext
}

// applySub sets or removes a sub-attribute of a complex attribute
// ("name.givenName"); of a multi-valued one, in every value.
func applySub(obj map[string]any, a, sub *Attribute, kind string, value any, path string) error {
	var nv any
	if kind != "remove" && value != nil {
		var err error
		if nv, err = normalizeSingle(sub, value); err != nil {
			return err
		}
	}
	set := func(m map[string]any) {
		if kind == "remove" || nv == nil {
			delete(m, sub.Name)
		} else {
			m[sub.Name] = nv
		}
	}
	if a.MultiValued {
		list, _ := obj[a.Name].([]any)
		if len(list) == 0 && kind != "remove" {
			obj[a.Name] = []any{map[string]any{sub.Name: nv}}
			return nil
		}
		for _, v := range list {
			if m, ok := v.(map[string]any); ok {
				set(m)
			}
		}
		return nil
	}
	m, _ := obj[a.Name].(map[string]any)
	if m == nil {
		if kind == "remove" {
			return nil
		}
		m = map[string]any{}
		obj[a.Name] = m
	}
	set(m)
	if len(m) == 0 {
		delete(obj, a.Name)
	}
	return nil
}

// applyFiltered applies an operation to the values of a multi-valued
// attribute that match a value filter: members[value eq "id"] removes a
// member; emails[type eq "work"].value sets the work address, adding it
// when there is none (as Entra ID expects).
func applyFiltered(obj map[string]any, a, sub *Attribute, f *Filter, kind string, value any, path string) error {
	list, _ := obj[a.Name].([]any)
	var kept []any
	matched := 0
	for _, v := range list {
		m, ok := v.(map[string]any)
		if !ok || !f.eval(f.expr, nil, a, m) {
			kept = append(kept, v)
			continue
		}
		matched++
		switch {
		case kind == "remove" && sub == nil:
			continue // drop the value
		case kind == "remove":
			delete(m, sub.Name)
		case sub != nil:
			nv, err := normalizeSingle(sub, value)
			if err != nil {
				return err
			}
			m[sub.Name] = nv
		default:
			nv, err := normalizeSingle(a, value)
			if err != nil {
				return err
			}
			for k, sv := range nv.(map[string]any) {
				m[k] = sv
			}
		}
		kept = append(kept, m)
	}
	if matched == 0 {
		if kind == "remove" {
			return nil // nothing to remove is not an error for a client converging state
		}
		// A new value, made of the filter's equalities and the value.
		m := equalities(f.expr)
		if m == nil {
			return noTarget("no value of %s matches %s", a.Name, path)
		}
		if sub != nil {
			nv, err := normalizeSingle(sub, value)
			if err != nil {
				return err
			}
			m[sub.Name] = nv
		} else if nv, err := normalizeSingle(a, value); err == nil {
			for k, sv := range nv.(map[string]any) {
				m[k] = sv
			}
		} else {
			return err
		}
		kept = append(kept, m)
	}
	if len(kept) == 0 {
		delete(obj, a.Name)
	} else {
		obj[a.Name] = kept
	}
	return nil
}

// equalities returns the attribute values a filter of "eq"s joined by
// "and" pins down, or nil for any other filter.
func equalities(e filter.Expression) map[string]any {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if e.Operator != filter.EQ {
			return nil
		}
		return map[string]any{e.AttributePath.AttributeName: e.CompareValue}
	case *filter.LogicalExpression:
		if e.Operator != filter.AND {
			return nil
		}
		l, r := equalities(e.Left), equalities(e.Right)
		if l == nil || r == nil {
			return nil
		}
		for k, v := range r {
			l[k] = v
		}
		return l
	}
	return nil
}

// removeValues removes from a multi-valued attribute the values whose
// "value" matches one of list's.
func removeValues(obj map[string]any, a *Attribute, list []any) error {
	drop := map[string]bool{}
	for _, v := range list {
		m, ok := v.(map[string]any)
		if !ok {
			return invalidValue("removing from %s: each value must be an object with a value", a.Name)
		}
		s, _ := m["value"].(string)
		drop[s] = true
	}
	have, _ := obj[a.Name].([]any)
	var kept []any
	for _, v := range have {
		if m, ok := v.(map[string]any); ok {
			if s, _ := m["value"].(string); drop[s] {
				continue
			}
		}
		kept = append(kept, v)
	}
	if len(kept) == 0 {
		delete(obj, a.Name)
	} else {
		obj[a.Name] = kept
	}
	return nil
}

// containsValue reports whether a list holds a value: equal, or for
// complex values with the same "value" (a member added twice).
func containsValue(list []any, v any) bool {
	vm, isMap := v.(map[string]any)
	for _, have := range list {
		if isMap {
			if hm, ok := have.(map[string]any); ok && vm["value"] != nil && hm["value"] == vm["value"] {
				return true
			}
		}
		if reflect.DeepEqual(have, v) {
			return true
		}
	}
	return false
}

func mergeObjects(have, add map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range have {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

// deepCopy copies a resource through JSON, keeping numbers as
// json.Number.
func deepCopy(r Resource) Resource {
	data, _ := json.Marshal(r)
	var out Resource
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	dec.Decode(&out)
	if out == nil {
		out = Resource{}
	}
	return out
}
