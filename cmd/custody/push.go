package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/sideshow/apns2/certificate"

	"github.com/custodymdm/custody/mdm"
)

const (
	filePushCert = "push.pem" // MDM push certificate and key, PEM
)

// pushState is the push certificate in force: the pusher and the topic
// devices subscribe to. It is replaced whole when a certificate is uploaded.
type pushState struct {
	pusher *mdm.APNs
	topic  string
	cert   *x509.Certificate // nil in development
}

// loadPush builds the push state from the data dir: the uploaded push
// certificate if there is one, else the development topic.
func (s *server) loadPush() (*pushState, error) {
	data, err := os.ReadFile(s.data.file(filePushCert))
	if errors.Is(err, os.ErrNotExist) {
		s.log.Warn("no APNs push certificate uploaded: devices enrol with a development topic and pushes carry no client certificate",
			"topic", s.data.topic, "apns_host", s.apns.Host)
		return &pushState{pusher: mdm.NewAPNs(s.apnsConfig(tls.Certificate{}), s.st.MDM), topic: s.data.topic}, nil
	}
	if err != nil {
		return nil, err
	}
	cert, leaf, topic, err := parsePushCert(data, nil, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.data.file(filePushCert), err)
	}
	return &pushState{pusher: mdm.NewAPNs(s.apnsConfig(cert), s.st.MDM), topic: topic, cert: leaf}, nil
}

func (s *server) apnsConfig(cert tls.Certificate) mdm.APNsConfig {
	cfg := s.apns
	cfg.Certificate = cert
	cfg.Logger = s.log
	return cfg
}

// parsePushCert reads a push certificate and its key from PEM, or from a
// PKCS#12 file with its password.
func parsePushCert(pemData, p12 []byte, password string) (tls.Certificate, *x509.Certificate, string, error) {
	var cert tls.Certificate
	var err error
	if len(p12) > 0 {
		cert, err = certificate.FromP12Bytes(p12, password)
		if err != nil {
			return cert, nil, "", fmt.Errorf("PKCS#12: %v (a file from OpenSSL 3 must be exported with -legacy; or upload PEM)", err)
		}
	} else {
		cert, err = certificate.FromPemBytes(pemData, password)
		if err != nil {
			return cert, nil, "", fmt.Errorf("PEM: %v (want the certificate and its unencrypted private key)", err)
		}
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, nil, "", err
	}
	topic, err := mdm.PushTopic(leaf)
	if err != nil {
		return cert, nil, "", err
	}
	return cert, leaf, topic, nil
}

type pushCertRequest struct {
	PEM      string `json:"pem,omitempty"`
	P12      []byte `json:"p12,omitempty"`
	Password string `json:"password,omitempty"`
}

type pushCertResponse struct {
	Topic    string `json:"topic"`
	Subject  string `json:"subject"`
	NotAfter string `json:"not_after"`
}

func (s *server) uploadPushCert(w http.ResponseWriter, r *http.Request) {
	var req pushCertRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if (req.PEM == "") == (len(req.P12) == 0) {
		writeError(w, http.StatusBadRequest, "give pem or p12")
		return
	}
	cert, leaf, topic, err := parsePushCert([]byte(req.PEM), req.P12, req.Password)
	if err != nil {
		writeError(w, http.StatusBadRequest, "push certificate: "+err.Error())
		return
	}
	// Store it as PEM, whatever it came as.
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pemBlock("CERTIFICATE", der)...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		writeError(w, http.StatusBadRequest, "push certificate key: "+err.Error())
		return
	}
	out = append(out, pemBlock("PRIVATE KEY", keyDER)...)
	if err := writeFileAtomic(s.data.file(filePushCert), out, 0o600); err != nil {
		s.log.Error("store push certificate", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the push certificate")
		return
	}
	s.push.Store(&pushState{pusher: mdm.NewAPNs(s.apnsConfig(cert), s.st.MDM), topic: topic, cert: leaf})
	s.log.Info("push certificate uploaded", "topic", topic, "not_after", leaf.NotAfter)
	writeJSON(w, http.StatusOK, pushCertResponse{Topic: topic, Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter.UTC().Format("2006-01-02")})
}

type pushRequest struct {
	Devices []string `json:"devices"`
}

type pushResultJSON struct {
	Device string `json:"device"`
	APNsID string `json:"apns_id,omitempty"`
	Error  string `json:"error,omitempty"`
}

// pushDevices pushes and reports per device.
func (s *server) pushDevices(r *http.Request, ids []string) []pushResultJSON {
	results, err := s.push.Load().pusher.Push(r.Context(), ids)
	if err != nil {
		s.log.Warn("push interrupted", "err", err)
	}
	out := make([]pushResultJSON, len(results))
	for i, res := range results {
		out[i] = pushResultJSON{Device: ids[i], APNsID: res.APNsID}
		if res.Err != nil {
			out[i].Error = res.Err.Error()
		}
	}
	return out
}

func (s *server) pushHandler(w http.ResponseWriter, r *http.Request) {
	var req pushRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Devices) == 0 || len(req.Devices) > 10000 {
		writeError(w, http.StatusBadRequest, "devices: give between 1 and 10000 device ids")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": s.pushDevices(r, req.Devices)})
}
