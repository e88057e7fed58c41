package peertest

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CertmongerError is the error Certmonger returns when certmonger reaches a
// final state other than "issued": Status is certmonger's request state (for
// example CA_REJECTED, CA_UNREACHABLE, NEED_GUIDANCE), CAError the CA's error
// text, and Details the request listing and the end of certmonger's log.
type CertmongerError struct {
	Status  string
	CAError string
	Details string
}

func (e *CertmongerError) Error() string {
	s := "certmonger: request ended in " + e.Status
	if e.CAError != "" {
		s += ": " + e.CAError
	}
	if e.Details != "" {
		s += "\n" + e.Details
	}
	return s
}

// Certmonger enrols once through Debian's certmonger: it starts a private
// D-Bus bus and a certmonger on it that keeps its state in a temporary
// directory, adds scepURL as a SCEP CA, requests a certificate for the subject
// "CN="+commonName (so no DN syntax in commonName) with a new 2048-bit RSA key
// and challenge as the ChallengePassword (none if empty), and returns the
// issued certificate in PEM. A refusal (CA_REJECTED), a CA that certmonger
// cannot use (CA_UNREACHABLE, CA_UNCONFIGURED) or a request that needs
// guidance returns a *CertmongerError promptly instead of letting certmonger
// retry; a URL where nothing answers GetCACaps is a plain error. ctx bounds
// the whole enrolment (30 seconds if it has no deadline). The processes are stopped before it returns, and by
// t.Cleanup in any case.
//
// certmonger 0.79 sends GetCACaps and GetCACert, then the PKCSReq over GET
// (even when POSTPKIOperation is advertised), digest SHA-256, envelope
// AES-256-CBC, signed by a self-signed certificate for the new key. Given a
// GetCACert of a single certificate it takes that as the RA (encryption)
// certificate, has no CA certificate to verify the CertRep signature against,
// and ends in CA_UNREACHABLE; and its OpenSSL 3 cannot decrypt a CertRep
// envelope in DES (NEED_GUIDANCE): it needs AES or DES3.
func Certmonger(ctx context.Context, t testing.TB, scepURL, challenge, commonName string) (certPEM []byte, err error) {
	t.Helper()
	return certmonger(ctx, t, certmongerRequest{url: scepURL, challenge: challenge, commonName: commonName})
}

// certmongerRequest is one enrolment. Tests in this package use the fields
// that Certmonger leaves zero to explore behaviour.
type certmongerRequest struct {
	url, challenge, commonName string
	// caCertPEM, if set, is given to `getcert add-scep-ca -N`, as if
	// GetCACert had returned it.
	caCertPEM []byte
	// builtinCA, if set, names a CA built into certmonger ("local") to
	// request from instead of a SCEP URL.
	builtinCA string
}

const certmongerCAName = "peertest"

func certmonger(ctx context.Context, t testing.TB, r certmongerRequest) ([]byte, error) {
	t.Helper()
	daemonBin := Need(t, "certmonger", "certmonger")
	getcert := Need(t, "getcert", "certmonger")
	busBin := Need(t, "dbus-daemon", "dbus-daemon")
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}

	cm, err := startCertmonger(ctx, t, daemonBin, busBin, getcert)
	if cm != nil {
		defer cm.stop()
	}
	if err != nil {
		return nil, err
	}

	ca := r.builtinCA
	if ca == "" {
		ca = certmongerCAName
		if err := cm.addSCEPCA(ctx, r.url, r.caCertPEM); err != nil {
			return nil, err
		}
	}

	certPath := filepath.Join(cm.dir, "out", "cert.pem")
	keyPath := filepath.Join(cm.dir, "out", "key.pem")
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return nil, err
	}
	// -I names the request so that it can be listed; -R: no renewal.
	args := []string{"request", "-s", "-c", ca, "-I", "peertest",
		"-f", certPath, "-k", keyPath, "-N", "CN=" + r.commonName, "-R"}
	if r.challenge != "" {
		args = append(args, "-L", r.challenge)
	}
	if out, err := cm.getcert(ctx, args...); err != nil {
		return nil, fmt.Errorf("getcert request: %w: %s\n%s", err, out, cm.daemon.logTail(20))
	}

	var st requestState
	err = waitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cm.daemon.exitErr(); err != nil {
			return false, fmt.Errorf("%w\n%s", err, cm.daemon.logTail(30))
		}
		out, err := cm.getcert(ctx, "list", "-s", "-i", "peertest")
		if err != nil {
			return false, fmt.Errorf("getcert list: %w: %s", err, out)
		}
		st = parseRequestState(out)
		return st.final(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for certmonger (last state %s %q): %w\n%s\n%s",
			st.status, st.caError, err, st.listing, cm.daemon.logTail(20))
	}
	if st.status != "MONITORING" {
		return nil, &CertmongerError{Status: st.status, CAError: st.caError,
			Details: st.listing + "\ncertmonger log:\n" + cm.daemon.logTail(20)}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certmonger reports MONITORING but saved no certificate: %w\n%s", err, st.listing)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certmonger saved no PEM certificate in %s\n%s", certPath, st.listing)
	}
	return certPEM, nil
}

// certmongerInstance is one private D-Bus bus with one certmonger on it.
type certmongerInstance struct {
	dir        string // state, logs, output
	getcertBin string
	env        []string // for getcert: the private bus
	bus        *daemon
	daemon     *daemon
}

// startCertmonger starts dbus-daemon with a configuration that only listens
// on a socket in a fresh directory (no service activation, so nothing starts
// certmonger-session with the state under $HOME), then certmonger -s -n on it
// with all its state directories under the same directory, and waits until
// getcert can talk to it. The returned instance (non-nil when anything was
// started) must be stopped; t.Cleanup also stops it.
func startCertmonger(ctx context.Context, t testing.TB, daemonBin, busBin, getcert string) (*certmongerInstance, error) {
	dir := t.TempDir()
	// A unix socket path must fit in 108 bytes; t.TempDir paths can be long.
	busDir, err := os.MkdirTemp("", "peertest-dbus-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(busDir) })
	socket := filepath.Join(busDir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(busConfig(socket)), 0o600); err != nil {
		return nil, err
	}
	cm := &certmongerInstance{dir: dir, getcertBin: getcert}
	t.Cleanup(cm.stop)

	cm.bus, err = startDaemon(cleanEnv(), dir, filepath.Join(dir, "dbus-daemon.log"),
		busBin, "--config-file="+conf, "--nofork", "--nopidfile", "--nosyslog")
	if err != nil {
		return cm, fmt.Errorf("start dbus-daemon: %w", err)
	}
	err = waitFor(ctx, 10*time.Millisecond, func() (bool, error) {
		if err := cm.bus.exitErr(); err != nil {
			return false, err
		}
		fi, err := os.Stat(socket)
		return err == nil && fi.Mode()&os.ModeSocket != 0, nil
	})
	if err != nil {
		return cm, fmt.Errorf("dbus-daemon did not create %s: %w\n%s", socket, err, cm.bus.logTail(10))
	}
	address := "unix:path=" + socket

	state := func(name string) string { return filepath.Join(dir, "state", name) }
	for _, d := range []string{"config", "requests", "cas", "local", "tmp"} {
		if err := os.MkdirAll(state(d), 0o700); err != nil {
			return cm, err
		}
	}
	daemonEnv := cleanEnv(
		"DBUS_SESSION_BUS_ADDRESS="+address,
		"CERTMONGER_CONFIG_DIR="+state("config"),
		"CERTMONGER_REQUESTS_DIR="+state("requests"),
		"CERTMONGER_CAS_DIR="+state("cas"),
		"CERTMONGER_LOCAL_CA_DIR="+state("local"),
		"CERTMONGER_TMPDIR="+state("tmp"),
		"CERTMONGER_SYSTEM_LOCK_FILE="+state("lock"),
		"HOME="+dir,
		"TMPDIR="+state("tmp"),
	)
	cm.env = cleanEnv("DBUS_SESSION_BUS_ADDRESS=" + address)
	// -s: session bus (ours); -n: no fork, log to stderr; -B: never exit
	// for idleness; -d 1: enough log to explain a failure.
	cm.daemon, err = startDaemon(daemonEnv, dir, filepath.Join(dir, "certmonger.log"),
		daemonBin, "-s", "-n", "-B", "-d", "1")
	if err != nil {
		return cm, fmt.Errorf("start certmonger: %w", err)
	}
	var out string
	err = waitFor(ctx, 25*time.Millisecond, func() (bool, error) {
		if err := cm.daemon.exitErr(); err != nil {
			return false, err
		}
		var listErr error
		out, listErr = cm.getcert(ctx, "list-cas", "-s")
		return listErr == nil, nil
	})
	if err != nil {
		return cm, fmt.Errorf("certmonger did not come up on %s: %w\n%s\n%s", address, err, out, cm.daemon.logTail(20))
	}
	return cm, nil
}

// busConfig is a session bus that listens on socket only: no service
// activation directories, no syslog, everything allowed for our own uid.
func busConfig(socket string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + socket + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
}

func (cm *certmongerInstance) stop() {
	if cm.daemon != nil {
		cm.daemon.stop()
	}
	if cm.bus != nil {
		cm.bus.stop()
	}
}

func (cm *certmongerInstance) getcert(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return run(ctx, cm.env, cm.dir, cm.getcertBin, args...)
}

// addSCEPCA adds url as the SCEP CA "peertest" and waits until certmonger has
// fetched its certificates (GetCACaps, GetCACert): a request made before that
// ends in CA_UNCONFIGURED ("No RA certificate (-r) given, and no default
// known") and stays stuck.
func (cm *certmongerInstance) addSCEPCA(ctx context.Context, url string, caCertPEM []byte) error {
	// certmonger says nothing when it cannot fetch the CA's certificates, so
	// find out first whether anything answers there at all.
	if err := getCACaps(ctx, url); err != nil {
		return fmt.Errorf("SCEP server unreachable: %w", err)
	}
	args := []string{"add-scep-ca", "-s", "-c", certmongerCAName, "-u", url}
	if caCertPEM != nil {
		p := filepath.Join(cm.dir, "scep-ca.pem")
		if err := os.WriteFile(p, caCertPEM, 0o600); err != nil {
			return err
		}
		args = append(args, "-N", p)
	}
	if out, err := cm.getcert(ctx, args...); err != nil {
		return fmt.Errorf("getcert add-scep-ca: %w: %s", err, out)
	}
	// Bounded separately so that an unreachable server is reported as such
	// rather than as the caller's deadline.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out string
	err := waitFor(waitCtx, 50*time.Millisecond, func() (bool, error) {
		if err := cm.daemon.exitErr(); err != nil {
			return false, err
		}
		var listErr error
		out, listErr = cm.getcert(waitCtx, "list-cas", "-s", "-c", certmongerCAName)
		return listErr == nil && strings.Contains(out, "SCEP CA certificate thumbprint"), nil
	})
	if err != nil {
		return fmt.Errorf("certmonger did not get the CA certificates from %s: %w\n%s\n%s",
			url, err, out, cm.daemon.logTail(20))
	}
	return nil
}

// requestState is what `getcert list -i` says about a request.
type requestState struct {
	status, caError string
	stuck           bool
	listing         string
}

func parseRequestState(listing string) requestState {
	st := requestState{listing: strings.TrimSpace(listing)}
	for _, line := range strings.Split(listing, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "status":
			st.status = v
		case "ca-error":
			st.caError = v
		case "stuck":
			st.stuck = v == "yes"
		}
	}
	return st
}

// final reports whether certmonger will not get further with the request
// without outside help: issued and saved (MONITORING), or a refusal,
// unreachable or unconfigured CA, or any state it is stuck in. certmonger
// retries CA_UNREACHABLE on its own after a long delay; we do not wait.
// CA_WORKING (the CA said PENDING) is not final, nor are the states that
// notify a rejection on the way to CA_REJECTED.
func (st requestState) final() bool {
	switch st.status {
	case "MONITORING", "CA_REJECTED", "CA_UNREACHABLE", "CA_UNCONFIGURED", "NEED_GUIDANCE":
		return true
	}
	return st.stuck || strings.Contains(st.status, "FAILED")
}
