package dep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBaseURL is Apple's device assignment API.
const DefaultBaseURL = "https://mdmenrollment.apple.com"

// ProtocolVersion is the X-Server-Protocol-Version the client speaks.
const ProtocolVersion = "3"

// DefaultUserAgent identifies the client to Apple.
const DefaultUserAgent = "custody-dep/1"

// maxResponseBytes caps a response body (a page of 1,000 devices is
// about 500 KiB).
const maxResponseBytes = 32 << 20

// Options tune a Client. The zero value talks to Apple with defaults.
type Options struct {
	BaseURL    string       // DefaultBaseURL when empty: a simulator or proxy otherwise
	HTTPClient *http.Client // one with a 60 s timeout when nil
	UserAgent  string       // DefaultUserAgent when empty
	Logger     *slog.Logger // slog.Default() when nil
	// MaxAttempts bounds the tries of one call that meets 429, 5xx or a
	// network error (6 when zero). Re-authentication does not count.
	MaxAttempts int
	// BaseDelay and MaxDelay bound the exponential backoff between tries
	// (1 s and 60 s when zero); a Retry-After header is honoured up to
	// MaxDelay. Delays have ±25 % jitter.
	BaseDelay, MaxDelay time.Duration
}

// A Client calls the device assignment API with one server token. It
// authenticates with OAuth 1.0a (GET /session), sends the session token in
// X-ADM-Auth-Session on every call, adopts a refreshed session token from
// any response, and authenticates again when the session is refused (401,
// or 403 FORBIDDEN). It is safe for concurrent use.
type Client struct {
	tokens OAuth1Tokens
	base   string
	hc     *http.Client
	ua     string
	log    *slog.Logger
	opts   Options

	mu      sync.Mutex
	session string

	// sleep waits between tries; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// NewClient returns a client for one server token.
func NewClient(tokens OAuth1Tokens, opts Options) *Client {
	c := &Client{tokens: tokens, base: strings.TrimRight(opts.BaseURL, "/"), hc: opts.HTTPClient, ua: opts.UserAgent, log: opts.Logger, opts: opts}
	if c.base == "" {
		c.base = DefaultBaseURL
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: time.Minute}
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.opts.MaxAttempts <= 0 {
		c.opts.MaxAttempts = 6
	}
	if c.opts.BaseDelay <= 0 {
		c.opts.BaseDelay = time.Second
	}
	if c.opts.MaxDelay <= 0 {
		c.opts.MaxDelay = time.Minute
	}
	c.sleep = sleepContext
	return c
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// authenticate gets a new session token with the OAuth-signed GET
// /session.
func (c *Client) authenticate(ctx context.Context) (string, error) {
	u := c.base + "/session"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", c.tokens.authorization(u, time.Now()))
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("dep: GET /session: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return "", fmt.Errorf("dep: GET /session: %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", fmt.Errorf("%w: %w", ErrBadToken, parseError("GET", "/session", resp.StatusCode, body))
	}
	if resp.StatusCode != http.StatusOK {
		return "", parseError("GET", "/session", resp.StatusCode, body)
	}
	var s struct {
		Token string `json:"auth_session_token"`
	}
	if err := json.Unmarshal(body, &s); err != nil || s.Token == "" {
		return "", fmt.Errorf("dep: GET /session: no auth_session_token in the response")
	}
	return s.Token, nil
}

// sessionToken returns the current session token, authenticating first if
// there is none.
func (c *Client) sessionToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != "" {
		return c.session, nil
	}
	s, err := c.authenticate(ctx)
	if err != nil {
		return "", err
	}
	c.session = s
	return s, nil
}

// dropSession forgets a refused session token, unless another call has
// already replaced it.
func (c *Client) dropSession(refused string) {
	c.mu.Lock()
	if c.session == refused {
		c.session = ""
	}
	c.mu.Unlock()
}

func (c *Client) adoptSession(old, s string) {
	c.mu.Lock()
	if c.session == old || c.session == "" {
		c.session = s
	}
	c.mu.Unlock()
}

// maxReauth bounds the re-authentications of one call.
const maxReauth = 2

// do calls the API: method and path, in as the JSON body (nil for none),
// out decoded from a 200. It retries 429, 5xx and network errors with
// backoff, honouring Retry-After, and re-authenticates a refused session.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	reauths := 0
	for attempt := 1; ; attempt++ {
		session, err := c.sessionToken(ctx)
		if err != nil {
			if retryable(err) && attempt < c.opts.MaxAttempts {
				if err := c.wait(ctx, method, path, attempt, 0, err); err != nil {
					return err
				}
				continue
			}
			return err
		}
		status, respBody, hdr, err := c.send(ctx, method, path, body, session)
		if err != nil {
			if ctx.Err() != nil || attempt >= c.opts.MaxAttempts {
				return fmt.Errorf("dep: %s %s: %w", method, path, err)
			}
			if err := c.wait(ctx, method, path, attempt, 0, err); err != nil {
				return err
			}
			continue
		}
		if s := hdr.Get("X-ADM-Auth-Session"); s != "" && s != session {
			c.adoptSession(session, s)
		}
		if status == http.StatusOK {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(respBody, out); err != nil {
				return fmt.Errorf("dep: %s %s: decoding the response: %w", method, path, err)
			}
			return nil
		}
		apiErr := parseError(method, path, status, respBody)
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden && apiErr.Code == CodeForbidden:
			c.dropSession(session)
			if reauths++; reauths > maxReauth {
				return apiErr
			}
			attempt-- // a new session is not a retry
			continue
		case status == http.StatusTooManyRequests || status >= 500:
			if attempt >= c.opts.MaxAttempts {
				return apiErr
			}
			if err := c.wait(ctx, method, path, attempt, retryAfter(hdr.Get("Retry-After")), apiErr); err != nil {
				return err
			}
			continue
		}
		return apiErr
	}
}

func retryable(err error) bool {
	var e *Error
	return !errors.Is(err, ErrBadToken) && (!errors.As(err, &e) || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500)
}

func (c *Client) send(ctx context.Context, method, path string, body []byte, session string) (int, []byte, http.Header, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("X-ADM-Auth-Session", session)
	req.Header.Set("X-Server-Protocol-Version", ProtocolVersion)
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF8")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, data, resp.Header, nil
}

// wait sleeps before try attempt+1: the server's Retry-After when it gave
// one, else exponential backoff, with jitter, at most MaxDelay.
func (c *Client) wait(ctx context.Context, method, path string, attempt int, after time.Duration, cause error) error {
	d := after
	if d <= 0 {
		d = c.opts.BaseDelay << min(attempt-1, 20)
	}
	d = min(d, c.opts.MaxDelay)
	d += time.Duration((rand.Float64() - 0.5) / 2 * float64(d)) // ±25 %
	if after > 0 && d < after && after <= c.opts.MaxDelay {
		d = after // never earlier than the server asked
	}
	c.log.Warn("dep: retrying", "method", method, "path", path, "attempt", attempt, "delay", d, "err", cause)
	return c.sleep(ctx, d)
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// Account returns the account of the server token (GET /account).
func (c *Client) Account(ctx context.Context) (*Account, error) {
	var a Account
	return &a, c.do(ctx, http.MethodGet, "/account", nil, &a)
}

// cursorRequest is the body of fetch and sync.
type cursorRequest struct {
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// FetchDevices returns a page of every device assigned to the server
// (POST /server/devices): from the start with an empty cursor, else from
// the cursor of the previous page. limit is the page size (Apple's default
// 100, maximum 1000); 0 leaves it to the server.
func (c *Client) FetchDevices(ctx context.Context, cursor string, limit int) (*DeviceList, error) {
	var l DeviceList
	return &l, c.do(ctx, http.MethodPost, "/server/devices", cursorRequest{cursor, limit}, &l)
}

// SyncDevices returns a page of the changes since a cursor (POST
// /devices/sync): devices added, modified or deleted (OpType).
func (c *Client) SyncDevices(ctx context.Context, cursor string, limit int) (*DeviceList, error) {
	var l DeviceList
	return &l, c.do(ctx, http.MethodPost, "/devices/sync", cursorRequest{cursor, limit}, &l)
}

type serialsRequest struct {
	Devices []string `json:"devices"`
}

// DeviceDetails returns the details of devices by serial number (POST
// /devices); a serial the server cannot see has ResponseStatus
// NOT_ACCESSIBLE.
func (c *Client) DeviceDetails(ctx context.Context, serials []string) (map[string]Device, error) {
	var resp struct {
		Devices map[string]Device `json:"devices"`
	}
	return resp.Devices, c.do(ctx, http.MethodPost, "/devices", serialsRequest{serials}, &resp)
}

// DisownDevices releases devices from the organisation (POST
// /devices/disown) and returns the result per serial. It cannot be undone.
func (c *Client) DisownDevices(ctx context.Context, serials []string) (map[string]string, error) {
	var resp struct {
		Devices map[string]string `json:"devices"`
	}
	return resp.Devices, c.do(ctx, http.MethodPost, "/devices/disown", serialsRequest{serials}, &resp)
}

// DefineProfile defines a profile (POST /profile), assigning it to
// p.Devices if any, and returns its UUID and per-serial results.
func (c *Client) DefineProfile(ctx context.Context, p *Profile) (*ProfileResult, error) {
	var r ProfileResult
	return &r, c.do(ctx, http.MethodPost, "/profile", p, &r)
}

// Profile returns a defined profile (GET /profile?profile_uuid=).
func (c *Client) Profile(ctx context.Context, uuid string) (*Profile, error) {
	var p Profile
	return &p, c.do(ctx, http.MethodGet, "/profile?profile_uuid="+url.QueryEscape(uuid), nil, &p)
}

// AssignProfile assigns a profile to devices (POST /profile/devices) and
// returns the result per serial.
func (c *Client) AssignProfile(ctx context.Context, uuid string, serials []string) (*ProfileResult, error) {
	var r ProfileResult
	req := struct {
		ProfileUUID string   `json:"profile_uuid"`
		Devices     []string `json:"devices"`
	}{uuid, serials}
	return &r, c.do(ctx, http.MethodPost, "/profile/devices", req, &r)
}

// RemoveProfile removes the profile assignment of devices (DELETE
// /profile/devices) and returns the result per serial.
func (c *Client) RemoveProfile(ctx context.Context, serials []string) (map[string]string, error) {
	var resp struct {
		Devices map[string]string `json:"devices"`
	}
	return resp.Devices, c.do(ctx, http.MethodDelete, "/profile/devices", serialsRequest{serials}, &resp)
}
