package scim

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ContentType is SCIM's media type (RFC 7644 §8.1).
const ContentType = "application/scim+json"

// maxBody caps a request body (a group of many thousand members fits).
const maxBody = 8 << 20

// Paging limits of list responses.
const (
	defaultCount = 100
	maxCount     = 1000
)

// A Server is a SCIM 2.0 service provider (RFC 7643, RFC 7644) for Users
// and Groups, as Okta and Entra ID provision them. Mount it with its
// prefix stripped: http.StripPrefix("/scim/v2", s).
type Server struct {
	Store Store
	// BaseURL is where it is mounted, for meta.location
	// ("https://mdm.example.com/scim/v2").
	BaseURL string
	// Changed, when set, is told of each change once it is stored: before
	// is nil for a creation, after nil for a deletion.
	Changed func(ctx context.Context, before, after *Stored)
	Logger  *slog.Logger
	Now     func() time.Time
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// NewToken mints a bearer token for an identity provider, stores its
// hash, and returns its value (shown once).
func NewToken(ctx context.Context, store Store, name string, now time.Time) (*Token, string, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	value := "scim_" + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(value))
	id := make([]byte, 6)
	rand.Read(id)
	t := &Token{ID: hex.EncodeToString(id), Name: name, Hash: sum[:], Created: now}
	return t, value, store.PutToken(ctx, t)
}

// authorized returns the stored token matching the request's bearer
// token, nil when there is none.
func (s *Server) authorized(r *http.Request) (*Token, error) {
	value, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(value)))
	tokens, err := s.Store.Tokens(r.Context())
	if err != nil {
		return nil, err
	}
	var found *Token
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(t.Hash, sum[:]) == 1 {
			found = t
		}
	}
	return found, nil
}

type tokenKey struct{}

// TokenName returns the name of the token that authorised the request
// whose context (or a context derived from it, as Changed gets) is ctx.
func TokenName(ctx context.Context) string {
	name, _ := ctx.Value(tokenKey{}).(string)
	return name
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := s.authorized(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	if tok != nil {
		r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok.Name))
	}
	if tok == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custody-scim"`)
		s.write(w, http.StatusUnauthorized, (&Error{Status: 401, Detail: "a valid bearer token is required (custody scim token new)"}).body())
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 0 || len(parts) > 2 {
		s.fail(w, &Error{Status: 404, Detail: "no such endpoint: " + r.URL.Path})
		return
	}
	id := ""
	if len(parts) == 2 {
		id = parts[1]
	}
	switch parts[0] {
	case "Users":
		s.resources(w, r, UserType, id)
	case "Groups":
		s.resources(w, r, GroupType, id)
	case "ServiceProviderConfig":
		s.discovery(w, r, id == "", serviceProviderConfig(s.BaseURL))
	case "ResourceTypes":
		s.discovery(w, r, true, resourceTypes(s.BaseURL, id))
	case "Schemas":
		s.discovery(w, r, true, schemas(s.BaseURL, id))
	default:
		s.fail(w, &Error{Status: 404, Detail: "no such endpoint: " + r.URL.Path})
	}
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request, ok bool, body any) {
	switch {
	case r.Method != http.MethodGet:
		s.fail(w, &Error{Status: 405, Detail: "discovery endpoints are read-only"})
	case !ok || body == nil:
		s.fail(w, &Error{Status: 404, Detail: "no such resource: " + r.URL.Path})
	default:
		s.write(w, http.StatusOK, body)
	}
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string) {
	switch {
	case id == "" && r.Method == http.MethodGet:
		s.list(w, r, rt)
	case id == "" && r.Method == http.MethodPost:
		s.create(w, r, rt)
	case id != "" && r.Method == http.MethodGet:
		s.get(w, r, rt, id)
	case id != "" && r.Method == http.MethodPut:
		s.replace(w, r, rt, id)
	case id != "" && r.Method == http.MethodPatch:
		s.patch(w, r, rt, id)
	case id != "" && r.Method == http.MethodDelete:
		s.delete(w, r, rt, id)
	default:
		w.Header().Set("Allow", map[bool]string{true: "GET, POST", false: "GET, PUT, PATCH, DELETE"}[id == ""])
		s.fail(w, &Error{Status: 405, Detail: fmt.Sprintf("%s is not allowed here", r.Method)})
	}
}

func (s *Server) write(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(code)
	if body != nil {
		json.NewEncoder(w).Encode(body)
	}
}

// fail writes an error: a SCIM error for a client's mistake, a 500 (and
// a log line) for the server's.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, ErrNotFound):
		e = &Error{Status: 404, Detail: err.Error()}
	case errors.Is(err, ErrUniqueness):
		e = &Error{Status: 409, ScimType: "uniqueness", Detail: err.Error()}
	case errors.Is(err, context.Canceled):
		return
	default:
		s.log().Error("scim", "err", err)
		e = &Error{Status: 500, Detail: "the server could not complete the request"}
	}
	s.write(w, e.Status, e.body())
}

// decode reads a JSON object body, numbers as json.Number.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.TrimSpace(strings.ToLower(mt))
		if mt != ContentType && mt != "application/json" {
			return &Error{Status: 415, Detail: fmt.Sprintf("content type %q: send %s", mt, ContentType)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: 413, Detail: fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return invalidSyntaxf("the body is not a JSON object: %v", err)
	}
	if dec.More() {
		return invalidSyntaxf("the body holds more than one JSON value")
	}
	return nil
}

func etag(st *Stored) string { return `W/"` + strconv.Itoa(st.Version) + `"` }

// checkIfMatch applies If-Match (RFC 7644 §3.14): 412 when the client's
// version is not the stored one.
func checkIfMatch(r *http.Request, st *Stored) error {
	h := r.Header.Get("If-Match")
	if h == "" || strings.TrimSpace(h) == "*" {
		return nil
	}
	for _, v := range strings.Split(h, ",") {
		v = strings.TrimSpace(v)
		if v == etag(st) || v == strings.TrimPrefix(etag(st), "W/") {
			return nil
		}
	}
	return &Error{Status: 412, Detail: fmt.Sprintf("the resource is at version %s, not %s", etag(st), h)}
}

// represent builds the full representation of a stored resource: schemas,
// id, meta, and for a user the groups it is a member of.
func (s *Server) represent(rt *ResourceType, st *Stored, groups map[string][]any) Resource {
	out := deepCopy(st.Attrs)
	schemas := []any{rt.Schema.ID}
	for _, e := range rt.Extensions {
		if _, ok := out[e.ID]; ok {
			schemas = append(schemas, e.ID)
		}
	}
	out["schemas"] = schemas
	out["id"] = st.ID
	out["meta"] = map[string]any{
		"resourceType": rt.Name,
		"created":      st.Created.UTC().Format(time.RFC3339Nano),
		"lastModified": st.Modified.UTC().Format(time.RFC3339Nano),
		"location":     s.BaseURL + rt.Endpoint + "/" + st.ID,
		"version":      etag(st),
	}
	if rt == UserType && groups != nil {
		if g := groups[st.ID]; len(g) > 0 {
			out["groups"] = g
		}
	}
	return out
}

// memberships maps each user's ID to the groups it is a direct member of.
func (s *Server) memberships(ctx context.Context) (map[string][]any, error) {
	out := map[string][]any{}
	err := s.Store.List(ctx, GroupType.Name, func(g *Stored) bool {
		members, _ := g.Attrs["members"].([]any)
		for _, m := range members {
			mm, _ := m.(map[string]any)
			id, _ := mm["value"].(string)
			out[id] = append(out[id], map[string]any{"value": g.ID, "display": g.Attrs["displayName"],
				"type": "direct", "$ref": s.BaseURL + "/Groups/" + g.ID})
		}
		return true
	})
	return out, err
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// respond writes a resource with its ETag and Location.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, rt *ResourceType, st *Stored, code int) {
	var groups map[string][]any
	if rt == UserType {
		var err error
		if groups, err = s.memberships(r.Context()); err != nil {
			s.fail(w, err)
			return
		}
	}
	q := r.URL.Query()
	res := rt.project(s.represent(rt, st, groups), splitList(q.Get("attributes")), splitList(q.Get("excludedAttributes")))
	w.Header().Set("ETag", etag(st))
	w.Header().Set("Location", s.BaseURL+rt.Endpoint+"/"+st.ID)
	s.write(w, code, res)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string) {
	st, err := s.Store.Get(r.Context(), rt.Name, id)
	if err != nil {
		s.fail(w, notFound(rt, id, err))
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag(st) || inm == "*") {
		w.Header().Set("ETag", etag(st))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.respond(w, r, rt, st, http.StatusOK)
}

func notFound(rt *ResourceType, id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return &Error{Status: 404, Detail: fmt.Sprintf("%s %s not found", rt.Name, id)}
	}
	return err
}

// ListResponse is a page of a query (RFC 7644 §3.4.2).
type ListResponse struct {
	Schemas      []string   `json:"schemas"`
	TotalResults int        `json:"totalResults"`
	StartIndex   int        `json:"startIndex"`
	ItemsPerPage int        `json:"itemsPerPage"`
	Resources    []Resource `json:"Resources"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, rt *ResourceType) {
	q := r.URL.Query()
	var f *Filter
	if fs := q.Get("filter"); fs != "" {
		var err error
		if f, err = ParseFilter(rt, fs); err != nil {
			s.fail(w, err)
			return
		}
	}
	start, count := 1, defaultCount
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.fail(w, invalidValue("startIndex %q is not an integer", v))
			return
		}
		start = max(n, 1) // RFC 7644 §3.4.2.4: less than 1 is 1
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.fail(w, invalidValue("count %q is not an integer", v))
			return
		}
		count = min(max(n, 0), maxCount) // negative is 0
	}
	var groups map[string][]any
	if rt == UserType {
		var err error
		if groups, err = s.memberships(r.Context()); err != nil {
			s.fail(w, err)
			return
		}
	}
	attrs, excluded := splitList(q.Get("attributes")), splitList(q.Get("excludedAttributes"))
	resp := ListResponse{Schemas: []string{SchemaListResponse}, StartIndex: start, Resources: []Resource{}}
	err := s.Store.List(r.Context(), rt.Name, func(st *Stored) bool {
		res := s.represent(rt, st, groups)
		if f != nil && !f.Match(res) {
			return true
		}
		resp.TotalResults++
		if resp.TotalResults >= start && len(resp.Resources) < count {
			resp.Resources = append(resp.Resources, rt.project(res, attrs, excluded))
		}
		return true
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	resp.ItemsPerPage = len(resp.Resources)
	s.write(w, http.StatusOK, resp)
}

// input decodes and normalizes a resource a client sends.
func (s *Server) input(w http.ResponseWriter, r *http.Request, rt *ResourceType) (Resource, error) {
	var in map[string]any
	if err := decode(w, r, &in); err != nil {
		return nil, err
	}
	return rt.normalize(in)
}

// check validates a resource as it is to be stored and returns its
// unique key: a user's userName (lower-cased), none for a group, whose
// members must exist.
func (s *Server) check(ctx context.Context, rt *ResourceType, res Resource) (string, error) {
	if err := rt.checkRequired(res); err != nil {
		return "", err
	}
	if rt == UserType {
		return strings.ToLower(res["userName"].(string)), nil
	}
	members, _ := res["members"].([]any)
	for _, m := range members {
		mm, _ := m.(map[string]any)
		id, _ := mm["value"].(string)
		if id == "" {
			return "", invalidValue("a member without a value (the member's id)")
		}
		if _, err := s.Store.Get(ctx, UserType.Name, id); errors.Is(err, ErrNotFound) {
			if _, err := s.Store.Get(ctx, GroupType.Name, id); errors.Is(err, ErrNotFound) {
				return "", invalidValue("member %s is neither a user nor a group", id)
			} else if err != nil {
				return "", err
			}
		} else if err != nil {
			return "", err
		}
	}
	return "", nil
}

func uniqueness(err error, res Resource) error {
	if errors.Is(err, ErrUniqueness) {
		return &Error{Status: 409, ScimType: "uniqueness", Detail: fmt.Sprintf("userName %q is taken", res["userName"])}
	}
	return err
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, rt *ResourceType) {
	res, err := s.input(w, r, rt)
	if err != nil {
		s.fail(w, err)
		return
	}
	key, err := s.check(r.Context(), rt, res)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := s.now()
	id := make([]byte, 16)
	rand.Read(id)
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // a version 4 UUID
	h := hex.EncodeToString(id)
	st := &Stored{Type: rt.Name, ID: h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:],
		Key: key, Version: 1, Created: now, Modified: now, Attrs: res}
	if err := s.Store.Create(r.Context(), st); err != nil {
		s.fail(w, uniqueness(err, res))
		return
	}
	s.log().Info("scim: created", "type", rt.Name, "id", st.ID, "name", displayOf(st))
	s.changed(r.Context(), nil, st)
	s.respond(w, r, rt, st, http.StatusCreated)
}

func displayOf(st *Stored) any {
	if v, ok := st.Attrs["userName"]; ok {
		return v
	}
	return st.Attrs["displayName"]
}

func (s *Server) changed(ctx context.Context, before, after *Stored) {
	if s.Changed != nil {
		s.Changed(context.WithoutCancel(ctx), before, after)
	}
}

// update stores a new version of a resource made by next from the stored
// one, after If-Match.
func (s *Server) update(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string, next func(Resource) (Resource, error)) {
	var before, proposed *Stored
	st, err := s.Store.Update(r.Context(), rt.Name, id, func(st *Stored) (*Stored, error) {
		if err := checkIfMatch(r, st); err != nil {
			return nil, err
		}
		res, err := next(st.Attrs)
		if err != nil {
			return nil, err
		}
		key, err := s.check(r.Context(), rt, res)
		if err != nil {
			return nil, err
		}
		b, out := *st, *st
		out.Attrs, out.Key, out.Version, out.Modified = res, key, st.Version+1, s.now()
		before, proposed = &b, &out
		return &out, nil
	})
	if err != nil {
		var res Resource
		if proposed != nil {
			res = proposed.Attrs // the userName that collided is the new one
		}
		s.fail(w, uniqueness(notFound(rt, id, err), res))
		return
	}
	s.changed(r.Context(), before, st)
	s.respond(w, r, rt, st, http.StatusOK)
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string) {
	res, err := s.input(w, r, rt)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.update(w, r, rt, id, func(Resource) (Resource, error) { return res, nil })
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string) {
	var req PatchRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if len(req.Operations) == 0 {
		s.fail(w, invalidSyntaxf("a PATCH needs Operations"))
		return
	}
	s.update(w, r, rt, id, func(have Resource) (Resource, error) { return rt.Patch(have, req.Operations) })
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, rt *ResourceType, id string) {
	if r.Header.Get("If-Match") != "" {
		st, err := s.Store.Get(r.Context(), rt.Name, id)
		if err != nil {
			s.fail(w, notFound(rt, id, err))
			return
		}
		if err := checkIfMatch(r, st); err != nil {
			s.fail(w, err)
			return
		}
	}
	st, err := s.Store.Delete(r.Context(), rt.Name, id)
	if err != nil {
		s.fail(w, notFound(rt, id, err))
		return
	}
	if rt == UserType {
		s.leaveGroups(r.Context(), id)
	}
	s.log().Info("scim: deleted", "type", rt.Name, "id", id, "name", displayOf(st))
	s.changed(r.Context(), st, nil)
	w.WriteHeader(http.StatusNoContent)
}

// leaveGroups removes a deleted user from the groups it was in.
func (s *Server) leaveGroups(ctx context.Context, id string) {
	gone := []any{map[string]any{"value": id}}
	var in []string
	err := s.Store.List(ctx, GroupType.Name, func(g *Stored) bool {
		if members, _ := g.Attrs["members"].([]any); containsValue(members, gone[0]) {
			in = append(in, g.ID)
		}
		return true
	})
	for _, gid := range in {
		if err != nil {
			break
		}
		var before *Stored
		var after *Stored
		after, err = s.Store.Update(ctx, GroupType.Name, gid, func(g *Stored) (*Stored, error) {
			b := *g
			before = &b
			out := *g
			out.Attrs = deepCopy(g.Attrs)
			removeValues(out.Attrs, GroupType.attribute("members"), gone)
			out.Version, out.Modified = g.Version+1, s.now()
			return &out, nil
		})
		if err == nil {
			s.changed(ctx, before, after)
		}
	}
	if err != nil {
		s.log().Error("scim: removing a deleted user from its groups", "id", id, "err", err)
	}
}
