package deptest

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/custodymdm/custody/dep"
	"github.com/custodymdm/custody/internal/cms"
)

// EncryptToken returns a server token file as Apple Business Manager
// delivers it for the public key in cert: an S/MIME message whose base64
// body is a CMS EnvelopedData (AES-128-CBC and RSA key transport, as Apple's) of a MIME
// text part with the JSON credentials between BEGIN and END MESSAGE lines.
func EncryptToken(t dep.OAuth1Tokens, cert *x509.Certificate) ([]byte, error) {
	js, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	inner := "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
		"-----BEGIN MESSAGE-----\r\n" + string(js) + "\r\n-----END MESSAGE-----\r\n"
	der, err := cms.Envelope([]byte(inner), []*x509.Certificate{cert}, cms.OIDAES128CBC) // as Apple's tokens are
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	var body strings.Builder
	for len(b64) > 76 {
		body.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	body.WriteString(b64 + "\r\n")
	return []byte("Content-Type: application/pkcs7-mime; name=smime.p7m; smime-type=enveloped-data\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\n" +
		"Content-Description: S/MIME Encrypted Message\r\n\r\n" + body.String()), nil
}
