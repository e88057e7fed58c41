package dep

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// The worked example of Twitter's "Creating a signature" guide, a
// published OAuth 1.0a HMAC-SHA1 test vector.
func TestOAuthSignatureVector(t *testing.T) {
	params := url.Values{
		"include_entities":       {"true"},
		"oauth_consumer_key":     {"xvz1evFS4wEEPTGEFPHBog"},
		"oauth_nonce":            {"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"},
		"oauth_signature_method": {"HMAC-SHA1"},
		"oauth_timestamp":        {"1318622958"},
		"oauth_token":            {"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"},
		"oauth_version":          {"1.0"},
		"status":                 {"Hello Ladies + Gentlemen, a signed OAuth request!"},
	}
	got := oauthSignature("POST", "https://api.twitter.com/1.1/statuses/update.json", params,
		"kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw", "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE")
	if got != "hCtSmYh+iHYCEqBWrE7C7hYmtUk=" {
		t.Errorf("signature %s, want hCtSmYh+iHYCEqBWrE7C7hYmtUk=", got)
	}
}

func TestAuthorizationHeader(t *testing.T) {
	tok := OAuth1Tokens{ConsumerKey: "CK_1", ConsumerSecret: "CS_1", AccessToken: "AT_1", AccessSecret: "AS_1"}
	h := tok.authorization("https://mdmenrollment.apple.com/session", time.Unix(1700000000, 0))
	for _, want := range []string{`OAuth realm="ADM"`, `oauth_consumer_key="CK_1"`, `oauth_token="AT_1"`,
		`oauth_signature_method="HMAC-SHA1"`, `oauth_timestamp="1700000000"`, `oauth_version="1.0"`, `oauth_signature="`} {
		if !strings.Contains(h, want) {
			t.Errorf("header %s lacks %s", h, want)
		}
	}
}
