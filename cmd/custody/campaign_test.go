package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custodymdm/custody/enroll/campaign"
)

// An administrator's own template and the webhook channel, through the
// CLI: the template is checked when stored, the webhook's secret is
// sealed at rest, and a ring on the webhook channel posts signed JSON
// rendered from that template, with each device's link.
func TestTemplatesAndWebhookCLI(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	startServe(t, ctx, dir)

	var mu sync.Mutex
	var posted []campaign.WebhookMessage
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(campaign.SignatureHeader) != campaign.Sign("bridge-key", body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m campaign.WebhookMessage
		json.Unmarshal(body, &m)
		mu.Lock()
		posted = append(posted, m)
		mu.Unlock()
	}))
	defer hook.Close()

	bad := writeFile(t, "bad.txt", []byte("Hi {{.Nickname}}"))
	if out, err := cli(t, "templates", "set", "invitation", "--data", dir, "--subject", "Enrol", "--text-file", bad); err == nil || !strings.Contains(err.Error(), "Nickname") {
		t.Errorf("a template with an unknown variable: %v\n%s", err, out)
	}
	text := writeFile(t, "sms.txt", []byte("Hi {{.Name}}, enrol {{.Device}} before {{.Deadline.Format \"2 Jan\"}}: {{.Link}} Help: {{.HelpDesk}}"))
	if _, err := cli(t, "templates", "set", "invitation", "--data", dir, "--subject", "Enrol {{.Device}}", "--text-file", text); err != nil {
		t.Fatal(err)
	}
	if out, _ := cli(t, "templates", "show", "invitation", "--data", dir); !strings.Contains(out, "(custom)") || !strings.Contains(out, "Help: {{.HelpDesk}}") {
		t.Errorf("templates show:\n%s", out)
	}
	if _, err := cli(t, "webhook", "set", "--data", dir, "--url", hook.URL, "--secret-file", writeFile(t, "key", []byte("bridge-key\n"))); err != nil {
		t.Fatal(err)
	}
	if stored, _ := os.ReadFile(filepath.Join(dir, fileWebhook)); strings.Contains(string(stored), "bridge-key") {
		t.Errorf("the webhook's secret is stored in the clear")
	}
	csv := "name,email,mobile,serial,platform,ownership,device name\n"
	for i := range 3 {
		csv += fmt.Sprintf("User %d,u%d@example.com,+44 7946 00000%d,SMS%d,ios,corporate,iPhone %d\n", i, i, i, i, i)
	}
	if out, err := cli(t, "preenroll", "import", "--data", dir, "--group", "field", writeFile(t, "field.csv", []byte(csv))); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := cli(t, "rings", "create", "field", "--data", dir, "--group", "field", "--channel", "webhook",
		"--deadline", "2026-12-04", "--help-desk", "ext. 4242"); err != nil || !strings.Contains(out, "3 targets") {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := cli(t, "invite", "--data", dir, "--ring", "field"); err != nil || !strings.Contains(out, "3 sent, 0 failed") {
		t.Fatalf("%v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posted) != 3 {
		t.Fatalf("%d posted", len(posted))
	}
	for _, m := range posted {
		if !strings.HasPrefix(m.Mobile, "+44 7946") || !strings.HasPrefix(m.Subject, "Enrol iPhone ") ||
			!strings.Contains(m.Text, "before 4 Dec: "+m.Link) || !strings.Contains(m.Text, "Help: ext. 4242") || !strings.Contains(m.Link, "/enroll/") {
			t.Errorf("posted %+v", m)
		}
	}
	if _, err := cli(t, "templates", "reset", "invitation", "--data", dir); err != nil {
		t.Fatal(err)
	}
	if out, _ := cli(t, "templates", "show", "invitation", "--data", dir); !strings.Contains(out, "(default)") {
		t.Errorf("after reset:\n%s", out)
	}
}
