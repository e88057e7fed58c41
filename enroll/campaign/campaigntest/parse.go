package campaigntest

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// A Parsed message is what a mail client shows of a Message: its decoded
// subject, text and HTML bodies, and inline parts by content ID.
type Parsed struct {
	Subject string
	Text    string
	HTML    string
	Inline  map[string][]byte // Content-ID without its angle brackets → bytes
}

// Parse walks the message's MIME tree as a mail client does, undoing the
// transfer encodings.
func (m Message) Parse() (*Parsed, error) {
	msg, err := mail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		return nil, err
	}
	p := &Parsed{Inline: map[string][]byte{}}
	p.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return nil, err
	}
	body, err := decode(msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	if err != nil {
		return nil, err
	}
	return p, p.walk(msg.Header.Get("Content-Type"), "", body)
}

func decode(encoding string, r io.Reader) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "base64":
		return io.ReadAll(base64.NewDecoder(base64.StdEncoding, r))
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(r))
	}
	return io.ReadAll(r)
}

func (p *Parsed) walk(contentType, contentID string, body []byte) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			data, err := decode(part.Header.Get("Content-Transfer-Encoding"), part)
			if err != nil {
				return err
			}
			if err := p.walk(part.Header.Get("Content-Type"), part.Header.Get("Content-Id"), data); err != nil {
				return err
			}
		}
	case contentID != "":
		p.Inline[strings.Trim(contentID, "<>")] = body
	case mt == "text/plain":
		p.Text += string(body)
	case mt == "text/html":
		p.HTML += string(body)
	}
	return nil
}
