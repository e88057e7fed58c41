package dep

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Error codes Apple's device assignment API returns in error bodies.
const (
	CodeCursorRequired       = "CURSOR_REQUIRED"
	CodeInvalidCursor        = "INVALID_CURSOR"
	CodeExhaustedCursor      = "EXHAUSTED_CURSOR"
	CodeExpiredCursor        = "EXPIRED_CURSOR"
	CodeForbidden            = "FORBIDDEN"
	CodeUnauthorized         = "UNAUTHORIZED"
	CodeTermsNotSigned       = "T_C_NOT_SIGNED"
	CodeMalformedRequestBody = "MALFORMED_REQUEST_BODY"
	CodeDeviceIDRequired     = "DEVICE_ID_REQUIRED"
	CodeProfileUUIDRequired  = "PROFILE_UUID_REQUIRED"
	CodeProfileNotFound      = "PROFILE_NOT_FOUND"
	CodeTooManyRequests      = "TOO_MANY_REQUESTS"
)

// An Error is a refusal from the device assignment API: the HTTP status
// and the error code of its body. errors.Is matches it against the
// sentinel errors of its code (ErrExhaustedCursor...).
type Error struct {
	Method, Path string
	StatusCode   int
	Code         string // EXHAUSTED_CURSOR, ...; empty when the body had none
	Message      string // the body's message, or the body itself
}

func (e *Error) Error() string {
	msg := e.Code
	if e.Message != "" && e.Message != e.Code {
		if msg != "" {
			msg += ": "
		}
		msg += e.Message
	}
	return fmt.Sprintf("dep: %s %s: HTTP %d %s", e.Method, e.Path, e.StatusCode, msg)
}

// Is reports whether target is the sentinel error of e's code.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.code == e.Code
}

type sentinel struct{ code string }

func (s *sentinel) Error() string { return "dep: " + s.code }

// Sentinel errors, matched by errors.Is against an *Error with their code.
var (
	ErrCursorRequired  error = &sentinel{CodeCursorRequired}
	ErrInvalidCursor   error = &sentinel{CodeInvalidCursor}
	ErrExhaustedCursor error = &sentinel{CodeExhaustedCursor}
	ErrExpiredCursor   error = &sentinel{CodeExpiredCursor}
	ErrForbidden       error = &sentinel{CodeForbidden}
	ErrUnauthorized    error = &sentinel{CodeUnauthorized}
	ErrTermsNotSigned  error = &sentinel{CodeTermsNotSigned}
)

// ErrBadToken is returned when Apple refuses the server token itself (the
// OAuth session request): a revoked, expired or mistyped token.
var ErrBadToken = errors.New("dep: the server token was refused")

// parseError reads an error body: Apple sends the code as plain text
// (EXHAUSTED_CURSOR), sometimes quoted, or as JSON with code and message
// fields.
func parseError(method, path string, status int, body []byte) *Error {
	e := &Error{Method: method, Path: path, StatusCode: status}
	text := strings.TrimSpace(string(body))
	var j struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if strings.HasPrefix(text, "{") && json.Unmarshal(body, &j) == nil && j.Code != "" {
		e.Code, e.Message = j.Code, j.Message
		return e
	}
	text = strings.Trim(text, `"`)
	if isCode(text) {
		e.Code = text
		return e
	}
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	e.Message = text
	return e
}

// isCode reports whether s looks like an error code: upper-case letters,
// digits and underscores.
func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
