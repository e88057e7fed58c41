package scim

import "strings"

// Schema URNs (RFC 7643 §8.7.1, §8.7.2; RFC 7644 §3.4.2, §3.5.2, §3.12).
const (
	SchemaUser           = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaEnterpriseUser = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaGroup          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaListResponse   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatchOp        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaError          = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPConfig       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResourceType   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema         = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Attribute types (RFC 7643 §2.3).
const (
	typeString    = "string"
	typeBoolean   = "boolean"
	typeInteger   = "integer"
	typeDateTime  = "dateTime"
	typeReference = "reference"
	typeComplex   = "complex"
)

// An Attribute describes one attribute of a schema, as /Schemas serves it
// and as this package validates, filters, patches and returns resources.
type Attribute struct {
	Name           string      `json:"name"`
	Type           string      `json:"type"`
	MultiValued    bool        `json:"multiValued"`
	Description    string      `json:"description,omitempty"`
	Required       bool        `json:"required"`
	CaseExact      bool        `json:"caseExact"`
	Mutability     string      `json:"mutability"` // readOnly, readWrite, immutable, writeOnly
	Returned       string      `json:"returned"`   // always, never, default, request
	Uniqueness     string      `json:"uniqueness"` // none, server, global
	SubAttributes  []Attribute `json:"subAttributes,omitempty"`
	ReferenceTypes []string    `json:"referenceTypes,omitempty"`
}

// A Schema is a resource's core schema or an extension.
type Schema struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Attributes  []Attribute `json:"attributes"`
}

// sub finds a sub-attribute by name, case-insensitively.
func (a *Attribute) sub(name string) *Attribute {
	return find(a.SubAttributes, name)
}

func find(attrs []Attribute, name string) *Attribute {
	for i := range attrs {
		if strings.EqualFold(attrs[i].Name, name) {
			return &attrs[i]
		}
	}
	return nil
}

// attr builds an attribute with the defaults most attributes share.
func attr(name, typ string, opts ...func(*Attribute)) Attribute {
	a := Attribute{Name: name, Type: typ, Mutability: "readWrite", Returned: "default", Uniqueness: "none"}
	for _, o := range opts {
		o(&a)
	}
	return a
}

func multi(a *Attribute)     { a.MultiValued = true }
func required(a *Attribute)  { a.Required = true }
func caseExact(a *Attribute) { a.CaseExact = true }
func readOnly(a *Attribute)  { a.Mutability = "readOnly" }
func immutable(a *Attribute) { a.Mutability = "immutable" }
func writeOnly(a *Attribute) { a.Mutability = "writeOnly"; a.Returned = "never" }
func always(a *Attribute)    { a.Returned = "always" }
func unique(a *Attribute)    { a.Uniqueness = "server" }
func subs(s ...Attribute) func(*Attribute) {
	return func(a *Attribute) { a.SubAttributes = s }
}
func refs(types ...string) func(*Attribute) {
	return func(a *Attribute) { a.ReferenceTypes = types }
}

// multiValuedOf is the usual shape of a multi-valued complex attribute:
// value, display, type, primary.
func multiValuedOf(name string, extra ...Attribute) Attribute {
	s := append([]Attribute{
		attr("value", typeString),
		attr("display", typeString),
		attr("type", typeString),
		attr("primary", typeBoolean),
	}, extra...)
	return attr(name, typeComplex, multi, subs(s...))
}

// commonAttributes are those of every resource (RFC 7643 §3.1).
var commonAttributes = []Attribute{
	attr("id", typeString, readOnly, always, caseExact, unique),
	attr("externalId", typeString, caseExact),
	attr("meta", typeComplex, readOnly, subs(
		attr("resourceType", typeString, readOnly, caseExact),
		attr("created", typeDateTime, readOnly),
		attr("lastModified", typeDateTime, readOnly),
		attr("location", typeReference, readOnly, caseExact, refs("uri")),
		attr("version", typeString, readOnly, caseExact),
	)),
}

// UserSchema is the core User schema, with the attributes identity
// providers send (RFC 7643 §4.1).
var UserSchema = Schema{ID: SchemaUser, Name: "User", Description: "User Account", Attributes: []Attribute{
	attr("userName", typeString, required, unique),
	attr("name", typeComplex, subs(
		attr("formatted", typeString),
		attr("familyName", typeString),
		attr("givenName", typeString),
		attr("middleName", typeString),
		attr("honorificPrefix", typeString),
		attr("honorificSuffix", typeString),
	)),
	attr("displayName", typeString),
	attr("nickName", typeString),
	attr("profileUrl", typeReference, refs("external")),
	attr("title", typeString),
	attr("userType", typeString),
	attr("preferredLanguage", typeString),
	attr("locale", typeString),
	attr("timezone", typeString),
	attr("active", typeBoolean),
	attr("password", typeString, writeOnly),
	multiValuedOf("emails"),
	multiValuedOf("phoneNumbers"),
	multiValuedOf("ims"),
	multiValuedOf("photos"),
	attr("addresses", typeComplex, multi, subs(
		attr("formatted", typeString),
		attr("streetAddress", typeString),
		attr("locality", typeString),
		attr("region", typeString),
		attr("postalCode", typeString),
		attr("country", typeString),
		attr("type", typeString),
		attr("primary", typeBoolean),
	)),
	attr("groups", typeComplex, multi, readOnly, subs(
		attr("value", typeString, readOnly),
		attr("$ref", typeReference, readOnly, refs("Group")),
		attr("display", typeString, readOnly),
		attr("type", typeString, readOnly),
	)),
	multiValuedOf("entitlements"),
	multiValuedOf("roles"),
	attr("x509Certificates", typeComplex, multi, subs(
		attr("value", typeString),
		attr("display", typeString),
		attr("type", typeString),
		attr("primary", typeBoolean),
	)),
}}

// EnterpriseUserSchema is the enterprise extension of User (RFC 7643
// §4.3).
var EnterpriseUserSchema = Schema{ID: SchemaEnterpriseUser, Name: "EnterpriseUser", Description: "Enterprise User", Attributes: []Attribute{
	attr("employeeNumber", typeString),
	attr("costCenter", typeString),
	attr("organization", typeString),
	attr("division", typeString),
	attr("department", typeString),
	attr("manager", typeComplex, subs(
		attr("value", typeString),
		attr("$ref", typeReference, refs("User")),
		attr("displayName", typeString, readOnly),
	)),
}}

// GroupSchema is the core Group schema (RFC 7643 §4.2).
var GroupSchema = Schema{ID: SchemaGroup, Name: "Group", Description: "Group", Attributes: []Attribute{
	attr("displayName", typeString, required),
	attr("members", typeComplex, multi, subs(
		attr("value", typeString, immutable),
		attr("$ref", typeReference, immutable, refs("User", "Group")),
		attr("display", typeString),
		attr("type", typeString),
	)),
}}
