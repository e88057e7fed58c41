package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
)

// custody mail set stores the SMTP settings with the password encrypted;
// custody mail test sends through them and, on failure, prints the
// server's reply.
func TestMailSetAndTest(t *testing.T) {
	smtp := campaigntest.Start(t)
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)
	if _, err := cli(t, "mail", "test", "--data", dir, "--to", "ana@example.com"); err == nil || !strings.Contains(err.Error(), "no mail settings") {
		t.Errorf("test before set: %v", err)
	}
	pw := writeFile(t, "pw", []byte(smtp.Pass+"\n"))
	ca := writeFile(t, "ca.pem", smtp.CAPEM)
	set := func(password string) error {
		os.WriteFile(pw, []byte(password+"\n"), 0o600)
		_, err := cli(t, "mail", "set", "--data", dir, "--host", "127.0.0.1", "--port", strconv.Itoa(smtp.Port), "--tls", "starttls",
			"--user", smtp.User, "--password-file", pw, "--from", "it-support@example.com", "--from-name", "IT Support", "--ca-file", ca)
		return err
	}
	if err := set(smtp.Pass); err != nil {
		t.Fatal(err)
	}
	// At rest: no password in the clear.
	stored, _ := os.ReadFile(filepath.Join(dir, fileMail))
	if strings.Contains(string(stored), smtp.Pass) || !strings.Contains(string(stored), "secret_sealed") {
		t.Errorf("mail.json holds the password in the clear or not at all:\n%s", stored)
	}
	out, _ := cli(t, "mail", "show", "--data", dir)
	var shown mailJSON
	json.Unmarshal([]byte(out), &shown)
	if !shown.HasPassword || strings.Contains(out, smtp.Pass) || shown.Port != smtp.Port || !shown.CustomCA {
		t.Errorf("mail show: %s", out)
	}
	if out, err := cli(t, "mail", "test", "--data", dir, "--to", "ana@example.com", "--subject", "Hello"); err != nil || !strings.Contains(out, "sent to ana@example.com") {
		t.Fatalf("mail test: %v\n%s", err, out)
	}
	if m := smtp.Messages(); len(m) != 1 || m[0].To[0] != "ana@example.com" || !strings.Contains(m[0].Data, "Subject: Hello") {
		t.Fatalf("messages %+v", m)
	}
	// The server's refusals, word for word.
	if _, err := cli(t, "mail", "test", "--data", dir, "--to", "x@blocked.example"); err == nil || !strings.Contains(err.Error(), "Relaying denied") {
		t.Errorf("relay denied: %v", err)
	}
	if err := set("wrong"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "mail", "test", "--data", dir, "--to", "ana@example.com"); err == nil || !strings.Contains(err.Error(), "credentials invalid") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := cli(t, "mail", "set", "--data", dir, "--host", "127.0.0.1", "--port", "0", "--from", "it@example.com"); err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("bad port: %v", err)
	}
}
