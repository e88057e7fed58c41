package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/scep"
)

// With --tls-cert and --tls-key the server speaks HTTPS only; devices and
// the CLI (trusting the TLS CA with --tls-ca) reach it over TLS.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	// A TLS CA and a server certificate for 127.0.0.1, as an organisation's
	// own PKI would issue.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TLS CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}, caCert, &srvKey.PublicKey, caKey)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		return p
	}
	certFile, keyFile := write("tls.pem", "CERTIFICATE", srvDER), write("tls.key", "PRIVATE KEY", keyDER)
	caFile := write("tls-ca.pem", "CERTIFICATE", caDER)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stderr bytes.Buffer
	go run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, &bytes.Buffer{}, &stderr)

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info, err := readServerInfo(dir)
		if err != nil {
			continue
		}
		if resp, err := hc.Get(info.URL + "/healthz"); err == nil {
			resp.Body.Close()
			url = info.URL
		}
	}
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("server URL %q, want https\n%s", url, stderr.String())
	}
	// Plain HTTP is not served on the TLS port.
	if resp, err := http.Get("http://" + strings.TrimPrefix(url, "https://") + "/healthz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
		resp.Body.Close()
	}

	out, err := cli(t, "challenge", "--data", dir, "--tls-ca", caFile)
	if err != nil {
		t.Fatalf("custody challenge over TLS: %v", err)
	}
	if _, err := cli(t, "certs", "list", "--data", dir); err == nil {
		t.Error("the CLI trusted a TLS certificate from an unknown CA")
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(key, pkix.Name{CommonName: "tls-device"}, strings.TrimSpace(out))
	if _, err := (&scep.Client{URL: url + "/scep", HTTPClient: hc}).Enroll(context.Background(), key, csr); err != nil {
		t.Fatalf("enrol over TLS: %v", err)
	}
}
