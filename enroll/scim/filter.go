package scim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// A Filter is a parsed SCIM filter (RFC 7644 §3.4.2.2) for a resource
// type, checked against its schema.
type Filter struct {
	rt   *ResourceType
	expr filter.Expression
}

// ParseFilter parses a filter. An unknown attribute or a malformed filter
// is an *Error with scimType invalidFilter.
func ParseFilter(rt *ResourceType, s string) (*Filter, error) {
	expr, err := filter.ParseFilter([]byte(s))
	if err != nil {
		return nil, &Error{Status: 400, ScimType: "invalidFilter", Detail: fmt.Sprintf("filter %q: %v", s, err)}
	}
	f := &Filter{rt: rt, expr: expr}
	if err := f.check(expr, nil); err != nil {
		return nil, &Error{Status: 400, ScimType: "invalidFilter", Detail: fmt.Sprintf("filter %q: %v", s, err)}
	}
	return f, nil
}

// check resolves every attribute path of an expression; within a value
// path, paths are sub-attributes of its attribute.
func (f *Filter) check(e filter.Expression, within *Attribute) error {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		if err := f.check(e.Left, within); err != nil {
			return err
		}
		return f.check(e.Right, within)
	case *filter.NotExpression:
		return f.check(e.Expression, within)
	case *filter.ValuePath:
		_, a, _, err := f.resolve(e.AttributePath)
		if err != nil {
			return err
		}
		if a.Type != typeComplex {
			return fmt.Errorf("%s is not complex: it has no sub-attributes to filter", a.Name)
		}
		return f.check(e.ValueFilter, a)
	case *filter.AttributeExpression:
		if within != nil {
			if within.sub(e.AttributePath.AttributeName) == nil {
				return fmt.Errorf("unknown attribute %s.%s", within.Name, e.AttributePath.AttributeName)
			}
			return nil
		}
		_, _, _, err := f.resolve(e.AttributePath)
		return err
	}
	return fmt.Errorf("unsupported expression %T", e)
}

func (f *Filter) resolve(p filter.AttributePath) (string, *Attribute, *Attribute, error) {
	return f.rt.resolve(p.URI(), p.AttributeName, p.SubAttributeName())
}

// Match reports whether a resource matches the filter.
func (f *Filter) Match(r Resource) bool { return f.eval(f.expr, r, nil, nil) }

// eval evaluates an expression against a resource, or, within a value
// path, against one value of a complex attribute (elem, of attribute a).
func (f *Filter) eval(e filter.Expression, r Resource, a *Attribute, elem map[string]any) bool {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		if e.Operator == filter.AND {
			return f.eval(e.Left, r, a, elem) && f.eval(e.Right, r, a, elem)
		}
		return f.eval(e.Left, r, a, elem) || f.eval(e.Right, r, a, elem)
	case *filter.NotExpression:
		return !f.eval(e.Expression, r, a, elem)
	case *filter.ValuePath:
		container, va, _, _ := f.resolve(e.AttributePath)
		for _, v := range values(r, container, va) {
			if obj, ok := v.(map[string]any); ok && f.eval(e.ValueFilter, r, va, obj) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		var attr *Attribute
		var vals []any
		if elem != nil {
			attr = a.sub(e.AttributePath.AttributeName)
			if v, ok := elem[attr.Name]; ok {
				vals = []any{v}
			}
		} else {
			container, pa, sub, _ := f.resolve(e.AttributePath)
			attr = pa
			vals = values(r, container, pa)
			if sub != nil {
				attr, vals = sub, subValues(vals, sub)
			} else if pa.Type == typeComplex && pa.MultiValued {
				// "emails eq x" compares the values' value sub-attribute.
				if s := pa.sub("value"); s != nil {
					attr, vals = s, subValues(vals, s)
				}
			}
		}
		if e.Operator == filter.PR {
			for _, v := range vals {
				if present(v) {
					return true
				}
			}
			return false
		}
		for _, v := range vals {
			if compare(attr, v, e.Operator, e.CompareValue) {
				return true
			}
		}
		return false
	}
	return false
}

// values returns an attribute's values in a resource: one for a single
// value, each for a multi-valued one.
func values(r Resource, container string, a *Attribute) []any {
	var v any
	if container == "" {
		v = r[a.Name]
	} else if ext, ok := r[container].(map[string]any); ok {
		v = ext[a.Name]
	}
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		return []any{v}
	}
}

func subValues(vals []any, sub *Attribute) []any {
	var out []any
	for _, v := range vals {
		if obj, ok := v.(map[string]any); ok {
			if sv, ok := obj[sub.Name]; ok {
				out = append(out, sv)
			}
		}
	}
	return out
}

func present(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

// compare applies an operator to a stored value and a filter's value, by
// the attribute's type: strings case-insensitively unless case-exact,
// dateTimes as instants, booleans and numbers as such.
func compare(a *Attribute, stored any, op filter.CompareOperator, want any) bool {
	switch a.Type {
	case typeBoolean:
		b, ok1 := stored.(bool)
		w, ok2 := want.(bool)
		if !ok1 || !ok2 {
			return false
		}
		switch op {
		case filter.EQ:
			return b == w
		case filter.NE:
			return b != w
		}
		return false
	case typeInteger:
		n, err := stored.(json.Number).Float64()
		w, ok := toFloat(want)
		if err != nil || !ok {
			return false
		}
		return order(op, cmpFloat(n, w))
	case typeDateTime:
		s, _ := stored.(string)
		ws, _ := want.(string)
		t1, err1 := time.Parse(time.RFC3339Nano, s)
		t2, err2 := time.Parse(time.RFC3339Nano, ws)
		if err1 != nil || err2 != nil {
			return false
		}
		return order(op, t1.Compare(t2))
	}
	s, ok1 := stored.(string)
	w, ok2 := want.(string)
	if !ok1 || !ok2 {
		return false
	}
	if !a.CaseExact {
		s, w = strings.ToLower(s), strings.ToLower(w)
	}
	switch op {
	case filter.CO:
		return strings.Contains(s, w)
	case filter.SW:
		return strings.HasPrefix(s, w)
	case filter.EW:
		return strings.HasSuffix(s, w)
	}
	return order(op, strings.Compare(s, w))
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// order applies an equality or ordering operator to a comparison.
func order(op filter.CompareOperator, c int) bool {
	switch op {
	case filter.EQ:
		return c == 0
	case filter.NE:
		return c != 0
	case filter.GT:
		return c > 0
	case filter.GE:
		return c >= 0
	case filter.LT:
		return c < 0
	case filter.LE:
		return c <= 0
	}
	return false
}
