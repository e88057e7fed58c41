package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custodymdm/custody/scep"
)

// The data dir holds everything a server needs to restart as itself:
//
//	custody.db             bbolt database
//	ca.pem, ca.key         the CA that issues device identities
//	ra.pem, ra.key         the SCEP RA: decrypts requests, signs replies
//	profile-signing.pem/.key  the identity that signs enrollment profiles
//	admin.token            bearer token of the admin API (0600)
//	server.json            where the running server listens, for the CLI
//	apns-topic             the APNs topic until a push certificate is uploaded
const (
	fileDB             = "custody.db"
	fileCACert         = "ca.pem"
	fileCAKey          = "ca.key"
	fileRACert         = "ra.pem"
	fileRAKey          = "ra.key"
	fileProfileCert    = "profile-signing.pem"
	fileProfileKey     = "profile-signing.key"
	fileAdminToken     = "admin.token"
	fileServerInfo     = "server.json"
	fileTopic          = "apns-topic"
	caValidity         = 10 * 365 * 24 * time.Hour
	profileKeyValidity = 2 * 365 * 24 * time.Hour
)

type dataDir struct {
	path       string
	ca         *scep.CA
	ra         *x509.Certificate
	raKey      crypto.Signer
	profile    *x509.Certificate
	profileKey crypto.Signer
	adminToken string
	topic      string // APNs topic devices subscribe to
	created    bool   // initialised by this start

	mu sync.Mutex // serialises read-modify-write of settings files

	keyMu sync.Mutex
	key   []byte // secret.key, once read or created
}

// openDataDir loads the data dir at path, initialising it on first use.
func openDataDir(path string) (*dataDir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, err
	}
	d := &dataDir{path: path}
	_, err := os.Stat(d.file(fileCAKey))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := d.initialise(); err != nil {
			return nil, fmt.Errorf("initialise %s: %w", path, err)
		}
		d.created = true
	case err != nil:
		return nil, err
	}
	return d, d.load()
}

func (d *dataDir) file(name string) string { return filepath.Join(d.path, name) }

func (d *dataDir) initialise() error {
	ca, err := scep.NewCA("Custody Device CA", 2048, caValidity)
	if err != nil {
		return err
	}
	pkey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pcert, err := ca.IssueIdentity(&pkey.PublicKey, pkix.Name{CommonName: "Custody Profile Signing"},
		profileKeyValidity, x509.KeyUsageDigitalSignature)
	if err != nil {
		return err
	}
	// A separate RA, as RFC 8894 allows: certmonger (and OpenSSL-based
	// clients generally) expect GetCACert to name an RA for the envelope
	// and a CA above it.
	rkey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	rcert, err := ca.IssueIdentity(&rkey.PublicKey, pkix.Name{CommonName: "Custody SCEP RA"},
		profileKeyValidity, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)
	if err != nil {
		return err
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	// Keys first and the CA key last: its presence marks the dir as
	// initialised, so a crash part-way through starts over.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{fileProfileKey, pemKey(pkey), 0o600},
		{fileProfileCert, pemCert(pcert), 0o644},
		{fileRAKey, pemKey(rkey), 0o600},
		{fileRACert, pemCert(rcert), 0o644},
		{fileAdminToken, []byte(base64.RawURLEncoding.EncodeToString(token) + "\n"), 0o600},
		{fileCACert, pemCert(ca.Cert), 0o644},
		{fileCAKey, pemKey(ca.Key), 0o600},
	} {
		if err := writeFileAtomic(d.file(f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func (d *dataDir) load() error {
	caCert, caKey, err := loadPair(d.file(fileCACert), d.file(fileCAKey))
	if err != nil {
		return err
	}
	d.ca = &scep.CA{Cert: caCert, Key: caKey}
	if d.ra, d.raKey, err = loadPair(d.file(fileRACert), d.file(fileRAKey)); err != nil {
		return err
	}
	if d.profile, d.profileKey, err = loadPair(d.file(fileProfileCert), d.file(fileProfileKey)); err != nil {
		return err
	}
	tok, err := os.ReadFile(d.file(fileAdminToken))
	if err != nil {
		return err
	}
	d.adminToken = strings.TrimSpace(string(tok))
	if d.topic, err = d.loadTopic(); err != nil {
		return err
	}
	if d.adminToken == "" {
		return fmt.Errorf("%s is empty", d.file(fileAdminToken))
	}
	return nil
}

// checkToken compares a presented bearer token with the admin token in
// constant time.
func (d *dataDir) checkToken(presented string) bool {
	return subtle.ConstantTimeCompare([]byte(presented), []byte(d.adminToken)) == 1
}

type serverInfo struct {
	URL string `json:"url"` // where the admin API answers, for the CLI
}

func writeServerInfo(dir string, info serverInfo) error {
	data, _ := json.MarshalIndent(info, "", "  ")
	return writeFileAtomic(filepath.Join(dir, fileServerInfo), append(data, '\n'), 0o644)
}

func readServerInfo(dir string) (serverInfo, error) {
	var info serverInfo
	data, err := os.ReadFile(filepath.Join(dir, fileServerInfo))
	if err != nil {
		return info, fmt.Errorf("no server has run with data dir %s (%w)", dir, err)
	}
	return info, json.Unmarshal(data, &info)
}

func pemCert(c *x509.Certificate) []byte { return pemBlock("CERTIFICATE", c.Raw) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pemKey(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // only RSA keys we generated reach here
	}
	return pemBlock("PRIVATE KEY", der)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := key.(crypto.Signer)
	if ok {
		pub, canCompare := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
		ok = canCompare && pub.Equal(cert.PublicKey)
	}
	if !ok {
		return nil, nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return cert, signer, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// leaves the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadTopic returns the APNs topic, creating a development topic on first
// use: devices enrol with it before a push certificate is uploaded (pushes
// then go to whatever APNs host is configured, a fake in tests).
func (d *dataDir) loadTopic() (string, error) {
	data, err := os.ReadFile(d.file(fileTopic))
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	topic := fmt.Sprintf("com.apple.mgmt.External.%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	return topic, writeFileAtomic(d.file(fileTopic), []byte(topic+"\n"), 0o644)
}

// readJSONFile decodes a data dir file; false when there is none.
func readJSONFile(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return true, nil
}

// writeJSONFile writes a data dir file (readable by its owner only),
// atomically.
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600)
}
