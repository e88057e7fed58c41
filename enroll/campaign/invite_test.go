package campaign

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
)

func decodeQR(t *testing.T, png []byte) string {
	t.Helper()
	text, err := campaigntest.DecodeQR(png)
	if err != nil {
		t.Fatalf("QR code does not decode: %v", err)
	}
	return text
}

// An invitation sent through the SMTP server arrives for its recipient
// with the link in both bodies and a QR image that decodes to exactly that
// link; names are escaped in the HTML.
func TestInvitationMail(t *testing.T) {
	r, err := NewRenderer(DefaultTemplates)
	if err != nil {
		t.Fatal(err)
	}
	link := "https://mdm.example.com/enroll/AbC_123-xyz"
	inv := &Invitation{Name: "Ana <Lima>", Email: "ana@example.com", Link: link, Ring: "ring-1",
		Deadline: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), HelpDesk: "it@example.com, ext. 4242"}
	msg, err := r.Render(inv)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "Enrol your device in Custody by Fri 4 Dec" || !strings.Contains(msg.Text, link) ||
		!strings.Contains(msg.HTML, `href="`+link+`"`) || !strings.Contains(msg.HTML, "Ana &lt;Lima&gt;") {
		t.Errorf("rendered %+v", msg)
	}
	if got := decodeQR(t, msg.Inline[QRName]); got != link {
		t.Fatalf("QR code holds %q, want %q", got, link)
	}

	smtp := campaigntest.Start(t)
	m, err := NewMailer(MailSettings{Host: "127.0.0.1", Port: smtp.Port, TLS: TLSStartTLS, Username: smtp.User, Password: smtp.Pass,
		From: "it@example.com", CAPEM: smtp.CAPEM, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := smtp.Messages()
	if len(got) != 1 || got[0].To[0] != "ana@example.com" {
		t.Fatalf("received %+v", got)
	}
	parsed, err := got[0].Parse()
	if err != nil {
		t.Fatal(err)
	}
	qr := parsed.Inline[QRName]
	if qr == nil {
		t.Fatalf("no inline QR image in:\n%s", got[0].Data)
	}
	if decoded := decodeQR(t, qr); decoded != link {
		t.Errorf("the mailed QR code holds %q, want %q", decoded, link)
	}
	if !strings.Contains(parsed.Text, link) || !strings.Contains(parsed.HTML, `href="`+link+`"`) || parsed.Subject != msg.Subject {
		t.Errorf("parsed mail: subject %q, text %q", parsed.Subject, parsed.Text)
	}
}

func TestRendererErrors(t *testing.T) {
	for name, tmpl := range map[string]Templates{
		"bad subject syntax": {Subject: "{{.Name", Text: "x"},
		"unknown field":      {Subject: "x", Text: "{{.Nickname}}"},
		"bad HTML":           {Subject: "x", Text: "x", HTML: "{{if}}"},
	} {
		if _, err := NewRenderer(tmpl); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r, _ := NewRenderer(DefaultTemplates)
	msg, _ := r.Render(&Invitation{Name: "Bo", Email: "bo@example.com", Link: "https://x/enroll/1", Reminder: true})
	if !strings.HasPrefix(msg.Subject, "Reminder: ") || !strings.Contains(msg.Text, "has not been enrolled yet") {
		t.Errorf("reminder: %+v", msg)
	}
}

// A code that gozxing's finder-pattern detector alone does not find (it
// placed the alignment pattern outside the image) still decodes: CI had
// failed on one like it, about one link in 300.
func TestQRDetectorMiss(t *testing.T) {
	link := "http://127.0.0.1:41234/enroll/ZSvslcuwKQTVQC4MfaXN0NHX41k1jr8_"
	png, err := qrPNG(link)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeQR(t, png); got != link {
		t.Errorf("decoded %q, want %q", got, link)
	}
}
