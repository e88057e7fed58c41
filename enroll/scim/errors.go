package scim

import (
	"errors"
	"fmt"
	"strconv"
)

// An Error is a SCIM error response (RFC 7644 §3.12): an HTTP status,
// and for a 400 a scimType saying what kind of mistake it was.
type Error struct {
	Status   int
	ScimType string // invalidFilter, tooMany, uniqueness, mutability, invalidSyntax, invalidPath, noTarget, invalidValue, invalidVers, sensitive
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType != "" {
		return fmt.Sprintf("scim: %d %s: %s", e.Status, e.ScimType, e.Detail)
	}
	return fmt.Sprintf("scim: %d: %s", e.Status, e.Detail)
}

// errorJSON is an Error as it goes on the wire; status is a string.
type errorJSON struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

func (e *Error) body() errorJSON {
	return errorJSON{Schemas: []string{SchemaError}, Status: strconv.Itoa(e.Status), ScimType: e.ScimType, Detail: e.Detail}
}

func invalidValue(format string, args ...any) *Error {
	return &Error{Status: 400, ScimType: "invalidValue", Detail: fmt.Sprintf(format, args...)}
}

func invalidSyntaxf(format string, args ...any) *Error {
	return &Error{Status: 400, ScimType: "invalidSyntax", Detail: fmt.Sprintf(format, args...)}
}

// Errors of a Store.
var (
	ErrNotFound   = errors.New("scim: no such resource")
	ErrUniqueness = errors.New("scim: the unique key is taken")
	ErrConflict   = errors.New("scim: the resource changed meanwhile") // its version is not the one given
)
