package googletest_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/google"
	admin "google.golang.org/api/admin/directory/v1"

	"github.com/custodymdm/custody/enroll/directory/googletest"
)

const adminEmail = "admin@example.com"

var readonly = []string{admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryGroupReadonlyScope, admin.AdminDirectoryGroupMemberReadonlyScope}

// get sends a GET to the fake and decodes the JSON answer.
func get(t *testing.T, fake *googletest.Server, token, path string, q url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fake.URL+"/admin/directory/v1/"+path+"?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// assertion signs a JWT with the service account's key, as a client
// library would, with claims changed by edit.
func assertion(t *testing.T, fake *googletest.Server, edit func(map[string]any)) string {
	t.Helper()
	var key struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	json.Unmarshal(fake.ServiceAccountJSON(), &key)
	block, _ := pem.Decode([]byte(key.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	claims := map[string]any{"iss": fake.ClientEmail(), "sub": adminEmail, "aud": key.TokenURI,
		"scope": strings.Join(readonly, " "), "iat": now, "exp": now + 3600}
	edit(claims)
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": key.PrivateKeyID})
	c, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(signed))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, k.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func postToken(t *testing.T, fake *googletest.Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(fake.URL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

func TestTokenEndpoint(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowSubject(adminEmail)
	grant := func(a string) url.Values {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a}}
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		error  string
	}{
		{"tampered", grant(assertion(t, fake, func(c map[string]any) {}) + "A"), 400, "invalid_grant"},
		{"other audience", grant(assertion(t, fake, func(c map[string]any) { c["aud"] = "https://oauth2.googleapis.com/token" })), 400, "invalid_grant"},
		{"other issuer", grant(assertion(t, fake, func(c map[string]any) { c["iss"] = "x@y.iam.gserviceaccount.com" })), 400, "invalid_grant"},
		{"expired", grant(assertion(t, fake, func(c map[string]any) { c["iat"], c["exp"] = 0, 3600 })), 400, "invalid_grant"},
		{"too long", grant(assertion(t, fake, func(c map[string]any) { c["exp"] = time.Now().Unix() + 7200 })), 400, "invalid_grant"},
		{"no scope", grant(assertion(t, fake, func(c map[string]any) { delete(c, "scope") })), 400, "invalid_scope"},
		{"subject not delegated", grant(assertion(t, fake, func(c map[string]any) { c["sub"] = "eve@example.com" })), 401, "unauthorized_client"},
		{"no subject", grant(assertion(t, fake, func(c map[string]any) { delete(c, "sub") })), 401, "unauthorized_client"},
		{"scope not delegated", grant(assertion(t, fake, func(c map[string]any) { c["scope"] = admin.AdminDirectoryUserScope })), 401, "unauthorized_client"},
		{"other grant", url.Values{"grant_type": {"client_credentials"}}, 400, "unsupported_grant_type"},
		{"ok", grant(assertion(t, fake, func(c map[string]any) {})), 200, ""},
	} {
		status, body := postToken(t, fake, tc.form)
		if status != tc.status || tc.error != "" && body["error"] != tc.error || tc.error == "" && (body["access_token"] == "" || body["token_type"] != "Bearer") {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, body, tc.status, tc.error)
		}
	}
}

func TestAuthorization(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowSubject(adminEmail)
	conf, err := google.JWTConfigFromJSON(fake.ServiceAccountJSON(), admin.AdminDirectoryUserReadonlyScope)
	if err != nil {
		t.Fatal(err)
	}
	conf.Subject = adminEmail
	tok, err := conf.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"customer": {"my_customer"}}
	if status, _ := get(t, fake, "", "users", q); status != 401 {
		t.Errorf("no token: %d", status)
	}
	if status, _ := get(t, fake, "ya29.forged", "users", q); status != 401 {
		t.Errorf("unknown token: %d", status)
	}
	if status, _ := get(t, fake, tok.AccessToken, "users", q); status != 200 {
		t.Errorf("users with the user scope: %d", status)
	}
	if status, body := get(t, fake, tok.AccessToken, "groups", q); status != 403 {
		t.Errorf("groups with only the user scope: %d %v", status, body)
	}
	reqs := fake.Requests()
	if last := reqs[len(reqs)-1]; last.Subject != adminEmail {
		t.Errorf("recorded subject %q", last.Subject)
	}
	fake.AllowAnonymous()
	if status, _ := get(t, fake, "", "groups", q); status != 200 {
		t.Errorf("anonymous: %d", status)
	}
}

func TestUsersList(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowAnonymous()
	ous := []string{"/", "/Sales", "/Sales/EU", "/SalesOps", "/Field Ops"}
	for i := range 250 {
		fake.AddUser(admin.User{PrimaryEmail: fmt.Sprintf("u%03d@example.com", i), OrgUnitPath: ous[i%len(ous)], Suspended: i%4 == 0})
	}
	list := func(q url.Values) (ids []string, pages int) {
		t.Helper()
		for {
			status, body := get(t, fake, "", "users", q)
			if status != 200 {
				t.Fatalf("%v: %d %v", q, status, body)
			}
			pages++
			users, _ := body["users"].([]any)
			for _, u := range users {
				ids = append(ids, u.(map[string]any)["primaryEmail"].(string))
			}
			next, _ := body["nextPageToken"].(string)
			if next == "" {
				return ids, pages
			}
			q.Set("pageToken", next)
		}
	}
	if ids, pages := list(url.Values{"customer": {"my_customer"}}); len(ids) != 250 || pages != 3 || ids[0] != "u000@example.com" || ids[249] != "u249@example.com" {
		t.Errorf("default page size: %d users in %d pages", len(ids), pages)
	}
	if ids, pages := list(url.Values{"customer": {fake.CustomerID()}, "maxResults": {"500"}}); len(ids) != 250 || pages != 1 {
		t.Errorf("maxResults=500: %d users in %d pages", len(ids), pages)
	}
	for query, want := range map[string]int{
		"orgUnitPath='/Sales'":                      100, // /Sales and /Sales/EU, not /SalesOps
		"orgUnitPath=/Sales/EU":                     50,
		"orgUnitPath='/Field Ops'":                  50,
		"orgUnitPath='/'":                           250,
		"isSuspended=true":                          63,
		"orgUnitPath='/Sales' isSuspended=false":    76,
		"email:u01*":                                10,
		`orgUnitPath='/Field Ops\'s'`:               0,
		"email='u001@example.com' isSuspended=true": 0,
	} {
		if ids, _ := list(url.Values{"customer": {"my_customer"}, "query": {query}, "maxResults": {"7"}}); len(ids) != want {
			t.Errorf("query %s: %d users, want %d", query, len(ids), want)
		}
	}

	status, body := get(t, fake, "", "users", url.Values{"customer": {"my_customer"}, "maxResults": {"10"}})
	next := body["nextPageToken"].(string)
	for name, q := range map[string]url.Values{
		"no customer":        {},
		"other customer":     {"customer": {"C999"}},
		"maxResults 501":     {"customer": {"my_customer"}, "maxResults": {"501"}},
		"maxResults 0":       {"customer": {"my_customer"}, "maxResults": {"0"}},
		"unsupported query":  {"customer": {"my_customer"}, "query": {"orgTitle:Manager"}},
		"unterminated quote": {"customer": {"my_customer"}, "query": {"orgUnitPath='/Sales"}},
		"garbage token":      {"customer": {"my_customer"}, "pageToken": {"nonsense"}},
		"token of another":   {"customer": {"my_customer"}, "query": {"isSuspended=true"}, "pageToken": {next}},
	} {
		if status, body = get(t, fake, "", "users", q); status != 400 || body["error"].(map[string]any)["status"] != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}

	_, body = get(t, fake, "", "users", url.Values{"customer": {"my_customer"}, "maxResults": {"2"}, "fields": {"nextPageToken,users(id,name/fullName)"}})
	u := body["users"].([]any)[0].(map[string]any)
	if _, ok := u["primaryEmail"]; ok || u["id"] == "" || body["kind"] != nil || body["nextPageToken"] == "" {
		t.Errorf("partial response %v", body)
	}
}

func TestGroupsAndMembers(t *testing.T) {
	fake := googletest.New()
	defer fake.Close()
	fake.AllowAnonymous()
	uid := fake.AddUser(admin.User{PrimaryEmail: "ann@example.com"})
	outer := fake.AddGroup(admin.Group{Email: "outer@example.com", Name: "Outer"})
	fake.AddGroup(admin.Group{Email: "inner@example.com", Aliases: []string{"in@example.com"}})
	for i := range 210 {
		fake.AddGroup(admin.Group{Email: fmt.Sprintf("g%03d@example.com", i)})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fake.AddMember("outer@example.com", "in@example.com", googletest.MemberGroup))
	must(fake.AddMember("inner@example.com", uid, googletest.MemberUser))
	must(fake.AddMember("inner@example.com", fake.CustomerID(), googletest.MemberCustomer))
	if err := fake.AddMember("inner@example.com", outer, googletest.MemberGroup); err == nil {
		t.Error("a cycle of groups was accepted")
	}

	status, body := get(t, fake, "", "groups", url.Values{"customer": {"my_customer"}, "maxResults": {"1000"}})
	if groups := body["groups"].([]any); status != 200 || len(groups) != 200 || body["nextPageToken"] == nil {
		t.Errorf("groups page: %d, %d groups", status, len(groups))
	}
	_, body = get(t, fake, "", "groups", url.Values{"userKey": {"ann@example.com"}})
	if groups := body["groups"].([]any); len(groups) != 1 || groups[0].(map[string]any)["email"] != "inner@example.com" {
		t.Errorf("groups of ann: %v", body)
	}
	if status, _ = get(t, fake, "", "groups", url.Values{"customer": {"my_customer"}, "userKey": {"ann@example.com"}}); status != 400 {
		t.Errorf("customer and userKey: %d", status)
	}

	_, body = get(t, fake, "", "groups/"+outer+"/members", nil)
	if m := body["members"].([]any); len(m) != 1 || m[0].(map[string]any)["type"] != "GROUP" || m[0].(map[string]any)["email"] != "inner@example.com" {
		t.Errorf("members of outer: %v", body)
	}
	_, body = get(t, fake, "", "groups/in@example.com/members", url.Values{"maxResults": {"1"}})
	if m := body["members"].([]any); len(m) != 1 || body["nextPageToken"] == nil {
		t.Errorf("first member of inner: %v", body)
	}
	must(fake.RemoveMember("inner@example.com", "ann@example.com"))
	_, body = get(t, fake, "", "groups/inner@example.com", nil)
	if body["directMembersCount"] != "1" || body["id"] == "" {
		t.Errorf("inner: %v", body)
	}
	if status, body = get(t, fake, "", "groups/nope@example.com/members", nil); status != 404 || body["error"].(map[string]any)["message"] != "Resource Not Found: groupKey" {
		t.Errorf("unknown group: %d %v", status, body)
	}
}
