package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodymdm/custody/enroll/campaign"
	"github.com/custodymdm/custody/enroll/campaign/campaigntest"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

// chromium returns Debian's chromium, or skips the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium: install Debian's chromium package (.ci/run does) to test the dashboard in a browser")
	return ""
}

// screenshot takes a full-page PNG and checks it is a real page (not
// blank: it shows the colour it must); with CUSTODY_SCREENSHOTS=DIR it
// keeps it there.
func screenshot(t *testing.T, ctx context.Context, name string, must color.RGBA) image.Image {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("%s screenshot: %v", name, err)
	}
	if dir := os.Getenv("CUSTODY_SCREENSHOTS"); dir != "" { // to look at them
		os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o600)
	}
	b := img.Bounds()
	found := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == must.R && uint8(g>>8) == must.G && uint8(bl>>8) == must.B {
				found++
			}
		}
	}
	if b.Dx() < 800 || found < 50 {
		t.Errorf("%s screenshot %v shows %d pixels of %v", name, b, found, must)
	}
	return img
}

// The dashboard in a real browser: sign in with the admin token, read
// each ring's counts and find them equal to the API's, see the chart on a
// ring's page, press "Remind" and find the reminders in the SMTP server
// for exactly those not enrolled; search the inventory.
func TestDashboard(t *testing.T) {
	browser := chromium(t)
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	url, _ := startServe(t, ctx, dir, "--dep-sync-interval", "0")
	smtp := campaigntest.Start(t)
	cli(t, "mail", "set", "--data", dir, "--host", "127.0.0.1", "--port", fmt.Sprint(smtp.Port), "--user", smtp.User,
		"--password-file", writeFile(t, "pass", []byte(smtp.Pass)), "--from", "it@example.com", "--ca-file", writeFile(t, "ca.pem", smtp.CAPEM))
	var csv strings.Builder
	csv.WriteString("name,email,serial,platform,ownership,groups\n")
	for i := range 24 {
		fmt.Fprintf(&csv, "User %d,user%02d@example.com,DASH%02d,ios,corporate,%s\n", i, i, i, map[bool]string{true: "pilot", false: "wave"}[i < 8])
	}
	if out, err := cli(t, "preenroll", "import", "--data", dir, writeFile(t, "dash.csv", []byte(csv.String()))); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, ring := range []string{"pilot", "wave"} {
		if out, err := cli(t, "rings", "create", ring, "--data", dir, "--group", ring, "--deadline", "+48h"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := cli(t, "invite", "--data", dir, "--ring", ring); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	// Five devices of the wave enrol by the links in their mails.
	links := map[string]string{}
	for _, m := range smtp.Messages() {
		p, _ := m.Parse()
		links[m.To[0]] = waveLinkRE.FindString(p.Text)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	for i := 8; i < 13; i++ {
		if _, err := mdmtest.Enroll(context.Background(), links[fmt.Sprintf("user%02d@example.com", i)],
			mdmtest.EnrollOptions{Roots: caPool(t, dir), SerialNumber: fmt.Sprintf("DASH%02d", i), Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	api := map[string]campaign.Counts{}
	for _, ring := range []string{"pilot", "wave"} {
		out, _ := cli(t, "rings", "show", ring, "--data", dir, "--json")
		var r ringJSON
		json.Unmarshal([]byte(out), &r)
		api[ring] = r.Counts
	}
	if api["wave"].Enrolled != 5 || api["wave"].Invited != 11 || api["pilot"].Invited != 8 {
		t.Fatalf("API counts %+v", api)
	}
	token, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	// Signing in: a wrong token is refused, the right one lands on the
	// rings.
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	count := func(expr string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	do(chromedp.Navigate(url+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#error")))
	errText := text("#error")
	do(chromedp.SendKeys(chromedp.CSS("#token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#rings")))
	if !strings.Contains(errText, "not the admin token") {
		t.Errorf("wrong token: %q", errText)
	}
	for ring, want := range api {
		got := map[string]int{}
		for _, name := range []string{"targets", "pre_approved", "invited", "failed", "enrolled", "overdue"} {
			got[name], _ = strconv.Atoi(text(fmt.Sprintf(`tr[data-ring=%q] td[data-count=%q]`, ring, name)))
		}
		if got["targets"] != want.Targets || got["pre_approved"] != want.PreApproved || got["invited"] != want.Invited ||
			got["failed"] != want.Failed || got["enrolled"] != want.Enrolled || got["overdue"] != want.Overdue {
			t.Errorf("ring %s on the page %v, the API %+v", ring, got, want)
		}
	}
	screenshot(t, bctx, "rings", color.RGBA{0x2e, 0x8b, 0x57, 0xff}) // the enrolled part of the wave's bar

	// The wave's page: the chart, the not-enrolled list, and Remind.
	do(chromedp.Click(chromedp.CSS(`a[href="/ui/rings/wave"]`)), chromedp.WaitVisible(chromedp.CSS("#chart")))
	rows := count(`document.querySelectorAll("#not-enrolled tr").length - 1`)
	if enrolled := text(`#counts b[data-count="enrolled"]`); rows != 11 || enrolled != "5" {
		t.Errorf("wave page: %d not enrolled listed, %s enrolled", rows, enrolled)
	}
	screenshot(t, bctx, "ring", color.RGBA{0x4a, 0x78, 0xc2, 0xff}) // the invited line and the button
	before := len(smtp.Messages())
	do(chromedp.Click(chromedp.CSS("#remind")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if flash := text("#flash"); !strings.Contains(flash, "11 reminders") {
		t.Errorf("after Remind: %q", flash)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(smtp.Messages())-before < 11 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	reminded := map[string]bool{}
	for _, m := range smtp.Messages()[before:] {
		p, _ := m.Parse()
		if !strings.HasPrefix(p.Subject, "Reminder: ") {
			t.Errorf("reminder subject %q", p.Subject)
		}
		reminded[m.To[0]] = true
	}
	for i := 8; i < 24; i++ {
		want := i >= 13
		if reminded[fmt.Sprintf("user%02d@example.com", i)] != want {
			t.Errorf("user%02d reminded %v, want %v", i, !want, want)
		}
	}
	if len(reminded) != 11 {
		t.Errorf("%d reminded", len(reminded))
	}
	// The last reminder's count lands just after the SMTP server took it.
	for _, want := range []string{`custody_campaign_messages_total{channel="email",kind="invitation",outcome="sent"} 24`,
		`custody_campaign_messages_total{channel="email",kind="reminder",outcome="sent"} 11`} {
		var metrics []byte
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			resp, err := http.Get(url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(metrics), want) {
				break
			}
		}
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The inventory, searched.
	do(chromedp.Click(chromedp.CSS(`a[href="/ui/devices"]`)),
		chromedp.WaitVisible(chromedp.CSS("#q")),
		chromedp.SendKeys(chromedp.CSS("#q"), "user1"),
		chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="found"][contains(., "match")]`)))
	found, rows := text("#found"), count(`document.querySelectorAll("#devices tr").length - 1`)
	if !strings.Contains(found, "10 devices match") || rows != 10 {
		t.Errorf("search user1: %q, %d rows", found, rows)
	}
	screenshot(t, bctx, "devices", color.RGBA{0x1d, 0x27, 0x33, 0xff}) // the header
}

// The dashboard without a browser: pages need a session (or the admin
// token as a bearer); a wrong token, a form without the session's CSRF
// token, a forged or expired cookie and an unknown ring are refused with
// a page that says why.
func TestDashboardRefusals(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	base, _ := startServe(t, ctx, dir)
	token, _ := os.ReadFile(filepath.Join(dir, fileAdminToken))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, cookie *http.Cookie, bearer string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/ui/", nil, ""); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next=%2Fui%2F" {
		t.Errorf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := get("/ui/", nil, strings.TrimSpace(string(token))); resp.StatusCode != http.StatusOK {
		t.Errorf("bearer token: %d", resp.StatusCode)
	}
	resp, err := noRedirect.PostForm(base+"/ui/login", url.Values{"token": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "not the admin token") {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	resp, err = noRedirect.PostForm(base+"/ui/login", url.Values{"token": {strings.TrimSpace(string(token))}, "next": {"https://evil.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" || session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in: %d, to %q, cookie %+v", resp.StatusCode, resp.Header.Get("Location"), session)
	}
	if resp := get("/ui/devices", session, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("with the session: %d", resp.StatusCode)
	}
	forged := *session
	forged.Value = strconv.FormatInt(time.Now().Add(100*time.Hour).Unix(), 10) + "." + strings.Repeat("0", 64)
	if resp := get("/ui/devices", &forged, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("forged cookie: %d", resp.StatusCode)
	}
	if resp := get("/ui/rings/nope", session, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown ring: %d", resp.StatusCode)
	}
	// A form without the CSRF token (as another site would post it).
	req, _ := http.NewRequest(http.MethodPost, base+"/ui/rings/nope/remind", strings.NewReader("csrf=guess"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(session)
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("remind without the CSRF token: %d", resp.StatusCode)
	}
	if resp := get("/ui/rings/nope/remind", session, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a form action: %d", resp.StatusCode)
	}
}
