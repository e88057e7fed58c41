package stepca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/custodymdm/custody/scep"
)

var _ scep.Signer = (*Signer)(nil)

// maxResponse caps what is read from step-ca: a certificate chain is a few
// kilobytes.
const maxResponse = 1 << 20

// Config says which step-ca issues certificates and how the Signer proves
// that it may ask.
type Config struct {
	// URL is step-ca's address, such as https://ca.example.com:9000. The
	// API is expected at its root, as step-ca serves it.
	URL string

	// Root is step-ca's root certificate. TLS to URL must chain to it; the
	// system roots are not consulted.
	Root *x509.Certificate

	// Provisioner is the name of a JWK provisioner in step-ca.
	Provisioner string

	// Key is that provisioner's private key, with the key ID (kid) step-ca
	// knows it by; ParseKey reads one.
	Key *jose.JSONWebKey

	// Validity is how long issued certificates are valid, sent to step-ca as
	// notAfter. When zero the provisioner's default applies.
	Validity time.Duration
}

// A Signer issues certificates from step-ca. It is safe for concurrent use.
type Signer struct {
	base        *url.URL
	root        *x509.Certificate
	provisioner string
	key         *jose.JSONWebKey
	validity    time.Duration
	client      *http.Client
}

// New checks cfg and returns a Signer that talks to step-ca over TLS pinned
// to cfg.Root. It does no I/O.
func New(cfg Config) (*Signer, error) {
	base, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Root == nil:
		return nil, errors.New("stepca: no root certificate")
	case cfg.Provisioner == "":
		return nil, errors.New("stepca: no provisioner name")
	case cfg.Validity < 0:
		return nil, fmt.Errorf("stepca: negative validity %v", cfg.Validity)
	}
	if err := checkKey(cfg.Key); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cfg.Root)
	return &Signer{
		base:        base,
		root:        cfg.Root,
		provisioner: cfg.Provisioner,
		key:         cfg.Key,
		validity:    cfg.Validity,
		client:      newClient(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}),
	}, nil
}

// SignCSR asks step-ca to sign csr with a one-time token whose subject is the
// CSR's common name, and returns the issued certificate. A refusal by step-ca
// is returned as a wrapped *Error.
func (s *Signer) SignCSR(ctx context.Context, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	subject, ott, err := s.token(csr, time.Now())
	if err != nil {
		return nil, err
	}
	return s.sign(ctx, csr, subject, ott)
}

func (s *Signer) sign(ctx context.Context, csr *x509.CertificateRequest, subject, ott string) (*x509.Certificate, error) {
	req := signRequest{
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})),
		OTT: ott,
	}
	if s.validity > 0 {
		// A duration rather than a time: step-ca counts it from its own
		// clock, so skew between the two servers does not matter.
		req.NotAfter = s.validity.String()
	}
	var resp signResponse
	if err := call(ctx, s.client, endpoint(s.base, "/1.0/sign"), req, &resp); err != nil {
		return nil, fmt.Errorf("stepca: sign %q: %w", subject, err)
	}
	leaf, err := parseCertificate(resp.Crt)
	if err != nil {
		return nil, fmt.Errorf("stepca: sign %q: %w", subject, err)
	}
	// No step-ca template can change the key; a certificate for another one
	// means something between us and the CA is answering for it.
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(csr.PublicKey) {
		return nil, fmt.Errorf("stepca: sign %q: step-ca returned a certificate for another key", subject)
	}
	return leaf, nil
}

// CACerts returns step-ca's intermediate certificates followed by its root:
// the chain a SCEP server publishes in GetCACert. It asks step-ca on every
// call.
func (s *Signer) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	var resp struct {
		Crts []string `json:"crts"`
	}
	if err := call(ctx, s.client, endpoint(s.base, "/1.0/intermediates"), nil, &resp); err != nil {
		return nil, fmt.Errorf("stepca: intermediates: %w", err)
	}
	certs := make([]*x509.Certificate, 0, len(resp.Crts)+1)
	for _, p := range resp.Crts {
		cert, err := parseCertificate(p)
		if err != nil {
			return nil, fmt.Errorf("stepca: intermediates: %w", err)
		}
		certs = append(certs, cert)
	}
	return append(certs, s.root), nil
}

// FetchRoot downloads step-ca's root certificate and returns it only if its
// SHA-256 fingerprint, in hex as `step certificate fingerprint` prints it, is
// fingerprint. Like `step ca bootstrap` it skips TLS verification for this one
// download: the fingerprint is what authenticates the answer.
func FetchRoot(ctx context.Context, caURL, fingerprint string) (*x509.Certificate, error) {
	base, err := parseURL(caURL)
	if err != nil {
		return nil, err
	}
	want := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	if len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("stepca: root fingerprint %q is not a hex SHA-256", fingerprint)
	}
	client := newClient(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	defer client.CloseIdleConnections()
	var resp struct {
		CA string `json:"ca"`
	}
	if err := call(ctx, client, endpoint(base, "/root/"+want), nil, &resp); err != nil {
		return nil, fmt.Errorf("stepca: root %s: %w", want, err)
	}
	root, err := parseCertificate(resp.CA)
	if err != nil {
		return nil, fmt.Errorf("stepca: root %s: %w", want, err)
	}
	if got := scep.Fingerprint(root); got != want {
		return nil, fmt.Errorf("stepca: root from %s has fingerprint %s, want %s", caURL, got, want)
	}
	return root, nil
}

// An Error is step-ca's refusal of a request: the HTTP status and the message
// step-ca gave with it.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("step-ca answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// signRequest and signResponse are step-ca's /1.0/sign wire format (package
// github.com/smallstep/certificates/api), with certificates as PEM strings.
type signRequest struct {
	CSR      string `json:"csr"`
	OTT      string `json:"ott"`
	NotAfter string `json:"notAfter,omitempty"`
}

type signResponse struct {
	Crt string `json:"crt"`
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("stepca: URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("stepca: URL %q is not https://host[:port]", raw)
	}
	return u, nil
}

// endpoint resolves an absolute API path against step-ca's URL, as step's
// own client does.
func endpoint(base *url.URL, path string) string {
	return base.ResolveReference(&url.URL{Path: path}).String()
}

func newClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConfig,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// call sends in as JSON (a GET when in is nil) and decodes the answer into
// out, or step-ca's error body into an *Error.
func call(ctx context.Context, client *http.Client, u string, in, out any) error {
	method, body := http.MethodGet, io.Reader(nil)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		method, body = http.MethodPost, bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return newError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", u, err)
	}
	return nil
}

// newError reads step-ca's {"status", "message"} error body, keeping the text
// of anything else (a proxy's error page, say) as the message.
func newError(status int, body []byte) *Error {
	var e struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return &Error{Status: status, Message: msg}
}

func parseCertificate(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("answer holds no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
