package peertest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if any process started by a helper is still a child
// of the test binary once the tests are over.
func TestMain(m *testing.M) {
	code := m.Run()
	if left := children(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "peertest: processes left behind: %s\n", strings.Join(left, "; "))
		code = 1
	}
	os.Exit(code)
}

// children lists the live child processes of this process (Linux only).
func children() []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	me := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 && f[1] == me {
			out = append(out, e.Name()+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return out
}

func commonName(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatalf("no PEM block in %q", certPEM)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.CommonName
}

const challenge = "peertest-challenge"

func TestScepClientAgainstScepServer(t *testing.T) {
	url, caPEM := ScepServer(t, challenge)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("right challenge", func(t *testing.T) {
		cert, out, err := ScepClient(ctx, t, url, challenge, "peertest-scepclient")
		if err != nil {
			t.Fatal(err)
		}
		if cn := commonName(t, cert); cn != "peertest-scepclient" {
			t.Errorf("CN = %q, want peertest-scepclient (output: %s)", cn, out)
		}
		if err := OpenSSLVerify(t, caPEM, cert); err != nil {
			t.Error(err)
		}
	})

	t.Run("wrong challenge", func(t *testing.T) {
		cert, out, err := ScepClient(ctx, t, url, "wrong", "peertest-scepclient-wrong")
		if err == nil {
			t.Fatalf("enrolled with a wrong challenge: %s", cert)
		}
		if !strings.Contains(out, "failInfo") {
			t.Errorf("want a SCEP failInfo in the output, got %q (err %v)", out, err)
		}
	})
}

func TestOpenSSLVerifyRejectsOtherCA(t *testing.T) {
	url, _ := ScepServer(t, "")
	_, otherCA := ScepServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, _, err := ScepClient(ctx, t, url, "", "peertest-other")
	if err != nil {
		t.Fatal(err)
	}
	if err := OpenSSLVerify(t, otherCA, cert); err == nil {
		t.Error("a certificate verified against a CA that did not issue it")
	}
}

// debianScepserverLimitation explains why certmonger cannot enrol against
// Debian's scepserver 2.1.0, if err is one of the ways it fails.
func debianScepserverLimitation(err error) string {
	var ce *CertmongerError
	if !errors.As(err, &ce) {
		return ""
	}
	switch {
	case ce.Status == "CA_UNREACHABLE" && strings.Contains(ce.CAError, "failed to verify signature on server response"):
		return "scepserver's GetCACert returns only its CA certificate; certmonger takes it as the RA " +
			"(encryption) certificate and then has no CA certificate to verify the CertRep signature against"
	case ce.Status == "NEED_GUIDANCE" && strings.Contains(ce.Details, "unsupported"):
		return "scepserver envelopes the issued certificate with DES-CBC whatever the request used, " +
			"and certmonger's OpenSSL 3 cannot decrypt DES"
	}
	return ""
}

func TestCertmongerAgainstScepServer(t *testing.T) {
	url, caPEM := ScepServer(t, challenge)

	t.Run("right challenge", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cert, err := Certmonger(ctx, t, url, challenge, "peertest-certmonger")
		if why := debianScepserverLimitation(err); why != "" {
			t.Skipf("certmonger cannot enrol against Debian's scepserver: %s.\n%v", why, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cn := commonName(t, cert); cn != "peertest-certmonger" {
			t.Errorf("CN = %q, want peertest-certmonger", cn)
		}
		if err := OpenSSLVerify(t, caPEM, cert); err != nil {
			t.Error(err)
		}
	})

	t.Run("wrong challenge", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		cert, err := Certmonger(ctx, t, url, "wrong", "peertest-certmonger-wrong")
		if err == nil {
			t.Fatalf("enrolled with a wrong challenge: %s", cert)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("took %v to give up", d)
		}
		var ce *CertmongerError
		if errors.As(err, &ce) {
			t.Logf("certmonger with a wrong challenge: %s: %s (after %v)", ce.Status, ce.CAError, time.Since(start).Round(time.Millisecond))
		} else {
			t.Errorf("want a *CertmongerError, got %v", err)
		}
	})
}

// TestCertmongerScepServerWithCAGiven hands certmonger the CA certificate
// that Debian's scepserver does not send as such, to get past the first
// limitation and show the second, and to check that a real refusal
// (CA_REJECTED) is reported promptly.
func TestCertmongerScepServerWithCAGiven(t *testing.T) {
	url, caPEM := ScepServer(t, challenge)

	t.Run("right challenge", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cert, err := certmonger(ctx, t, certmongerRequest{url: url, challenge: challenge,
			commonName: "peertest-certmonger-n", caCertPEM: caPEM})
		if why := debianScepserverLimitation(err); why != "" {
			t.Skipf("certmonger cannot enrol against Debian's scepserver: %s.\n%v", why, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := OpenSSLVerify(t, caPEM, cert); err != nil {
			t.Error(err)
		}
	})

	t.Run("wrong challenge", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err := certmonger(ctx, t, certmongerRequest{url: url, challenge: "wrong",
			commonName: "peertest-certmonger-n-wrong", caCertPEM: caPEM})
		var ce *CertmongerError
		if !errors.As(err, &ce) || ce.Status != "CA_REJECTED" {
			t.Fatalf("want CA_REJECTED, got %v", err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("took %v to give up", d)
		}
		t.Logf("%s: %s (after %v)", ce.Status, ce.CAError, time.Since(start).Round(time.Millisecond))
	})
}

// TestCertmongerIssuedPath exercises the helper's success path (daemon,
// request, waiting for MONITORING, reading the saved certificate) with
// certmonger's built-in "local" CA, since no SCEP server here can issue to
// certmonger.
func TestCertmongerIssuedPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, err := certmonger(ctx, t, certmongerRequest{builtinCA: "local", commonName: "peertest-local"})
	if err != nil {
		t.Fatal(err)
	}
	if cn := commonName(t, cert); cn != "peertest-local" {
		t.Errorf("CN = %q, want peertest-local", cn)
	}
}

func TestCertmongerUnreachable(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Certmonger(ctx, t, "http://127.0.0.1:"+port+"/scep", challenge, "peertest-unreachable")
	if err == nil {
		t.Fatal("enrolled against nothing")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to give up", d)
	}
	if !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unexpected error: %v", err)
	}
}

// fakeTB records Skip and Fatal instead of acting on them.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeTB) Fatal(args ...any) { f.fatal = fmt.Sprint(args...); runtime.Goexit() }

func TestNeed(t *testing.T) {
	if p := Need(t, "openssl", "openssl"); !strings.HasSuffix(p, "/openssl") {
		t.Errorf("Need(openssl) = %q", p)
	}
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Need(f, "peertest-no-such-program", "peertest-pkg")
		}()
		<-done
		got := f.skipped
		if ci != "" {
			got = f.fatal
		}
		if !strings.Contains(got, "peertest-pkg") || (f.skipped != "") == (f.fatal != "") {
			t.Errorf("CI=%q: skipped %q, fatal %q", ci, f.skipped, f.fatal)
		}
	}
}

// The pinned releases build from the module proxy and enrol with each other.
func TestPinnedScepPeers(t *testing.T) {
	url, caPEM := StartScepServer(t, ScepServer230.Need(t), challenge, 2048)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, out, err := RunScepClient(ctx, t, ScepClient230.Need(t), url, challenge, "peertest-pinned")
	if err != nil {
		t.Fatalf("scepclient %s against scepserver %s: %v\n%s", ScepClient230.Version, ScepServer230.Version, err, out)
	}
	if cn := commonName(t, cert); cn != "peertest-pinned" {
		t.Errorf("issued CN %q", cn)
	}
	if err := OpenSSLVerify(t, caPEM, cert); err != nil {
		t.Error(err)
	}
}
