package campaign

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/internal/peertest"
)

func TestMailerStartTLSAuth(t *testing.T) {
	be := campaigntest.Start(t)
	ctx := context.Background()
	settings := MailSettings{Host: "127.0.0.1", Port: be.Port, TLS: TLSStartTLS, Username: be.User, Password: be.Pass,
		From: "it-support@example.com", FromName: "IT Support", CAPEM: be.CAPEM, Timeout: 5 * time.Second}
	m, err := NewMailer(settings)
	if err != nil {
		t.Fatal(err)
	}
	png := []byte("\x89PNG\r\n\x1a\nfake")
	err = m.Send(ctx, &Message{To: "ana@example.com", ToName: "Ana Lima", Subject: "Enrol your iPhone",
		Text: "Open https://mdm.example.com/enroll/abc", HTML: `<p><img src="cid:qr.png"></p>`, Inline: map[string][]byte{"qr.png": png}})
	if err != nil {
		t.Fatal(err)
	}
	if len(be.Messages()) != 1 {
		t.Fatalf("%d messages received", len(be.Messages()))
	}
	r := be.Messages()[0]
	for _, want := range []string{"Subject: Enrol your iPhone", `"Ana Lima" <ana@example.com>`, `"IT Support" <it-support@example.com>`,
		"https://mdm.example.com/enroll/abc", "Content-Id: <qr.png>", "text/html"} {
		if !strings.Contains(r.Data, want) {
			t.Errorf("message lacks %q:\n%s", want, r.Data)
		}
	}
	if r.From != "it-support@example.com" || len(r.To) != 1 || r.To[0] != "ana@example.com" {
		t.Errorf("envelope %s → %v", r.From, r.To)
	}

	// Refusals come back with the server's reply.
	bad := settings
	bad.Password = "wrong"
	mb, _ := NewMailer(bad)
	err = mb.Send(ctx, &Message{To: "ana@example.com", Subject: "x", Text: "x"})
	var se *SendError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "535") && !strings.Contains(err.Error(), "credentials invalid") {
		t.Errorf("wrong password: %v", err)
	}
	err = m.Send(ctx, &Message{To: "x@blocked.example", Subject: "x", Text: "x"})
	if !errors.As(err, &se) || se.Temporary || !strings.Contains(err.Error(), "Relaying denied") {
		t.Errorf("relay denied: %v", err)
	}
	// Implicit TLS against a STARTTLS port, and no TLS where AUTH needs it.
	tlsMismatch := settings
	tlsMismatch.TLS = TLSImplicit
	mt, _ := NewMailer(tlsMismatch)
	if err := mt.Send(ctx, &Message{To: "ana@example.com", Subject: "x", Text: "x"}); err == nil {
		t.Error("implicit TLS against a STARTTLS server sent a mail")
	}
	noTLS := settings
	noTLS.TLS = TLSNone
	mn, _ := NewMailer(noTLS)
	if err := mn.Send(ctx, &Message{To: "ana@example.com", Subject: "x", Text: "x"}); err == nil {
		t.Error("AUTH without TLS sent a mail")
	}
	// An untrusted certificate is refused.
	untrusted := settings
	untrusted.CAPEM = nil
	mu, _ := NewMailer(untrusted)
	if err := mu.Send(ctx, &Message{To: "ana@example.com", Subject: "x", Text: "x"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	if len(be.Messages()) != 1 {
		t.Errorf("%d messages received after the refusals, want 1", len(be.Messages()))
	}
}

func TestMailSettingsCheck(t *testing.T) {
	good := MailSettings{Host: "smtp.example.com", Port: 587, TLS: TLSStartTLS, From: "it@example.com"}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*MailSettings){
		"no host":       func(s *MailSettings) { s.Host = "" },
		"bad port":      func(s *MailSettings) { s.Port = 70000 },
		"bad tls":       func(s *MailSettings) { s.TLS = "ssl3" },
		"no password":   func(s *MailSettings) { s.Username = "u" },
		"display from":  func(s *MailSettings) { s.From = "IT <it@example.com>" },
		"not a CA file": func(s *MailSettings) { s.CAPEM = []byte("hello") },
	} {
		s := good
		edit(&s)
		if err := s.Check(); !errors.Is(err, ErrMailSettings) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A real SMTP server process, Debian's python3-aiosmtpd, receives the mail.
func TestMailerAiosmtpd(t *testing.T) {
	// Debian's package installs for Debian's Python, which a PATH may
	// shadow (pyenv).
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = peertest.Need(t, "python3", "python3")
	}
	if err := exec.Command(python, "-c", "import aiosmtpd").Run(); err != nil {
		peertest.Need(t, "aiosmtpd-is-missing", "python3-aiosmtpd")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(python, "-m", "aiosmtpd", "-n", "-d", "-l", "127.0.0.1:"+strconv.Itoa(port))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, err := NewMailer(MailSettings{Host: "127.0.0.1", Port: port, TLS: TLSNone, From: "it@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// An invitation, as a campaign renders it.
	r, _ := NewRenderer(DefaultTemplates)
	link := "https://mdm.example.com/enroll/Zx9_aiosmtpd-1"
	msg, err := r.Render(&Invitation{Name: "Bo", Email: "bo@example.com", Link: link, Ring: "pilot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	// aiosmtpd's debugging handler prints each message it takes between
	// these lines, with X-Peer added.
	deadline := time.After(10 * time.Second)
	var seen, message []string
	in := false
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("aiosmtpd ended; printed:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			switch {
			case strings.Contains(l, "MESSAGE FOLLOWS"):
				in = true
			case strings.Contains(l, "END MESSAGE"):
				// It prints the SMTP options it was given first.
				if len(message) > 1 && strings.HasPrefix(message[0], "mail options:") && message[1] == "" {
					message = message[2:]
				}
				data := strings.Join(message, "\r\n")
				if !strings.Contains(data, "\r\nTo: \"Bo\" <bo@example.com>\r\n") {
					t.Errorf("aiosmtpd took a message for someone else:\n%s", data)
				}
				p, err := campaigntest.Message{Data: data}.Parse()
				if err != nil {
					t.Fatalf("the message aiosmtpd took does not parse: %v\n%s", err, data)
				}
				if got := decodeQR(t, p.Inline[QRName]); got != link || !strings.Contains(p.Text, link) || p.Subject != msg.Subject {
					t.Errorf("through aiosmtpd: QR %q, subject %q, text %q", got, p.Subject, p.Text)
				}
				return
			case in:
				message = append(message, l)
			}
		case <-deadline:
			t.Fatalf("aiosmtpd did not print the message; printed:\n%s", strings.Join(seen, "\n"))
		}
	}
}
