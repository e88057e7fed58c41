package scim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll/scim"
	"github.com/custodymdm/custody/storage/bolt"
)

type client struct {
	t     *testing.T
	url   string
	token string
	store scim.Store
}

func newServer(t *testing.T) (*client, *[]string) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "custody.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var changes []string
	srv := &scim.Server{Store: db.SCIM(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Changed: func(_ context.Context, before, after *scim.Stored) {
			switch {
			case before == nil:
				changes = append(changes, "create "+after.Type)
			case after == nil:
				changes = append(changes, "delete "+before.Type)
			default:
				changes = append(changes, "update "+after.Type)
			}
		}}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", srv))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	srv.BaseURL = hs.URL + "/scim/v2"
	_, token, err := scim.NewToken(context.Background(), db.SCIM(), "okta", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, url: hs.URL + "/scim/v2", token: token, store: db.SCIM()}, &changes
}

// do sends a request and decodes the JSON answer.
func (c *client) do(method, path string, body any, headers ...string) (int, map[string]any, http.Header) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = strings.NewReader(string(data))
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if rd != nil {
		req.Header.Set("Content-Type", scim.ContentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			c.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, data)
		}
	}
	if resp.StatusCode >= 400 && out != nil {
		if s, _ := out["schemas"].([]any); len(s) != 1 || s[0] != scim.SchemaError || out["status"] != fmt.Sprint(resp.StatusCode) {
			c.t.Errorf("%s %s: %d with a body that is not a SCIM error: %s", method, path, resp.StatusCode, data)
		}
	}
	if ct := resp.Header.Get("Content-Type"); len(data) > 0 && ct != scim.ContentType {
		c.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out, resp.Header
}

// expect checks a status (and, for an error, its scimType).
func (c *client) expect(code int, scimType string, method, path string, body any, headers ...string) map[string]any {
	c.t.Helper()
	got, out, _ := c.do(method, path, body, headers...)
	if got != code || scimType != "" && out["scimType"] != scimType {
		c.t.Fatalf("%s %s: %d %v, want %d %s", method, path, got, out, code, scimType)
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// oktaUser is the body Okta's SCIM 2.0 integration POSTs to create a user.
func oktaUser(userName, given, family string) map[string]any {
	return map[string]any{
		"schemas":     []string{scim.SchemaUser},
		"userName":    userName,
		"name":        map[string]any{"givenName": given, "familyName": family},
		"emails":      []any{map[string]any{"primary": true, "value": userName, "type": "work"}},
		"displayName": given + " " + family, "locale": "en-US", "externalId": "00u" + given,
		"groups": []any{}, "password": "1mP0ssible!", "active": true,
	}
}

func list(c *client, path string) (total int, ids []string, res []map[string]any) {
	c.t.Helper()
	out := c.expect(200, "", "GET", path, nil)
	if s, _ := out["schemas"].([]any); len(s) != 1 || s[0] != scim.SchemaListResponse {
		c.t.Errorf("%s: schemas %v", path, out["schemas"])
	}
	n, err := out["totalResults"].(json.Number).Int64()
	if err != nil {
		c.t.Fatalf("%s: totalResults %v is not an integer", path, out["totalResults"])
	}
	for _, k := range []string{"startIndex", "itemsPerPage"} {
		if _, err := out[k].(json.Number).Int64(); err != nil {
			c.t.Fatalf("%s: %s %v is not an integer", path, k, out[k])
		}
	}
	rs, _ := out["Resources"].([]any)
	for _, r := range rs {
		m := r.(map[string]any)
		ids = append(ids, str(m["id"]))
		res = append(res, m)
	}
	return int(n), ids, res
}

func TestAuth(t *testing.T) {
	c, _ := newServer(t)
	for _, auth := range []string{"", "Bearer nope", "Basic b2t0YTpzZWNyZXQ="} {
		req, _ := http.NewRequest("GET", c.url+"/Users", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 401 || e["status"] != "401" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: %d %v", auth, resp.StatusCode, e)
		}
	}
	c.expect(200, "", "GET", "/Users", nil)
	// A second token works beside the first; revoked, it does not.
	t2, v2, _ := scim.NewToken(context.Background(), c.store, "entra", time.Now())
	old := c.token
	c.token = v2
	c.expect(200, "", "GET", "/Users", nil)
	c.store.DeleteToken(context.Background(), t2.ID)
	c.expect(401, "", "GET", "/Users", nil)
	c.token = old
	c.expect(200, "", "GET", "/Users", nil)
	if tokens, _ := c.store.Tokens(context.Background()); strings.Contains(fmt.Sprint(tokens), old) {
		t.Errorf("a token is stored in the clear")
	}
}

func TestDiscovery(t *testing.T) {
	c, _ := newServer(t)
	sp := c.expect(200, "", "GET", "/ServiceProviderConfig", nil)
	if sp["patch"].(map[string]any)["supported"] != true || sp["filter"].(map[string]any)["supported"] != true ||
		sp["etag"].(map[string]any)["supported"] != true || sp["bulk"].(map[string]any)["supported"] != false {
		t.Errorf("ServiceProviderConfig %v", sp)
	}
	total, ids, res := list(c, "/ResourceTypes")
	if total != 2 || fmt.Sprint(ids) != "[User Group]" || res[0]["endpoint"] != "/Users" ||
		res[0]["schemaExtensions"].([]any)[0].(map[string]any)["schema"] != scim.SchemaEnterpriseUser {
		t.Errorf("ResourceTypes %v", res)
	}
	c.expect(200, "", "GET", "/ResourceTypes/User", nil)
	total, ids, _ = list(c, "/Schemas")
	if total != 3 || ids[0] != scim.SchemaUser {
		t.Errorf("Schemas %v", ids)
	}
	user := c.expect(200, "", "GET", "/Schemas/"+scim.SchemaUser, nil)
	found := false
	for _, a := range user["attributes"].([]any) {
		if a := a.(map[string]any); a["name"] == "userName" && a["uniqueness"] == "server" && a["required"] == true {
			found = true
		}
	}
	if !found {
		t.Errorf("the User schema lacks a required, unique userName")
	}
	c.expect(404, "", "GET", "/Schemas/urn:nope", nil)
	c.expect(405, "", "POST", "/ServiceProviderConfig", "{}")
	c.expect(404, "", "GET", "/Nothing", nil)
}

// Okta's provisioning, as its SCIM 2.0 guide has it: look up by userName,
// create, read, deactivate with a pathless replace, replace whole; groups
// created, renamed with their id in the value, members added and removed.
func TestOktaProvisioning(t *testing.T) {
	c, changes := newServer(t)
	if total, _, _ := list(c, `/Users?filter=`+url.QueryEscape(`userName eq "ana@example.com"`)+`&startIndex=1&count=100`); total != 0 {
		t.Fatalf("found %d before creating", total)
	}
	created := c.expect(201, "", "POST", "/Users", oktaUser("ana@example.com", "Ana", "Lima"))
	id := str(created["id"])
	meta := created["meta"].(map[string]any)
	if id == "" || created["password"] != nil || meta["resourceType"] != "User" || meta["version"] != `W/"1"` ||
		meta["location"] != c.url+"/Users/"+id || created["active"] != true {
		t.Fatalf("created %v", created)
	}
	c.expect(409, "uniqueness", "POST", "/Users", oktaUser("ANA@example.com", "Ana", "Again"))
	other := str(c.expect(201, "", "POST", "/Users", oktaUser("dee@example.com", "Dee", "Ross"))["id"])
	clash := c.expect(409, "uniqueness", "PATCH", "/Users/"+other, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "path": "userName", "value": "ana@EXAMPLE.com"}}})
	if !strings.Contains(str(clash["detail"]), "ana@EXAMPLE.com") {
		t.Errorf("the uniqueness error names %q, not the userName that collided", clash["detail"])
	}
	c.expect(204, "", "DELETE", "/Users/"+other, nil)
	total, ids, _ := list(c, `/Users?filter=`+url.QueryEscape(`userName eq "Ana@Example.com"`))
	if total != 1 || ids[0] != id {
		t.Errorf("userName lookup is not case-insensitive: %d %v", total, ids)
	}
	// Deactivation: a replace without a path.
	out := c.expect(200, "", "PATCH", "/Users/"+id, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "value": map[string]any{"active": false}}}})
	if out["active"] != false || out["meta"].(map[string]any)["version"] != `W/"2"` {
		t.Errorf("after deactivation %v", out)
	}
	// PUT replaces the whole user.
	put := oktaUser("ana@example.com", "Ana", "Lima-Souza")
	put["id"] = id
	out = c.expect(200, "", "PUT", "/Users/"+id, put)
	if out["name"].(map[string]any)["familyName"] != "Lima-Souza" || out["active"] != true || out["id"] != id {
		t.Errorf("after PUT %v", out)
	}

	bo := str(c.expect(201, "", "POST", "/Users", oktaUser("bo@example.com", "Bo", "Berg"))["id"])
	g := c.expect(201, "", "POST", "/Groups", map[string]any{"schemas": []string{scim.SchemaGroup}, "displayName": "Sales", "members": []any{}})
	gid := str(g["id"])
	c.expect(200, "", "PATCH", "/Groups/"+gid, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "add", "path": "members", "value": []any{
			map[string]any{"value": id, "display": "ana@example.com"}, map[string]any{"value": bo, "display": "bo@example.com"}}}}})
	// Okta renames with the id in a pathless replace.
	out = c.expect(200, "", "PATCH", "/Groups/"+gid, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "value": map[string]any{"id": gid, "displayName": "Sales EMEA"}}}})
	if out["displayName"] != "Sales EMEA" || len(out["members"].([]any)) != 2 {
		t.Errorf("after rename %v", out)
	}
	user := c.expect(200, "", "GET", "/Users/"+id, nil)
	if gs, _ := user["groups"].([]any); len(gs) != 1 || gs[0].(map[string]any)["value"] != gid || gs[0].(map[string]any)["display"] != "Sales EMEA" {
		t.Errorf("the user's groups %v", user["groups"])
	}
	out = c.expect(200, "", "PATCH", "/Groups/"+gid, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, id)}}})
	if m := out["members"].([]any); len(m) != 1 || m[0].(map[string]any)["value"] != bo {
		t.Errorf("after removing ana %v", out["members"])
	}
	c.expect(204, "", "DELETE", "/Users/"+bo, nil)
	c.expect(404, "", "GET", "/Users/"+bo, nil)
	if out := c.expect(200, "", "GET", "/Groups/"+gid, nil); out["members"] != nil {
		t.Errorf("a deleted user stays a member: %v", out["members"])
	}
	c.expect(204, "", "DELETE", "/Groups/"+gid, nil)
	c.expect(404, "", "DELETE", "/Groups/"+gid, nil)
	want := "[create User create User delete User update User update User create User create Group update Group update Group update Group update Group delete User delete Group]"
	if fmt.Sprint(*changes) != want {
		t.Errorf("changes %v\nwant    %s", *changes, want)
	}
}

// Entra ID's provisioning, as its SCIM guide and validator send it:
// capitalised ops, value paths, the enterprise extension with a manager
// given by id, "active" as the string "False", groups read without
// members, members added and removed by value lists.
func TestEntraProvisioning(t *testing.T) {
	c, _ := newServer(t)
	c.expect(200, "", "GET", "/Users?filter="+url.QueryEscape(`userName eq "5aa2b9c5-1e05-4f35-9b8d-94d0ed47dec1"`), nil)
	body := map[string]any{
		"schemas":    []string{scim.SchemaUser, scim.SchemaEnterpriseUser},
		"externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": "Test_User_ab6490ee@example.com", "active": true,
		"emails": []any{map[string]any{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@example.com"}},
		"meta":   map[string]any{"resourceType": "User"},
		"name":   map[string]any{"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
		"roles":  []any{},
		scim.SchemaEnterpriseUser: map[string]any{"employeeNumber": "701984", "department": "Tour Operations",
			"manager": map[string]any{"value": "a3f0c3ef"}},
	}
	created := c.expect(201, "", "POST", "/Users", body)
	id := str(created["id"])
	if ext := created[scim.SchemaEnterpriseUser].(map[string]any); ext["employeeNumber"] != "701984" {
		t.Errorf("enterprise extension %v", ext)
	}
	if s := created["schemas"].([]any); len(s) != 2 {
		t.Errorf("schemas %v", s)
	}
	out := c.expect(200, "", "PATCH", "/Users/"+id, map[string]any{"schemas": []string{scim.SchemaPatchOp}, "Operations": []any{
		map[string]any{"op": "Replace", "path": `emails[type eq "work"].value`, "value": "updatedEmail@example.com"},
		map[string]any{"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
		map[string]any{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Engineering"},
		map[string]any{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "9a4e2b44"},
		map[string]any{"op": "Replace", "path": `phoneNumbers[type eq "mobile"].value`, "value": "+1 555 0100"},
		map[string]any{"op": "Replace", "path": "active", "value": "False"},
	}})
	ext := out[scim.SchemaEnterpriseUser].(map[string]any)
	emails := out["emails"].([]any)
	phones := out["phoneNumbers"].([]any)
	if emails[0].(map[string]any)["value"] != "updatedEmail@example.com" || len(emails) != 1 ||
		out["name"].(map[string]any)["familyName"] != "updatedFamilyName" || out["name"].(map[string]any)["givenName"] != "givenName" ||
		ext["department"] != "Engineering" || ext["manager"].(map[string]any)["value"] != "9a4e2b44" || ext["employeeNumber"] != "701984" ||
		phones[0].(map[string]any)["value"] != "+1 555 0100" || phones[0].(map[string]any)["type"] != "mobile" || out["active"] != false {
		t.Errorf("after Entra's PATCH %v", out)
	}
	// Entra's no-path Replace with dotted names and a string boolean.
	out = c.expect(200, "", "PATCH", "/Users/"+id, map[string]any{"schemas": []string{scim.SchemaPatchOp}, "Operations": []any{
		map[string]any{"op": "Replace", "value": map[string]any{"name.givenName": "Gina", "active": "True", "displayName": "Gina F"}}}})
	if out["name"].(map[string]any)["givenName"] != "Gina" || out["active"] != true || out["displayName"] != "Gina F" {
		t.Errorf("after a pathless Replace %v", out)
	}

	g := c.expect(201, "", "POST", "/Groups", map[string]any{"schemas": []string{scim.SchemaGroup}, "externalId": "8aa1a0c0", "displayName": "Group1DisplayName"})
	gid := str(g["id"])
	_, _, res := list(c, "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "Group1DisplayName"`))
	if len(res) != 1 || res[0]["id"] != gid || res[0]["members"] != nil {
		t.Errorf("group lookup %v", res)
	}
	patch := func(op string) map[string]any {
		return map[string]any{"schemas": []string{scim.SchemaPatchOp},
			"Operations": []any{map[string]any{"op": op, "path": "members", "value": []any{map[string]any{"value": id}}}}}
	}
	if out := c.expect(200, "", "PATCH", "/Groups/"+gid, patch("Add")); len(out["members"].([]any)) != 1 {
		t.Errorf("after Add %v", out)
	}
	if out := c.expect(200, "", "PATCH", "/Groups/"+gid, patch("Add")); len(out["members"].([]any)) != 1 {
		t.Errorf("a member added twice: %v", out["members"])
	}
	_, _, res = list(c, "/Groups?filter="+url.QueryEscape(fmt.Sprintf(`id eq "%s" and members[value eq "%s"]`, gid, id))+"&excludedAttributes=members")
	if len(res) != 1 {
		t.Errorf("membership check found %d", len(res))
	}
	if out := c.expect(200, "", "PATCH", "/Groups/"+gid, patch("Remove")); out["members"] != nil {
		t.Errorf("after Remove %v", out["members"])
	}
	c.expect(400, "invalidValue", "PATCH", "/Groups/"+gid, map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": "no-such-user"}}}}})
}

func TestFiltersAndPaging(t *testing.T) {
	c, _ := newServer(t)
	var ids []string
	for i := range 25 {
		u := oktaUser(fmt.Sprintf("user%02d@%s.example.com", i, []string{"north", "south"}[i%2]), fmt.Sprintf("U%02d", i), "Test")
		u["active"] = i%5 != 0
		u["externalId"] = fmt.Sprintf("ext-%02d", i)
		if i == 3 {
			u[scim.SchemaEnterpriseUser] = map[string]any{"department": "Finance"}
		}
		ids = append(ids, str(c.expect(201, "", "POST", "/Users", u)["id"]))
	}
	time.Sleep(10 * time.Millisecond)
	mid := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(10 * time.Millisecond)
	c.expect(200, "", "PATCH", "/Users/"+ids[7], map[string]any{"schemas": []string{scim.SchemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "Late"}}})
	for filter, want := range map[string]int{
		`userName eq "USER07@south.example.com"`:      1,
		`userName co "south"`:                         12,
		`userName sw "user1"`:                         10,
		`userName ew ".example.com"`:                  25,
		`externalId eq "ext-04"`:                      1,
		`externalId eq "EXT-04"`:                      0, // case-exact
		`active eq false`:                             5,
		`active eq true and userName co "north"`:      10,
		`userName sw "user0" or userName sw "user2"`:  15,
		`not (active eq true)`:                        5,
		`emails[type eq "work" and value co "north"]`: 13,
		`emails.value sw "user24"`:                    1,
		`emails pr`:                                   25,
		`nickName pr`:                                 0,
		`meta.lastModified gt "` + mid + `"`:          1,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "finance"`: 1,
		`name.givenName eq "u10"`: 1,
		`displayName eq "Late"`:   1,
	} {
		if total, _, _ := list(c, "/Users?filter="+url.QueryEscape(filter)); total != want {
			t.Errorf("filter %s: %d, want %d", filter, total, want)
		}
	}
	for _, bad := range []string{`userName eq`, `colour eq "red"`, `emails[colour eq "x"]`, `userName zz "x"`, `(userName eq "x"`} {
		c.expect(400, "invalidFilter", "GET", "/Users?filter="+url.QueryEscape(bad), nil)
	}
	// Pages in a stable order.
	_, all, _ := list(c, "/Users?count=1000")
	total, page, _ := list(c, "/Users?startIndex=11&count=10")
	if total != 25 || len(all) != 25 || fmt.Sprint(page) != fmt.Sprint(all[10:20]) {
		t.Errorf("page 2: %d %v", total, page)
	}
	out := c.expect(200, "", "GET", "/Users?startIndex=0&count=-3", nil)
	if out["startIndex"] != json.Number("1") || out["itemsPerPage"] != json.Number("0") || out["totalResults"] != json.Number("25") {
		t.Errorf("startIndex 0, count -3: %v", out)
	}
	c.expect(400, "invalidValue", "GET", "/Users?count=many", nil)
	// attributes and excludedAttributes.
	_, _, res := list(c, "/Users?attributes=userName&filter="+url.QueryEscape(`externalId eq "ext-03"`))
	if len(res[0]) != 3 || res[0]["userName"] == nil || res[0]["id"] == nil || res[0]["schemas"] == nil {
		t.Errorf("attributes=userName: %v", res[0])
	}
	_, _, res = list(c, "/Users?excludedAttributes=emails,name&filter="+url.QueryEscape(`externalId eq "ext-03"`))
	if res[0]["emails"] != nil || res[0]["name"] != nil || res[0]["userName"] == nil || res[0][scim.SchemaEnterpriseUser] == nil {
		t.Errorf("excludedAttributes=emails,name: %v", res[0])
	}
	_, _, res = list(c, "/Users?attributes="+url.QueryEscape(scim.SchemaEnterpriseUser+":department")+"&filter="+url.QueryEscape(`externalId eq "ext-03"`))
	if res[0][scim.SchemaEnterpriseUser] == nil || res[0]["userName"] != nil {
		t.Errorf("attributes=enterprise department: %v", res[0])
	}
}

// ETags, content types, bad bodies and read-only attributes.
func TestPreconditionsAndRefusals(t *testing.T) {
	c, _ := newServer(t)
	_, created, h := c.do("POST", "/Users", oktaUser("cy@example.com", "Cy", "Cole"))
	id, tag := str(created["id"]), h.Get("ETag")
	if tag != `W/"1"` {
		t.Fatalf("ETag %q", tag)
	}
	if code, _, _ := c.do("GET", "/Users/"+id, nil, "If-None-Match", tag); code != 304 {
		t.Errorf("If-None-Match current: %d", code)
	}
	put := oktaUser("cy@example.com", "Cy", "Cole-Two")
	c.expect(412, "", "PUT", "/Users/"+id, put, "If-Match", `W/"7"`)
	c.expect(200, "", "PUT", "/Users/"+id, put, "If-Match", tag)
	c.expect(412, "", "PATCH", "/Users/"+id, map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "x"}}}, "If-Match", tag)
	c.expect(412, "", "DELETE", "/Users/"+id, nil, "If-Match", tag)

	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		scimType           string
		headers            []string
	}{
		{"no userName", "POST", "/Users", map[string]any{"name": map[string]any{"givenName": "X"}}, 400, "invalidValue", nil},
		{"userName a number", "POST", "/Users", map[string]any{"userName": 7}, 400, "invalidValue", nil},
		{"active a word", "POST", "/Users", map[string]any{"userName": "d@example.com", "active": "maybe"}, 400, "invalidValue", nil},
		{"not JSON", "POST", "/Users", `{"userName":`, 400, "invalidSyntax", nil},
		{"two values", "POST", "/Users", `{"userName":"a"} {}`, 400, "invalidSyntax", nil},
		{"text/plain", "POST", "/Users", `{"userName":"e@example.com"}`, 415, "", []string{"Content-Type", "text/plain"}},
		{"group without a name", "POST", "/Groups", map[string]any{"members": []any{}}, 400, "invalidValue", nil},
		{"unknown op", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "move", "path": "title"}}}, 400, "invalidSyntax", nil},
		{"no operations", "PATCH", "/Users/" + id, map[string]any{"schemas": []string{scim.SchemaPatchOp}}, 400, "invalidSyntax", nil},
		{"unknown path", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": "colour", "value": "red"}}}, 400, "invalidPath", nil},
		{"bad path", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": "emails[type eq", "value": "x"}}}, 400, "invalidPath", nil},
		{"id is read-only", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": "id", "value": "x"}}}, 400, "mutability", nil},
		{"remove without a path", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "remove"}}}, 400, "noTarget", nil},
		{"replace matching nothing", "PATCH", "/Users/" + id, map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": `emails[value co "zz"].type`, "value": "home"}}}, 400, "noTarget", nil},
		{"unknown user", "GET", "/Users/nope", nil, 404, "", nil},
		{"patch unknown user", "PATCH", "/Users/nope", map[string]any{"Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "x"}}}, 404, "", nil},
		{"post to an id", "POST", "/Users/" + id, map[string]any{}, 405, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.expect(tc.code, tc.scimType, tc.method, tc.path, tc.body, tc.headers...)
		})
	}
	// Nothing above changed the user.
	c.t = t
	if out := c.expect(200, "", "GET", "/Users/"+id, nil); out["meta"].(map[string]any)["version"] != `W/"2"` {
		t.Errorf("a refused request changed the user: %v", out["meta"])
	}
}
