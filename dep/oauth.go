package dep

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// OAuth 1.0a (RFC 5849) signing, HMAC-SHA1, as the session endpoint
// requires.

// percentEncode is RFC 5849 section 3.6: everything but the unreserved
// characters is %XX with upper-case hex.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}

// oauthSignature is the HMAC-SHA1 signature (base64) of a request: its
// method, its base URL (scheme, host and path, no query) and all of its
// parameters (oauth_* and query or form parameters; not
// oauth_signature).
func oauthSignature(method, baseURL string, params url.Values, consumerSecret, tokenSecret string) string {
	type pair struct{ k, v string }
	var pairs []pair
	for k, vs := range params {
		for _, v := range vs {
			pairs = append(pairs, pair{percentEncode(k), percentEncode(v)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	norm := make([]string, len(pairs))
	for i, p := range pairs {
		norm[i] = p.k + "=" + p.v
	}
	base := strings.ToUpper(method) + "&" + percentEncode(baseURL) + "&" + percentEncode(strings.Join(norm, "&"))
	mac := hmac.New(sha1.New, []byte(percentEncode(consumerSecret)+"&"+percentEncode(tokenSecret)))
	mac.Write([]byte(base))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// authorization returns the Authorization header of a GET of sessionURL
// signed with the tokens at now.
func (t *OAuth1Tokens) authorization(sessionURL string, now time.Time) string {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	params := url.Values{
		"oauth_consumer_key":     {t.ConsumerKey},
		"oauth_token":            {t.AccessToken},
		"oauth_signature_method": {"HMAC-SHA1"},
		"oauth_timestamp":        {strconv.FormatInt(now.Unix(), 10)},
		"oauth_nonce":            {hex.EncodeToString(nonce)},
		"oauth_version":          {"1.0"},
	}
	sig := oauthSignature("GET", sessionURL, params, t.ConsumerSecret, t.AccessSecret)
	var b strings.Builder
	b.WriteString(`OAuth realm="ADM"`)
	for _, k := range []string{"oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_signature",
		"oauth_timestamp", "oauth_nonce", "oauth_version"} {
		v := params.Get(k)
		if k == "oauth_signature" {
			v = sig
		}
		b.WriteString(", " + k + `="` + percentEncode(v) + `"`)
	}
	return b.String()
}
