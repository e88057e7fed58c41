package campaign

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"image"
	"image/color"
	"image/png"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/skip2/go-qrcode"
)

// An Invitation is what an invitation or reminder mail says to one user.
type Invitation struct {
	Name   string // the user's name
	Email  string // the recipient
	Mobile string // the user's mobile number, for channels that text
	Link   string // the one-time enrollment link
	// QR is what the QR code holds: the link when empty; for a
	// company-owned Android device, the provisioning JSON its setup
	// wizard scans.
	QR       string
	Device   string    // the pre-enrolled device's name, if any
	Platform string    // ios, macos, android
	Ring     string    // the ring (cohort) the user is in
	Deadline time.Time // zero when there is none
	HelpDesk string    // where to get help
	Reminder bool      // a reminder rather than the first invitation
	Overdue  bool      // the deadline has passed
}

// Kind is KindReminder or KindInvitation.
func (inv *Invitation) Kind() string {
	if inv.Reminder {
		return KindReminder
	}
	return KindInvitation
}

// QRName is the content ID of the QR code image in an invitation's HTML
// (<img src="cid:enroll-qr.png">).
const QRName = "enroll-qr.png"

// Templates render invitations: a subject, a text body and an HTML body,
// as Go templates over an Invitation (html/template for the HTML, which
// escapes what users put in names). The HTML may show the QR code of the
// link as <img src="cid:enroll-qr.png">.
type Templates struct {
	Subject, Text, HTML string
}

// DefaultTemplates are the invitation an administrator gets until they
// write their own.
var DefaultTemplates = Templates{
	Subject: `{{if .Overdue}}Final reminder: {{else if .Reminder}}Reminder: {{end}}Enrol your device in Custody{{if and (not .Deadline.IsZero) (not .Overdue)}} by {{.Deadline.Format "Mon 2 Jan"}}{{end}}`,
	Text: `Hello {{.Name}},

{{if .Reminder}}Your device has not been enrolled yet. {{end}}Your organisation is moving device management to Custody.
{{with .Device}}This invitation is for {{.}}. {{end}}Open this link on the device you want to enrol (it works once):

  {{.Link}}
{{if .Overdue}}
The deadline, {{.Deadline.Format "Monday 2 January 2006"}}, has passed: please enrol now.
{{else if not .Deadline.IsZero}}
Please enrol before {{.Deadline.Format "Monday 2 January 2006"}}.
{{end}}{{if .HelpDesk}}
Questions? {{.HelpDesk}}
{{end}}`,
	HTML: `<!doctype html>
<html><body style="font-family: sans-serif">
<p>Hello {{.Name}},</p>
<p>{{if .Reminder}}Your device has not been enrolled yet. {{end}}Your organisation is moving device management to Custody.
{{with .Device}}This invitation is for {{.}}. {{end}}Open this link on the device you want to enrol (it works once):</p>
<p><a href="{{.Link}}">{{.Link}}</a></p>
<p>Or scan this code with the device's camera:</p>
<p><img src="cid:` + QRName + `" alt="QR code of your enrollment link" width="256" height="256"></p>
{{if .Overdue}}<p>The deadline, {{.Deadline.Format "Monday 2 January 2006"}}, has passed: please enrol now.</p>{{else if not .Deadline.IsZero}}<p>Please enrol before <strong>{{.Deadline.Format "Monday 2 January 2006"}}</strong>.</p>{{end}}
{{if .HelpDesk}}<p>Questions? {{.HelpDesk}}</p>{{end}}
</body></html>
`,
}

// qrModulePixels is the side of a QR code's module in the PNG: a link's
// code (version 4 to 6, with its quiet zone) comes out 250 to 300 pixels
// wide, about the 256 a mail client shows it at.
const qrModulePixels = 6

// qrPalette is black on white.
var qrPalette = color.Palette{color.White, color.Black}

// qrPNG draws a QR code as a two-colour PNG, one scaled row at a time,
// with the fastest compression (a 1-bit image of large flat modules
// compresses well anyway; drawing pixel by pixel and the default level
// had been most of a campaign's CPU).
func qrPNG(content string) ([]byte, error) {
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		return nil, err
	}
	bits := q.Bitmap() // with its quiet zone
	side := len(bits) * qrModulePixels
	img := image.NewPaletted(image.Rect(0, 0, side, side), qrPalette)
	for y, row := range bits {
		line := img.Pix[y*qrModulePixels*img.Stride:][:side]
		for x, black := range row {
			if black {
				for i := range qrModulePixels {
					line[x*qrModulePixels+i] = 1
				}
			}
		}
		for i := 1; i < qrModulePixels; i++ {
			copy(img.Pix[(y*qrModulePixels+i)*img.Stride:][:side], line)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// A Renderer renders invitations from parsed templates.
type Renderer struct {
	subject, text *texttemplate.Template
	html          *htmltemplate.Template
}

// NewRenderer parses templates, reporting which one is wrong.
func NewRenderer(t Templates) (*Renderer, error) {
	var r Renderer
	var err error
	if r.subject, err = texttemplate.New("subject").Option("missingkey=error").Parse(t.Subject); err != nil {
		return nil, fmt.Errorf("campaign: subject template: %w", err)
	}
	if r.text, err = texttemplate.New("text").Option("missingkey=error").Parse(t.Text); err != nil {
		return nil, fmt.Errorf("campaign: text template: %w", err)
	}
	if t.HTML != "" {
		if r.html, err = htmltemplate.New("html").Option("missingkey=error").Parse(t.HTML); err != nil {
			return nil, fmt.Errorf("campaign: HTML template: %w", err)
		}
	}
	// A template that fails on a sample fails now, not mid-campaign.
	if _, err := r.Render(&Invitation{Name: "Sample", Email: "sample@example.com", Link: "https://example.com/enroll/x",
		Deadline: time.Now()}); err != nil {
		return nil, err
	}
	return &r, nil
}

// Render makes the mail of an invitation, with the QR code of its link as
// an inline PNG when there is an HTML body.
func (r *Renderer) Render(inv *Invitation) (*Message, error) {
	var subject, text bytes.Buffer
	if err := r.subject.Execute(&subject, inv); err != nil {
		return nil, fmt.Errorf("campaign: subject: %w", err)
	}
	if err := r.text.Execute(&text, inv); err != nil {
		return nil, fmt.Errorf("campaign: text: %w", err)
	}
	msg := &Message{To: inv.Email, ToName: inv.Name, Subject: strings.TrimSpace(strings.ReplaceAll(subject.String(), "\n", " ")),
		Text: text.String(), Mobile: inv.Mobile, Link: inv.Link, Ring: inv.Ring, Kind: inv.Kind()}
	if r.html != nil {
		var html bytes.Buffer
		if err := r.html.Execute(&html, inv); err != nil {
			return nil, fmt.Errorf("campaign: HTML: %w", err)
		}
		qr := inv.QR
		if qr == "" {
			qr = inv.Link
		}
		png, err := qrPNG(qr)
		if err != nil {
			return nil, fmt.Errorf("campaign: QR code: %w", err)
		}
		msg.HTML, msg.Inline = html.String(), map[string][]byte{QRName: png}
	}
	return msg, nil
}
