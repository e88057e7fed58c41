package zerotouch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/api/googleapi"
)

// An Error is a refusal from a Google API: the HTTP status, Google's
// status (NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED...) and its
// message. errors.Is matches it against ErrNotFound, ErrPermission,
// ErrInvalid and ErrExhausted.
type Error struct {
	Code    int
	Status  string
	Message string
	// Retried counts the tries that ended in 429 or 503 before this one.
	Retried int
	err     *googleapi.Error
}

func (e *Error) Error() string {
	return fmt.Sprintf("zerotouch: HTTP %d %s: %s", e.Code, e.Status, e.Message)
}

// Unwrap returns Google's own error.
func (e *Error) Unwrap() error { return e.err }

// Is matches the sentinel of e's status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == http.StatusNotFound || e.Status == "NOT_FOUND"
	case ErrPermission:
		return e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized
	case ErrInvalid:
		return e.Code == http.StatusBadRequest
	case ErrExhausted:
		return e.Code == http.StatusTooManyRequests
	}
	return false
}

// Sentinels matched by *Error.
var (
	ErrNotFound   = errors.New("zerotouch: not found")
	ErrPermission = errors.New("zerotouch: permission denied")
	ErrInvalid    = errors.New("zerotouch: invalid request")
	ErrExhausted  = errors.New("zerotouch: quota exhausted")
)

// wrapError turns a googleapi.Error into an *Error.
func wrapError(err error, retried int) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return err
	}
	e := &Error{Code: ge.Code, Message: ge.Message, Retried: retried, err: ge}
	if len(ge.Errors) > 0 && e.Message == "" {
		e.Message = ge.Errors[0].Message
	}
	e.Status = statusOf(ge)
	// The Android Management API has answered 500 for a resource that
	// does not exist (a device deleted a moment ago); such an answer is
	// read as the 404 it means.
	if e.Code == http.StatusInternalServerError && strings.Contains(strings.ToLower(e.Message), "not found") {
		e.Code, e.Status = http.StatusNotFound, "NOT_FOUND"
	}
	return e
}

// statusOf reads Google's canonical status from an error body
// ({"error":{"status":"NOT_FOUND"}}), else from the HTTP code.
func statusOf(ge *googleapi.Error) string {
	var body struct {
		Error struct {
			Status string `json:"status"`
		} `json:"error"`
	}
	if jsonUnmarshal([]byte(ge.Body), &body) == nil && body.Error.Status != "" {
		return body.Error.Status
	}
	switch ge.Code {
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return http.StatusText(ge.Code)
}

// retryPolicy bounds the retries of 429 and 503 answers.
type retryPolicy struct {
	attempts  int
	base, max time.Duration
}

var defaultRetry = retryPolicy{attempts: 6, base: 500 * time.Millisecond, max: 30 * time.Second}

// call runs fn, retrying 429 (RESOURCE_EXHAUSTED) and 503 (UNAVAILABLE)
// with exponential backoff and jitter, or the server's Retry-After.
func call[T any](ctx context.Context, p retryPolicy, fn func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		out, err := fn()
		if err == nil {
			return out, nil
		}
		var ge *googleapi.Error
		if !errors.As(err, &ge) || (ge.Code != http.StatusTooManyRequests && ge.Code != http.StatusServiceUnavailable) || attempt >= p.attempts {
			var zero T
			return zero, wrapError(err, attempt-1)
		}
		d := p.base << min(attempt-1, 16)
		if s, perr := strconv.Atoi(ge.Header.Get("Retry-After")); perr == nil && s > 0 {
			d = time.Duration(s) * time.Second
		}
		d = min(d, p.max)
		d += time.Duration((rand.Float64() - 0.5) / 2 * float64(d))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, ctx.Err()
		case <-t.C:
		}
	}
}
