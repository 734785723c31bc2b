package api

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium. Without it the browser test skips,
// except in CI (env CI set), where it fails: CI must install chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found, and CI is set: install Debian's chromium (apt-get install chromium)")
	}
	t.Skip("chromium not found; apt-get install chromium to run the status page test")
	return ""
}

// artifacts is where screenshots go: $TEST_ARTIFACTS, else a temp dir.
func artifacts(t *testing.T) string {
	if d := os.Getenv("TEST_ARTIFACTS"); d != "" {
		d = filepath.Join(d, "agent-api")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browser starts headless chromium (as root: no sandbox) with a fresh
// profile, and answers basic-auth challenges with user and pass, as a
// person would in the browser's dialog.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	requests []string // URLs, in order
	bytes    float64  // encoded bytes received, headers included
	auths    int      // basic-auth challenges answered
}

func newBrowser(t *testing.T, user, pass string) *browser {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	b := &browser{ctx: ctx}

	// Start the tab, then watch the network and answer auth challenges.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, ev.Request.URL)
		case *network.EventLoadingFinished:
			b.bytes += ev.EncodedDataLength
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	authReq := chromedp.Events(ctx, fetch.AuthRequired)
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range authReq {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.auths++
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID,
				AuthChallengeResponse: &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: pass}})
		}
	}()
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: new(true)}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) counts() (requests []string, bytes float64, auths int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...), b.bytes, b.auths
}

// TestStatusPageBrowser loads the status page in real headless Chromium:
// the page loads with basic auth (admin + token), a client connected by
// the test shows in the table, the kick button disconnects it, the charts
// draw SVG paths, and screenshots (desktop and phone) are saved.
func TestStatusPageBrowser(t *testing.T) {
	up := &fakeUplink{}
	up.queue.Store(17)
	e := startEnv(t, baseConfig, Options{Uplink: up, SampleInterval: 200 * time.Millisecond, ChartPoints: 100})
	dev := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "browser-dev-1", "floor1", "x")
	dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "other-dev", "", "x")
	for i := 0; i < 5; i++ {
		dev.send(fmt.Sprintf("PUB 0 temp/%d 21", i))
		if l := dev.line(); l != "PUBACK ok" {
			t.Fatal(l)
		}
	}
	dir := artifacts(t)
	b := newBrowser(t, "admin", e.token)

	row := `#clients tr[data-clientid="browser-dev-1"]`
	b.do(t, "load the page", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(row)))
	// A full load: document, stylesheet, script and the first data, which
	// is in once the script has filled the clients count.
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.getElementById('clients-count').textContent !== ''`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	reqs, bytes, auths := b.counts()
	t.Logf("status page full load: %d requests, %.0f bytes transferred (headers included), %d auth challenge(s): %v", len(reqs), bytes, auths, reqs)
	if auths == 0 {
		t.Fatal("no basic-auth challenge: the page did not ask for credentials")
	}
	// A second visit: the versioned assets come from the cache.
	b.do(t, "load again", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(row)))
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.getElementById('clients-count').textContent !== ''`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	reqs2, bytes2, _ := b.counts()
	t.Logf("status page second visit: %d requests, %.0f bytes transferred: %v", len(reqs2)-len(reqs), bytes2-bytes, reqs2[len(reqs):])
	title, err := chromedp.Run(b.ctx, chromedp.Title())
	if err != nil || !strings.Contains(title, "box-1") {
		t.Fatalf("title %q %v", title, err)
	}
	text, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#uplink-state")))
	if err != nil || text != "connected" {
		t.Fatalf("uplink state %q %v", text, err)
	}

	// Charts: SVG paths with points, once a few samples are in.
	for _, sel := range []string{"#chart-msgs path.in", "#chart-msgs path.out", "#chart-queue path.queue"} {
		expr := fmt.Sprintf(`(document.querySelector(%q).getAttribute('d') || '').split('L').length > 3`, sel)
		if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			d, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).getAttribute('d')`, sel)))
			t.Fatalf("chart %s has no line (d=%q): %v", sel, d, err)
		}
	}
	d, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('#chart-msgs path.in').getAttribute('d')`))
	if !strings.HasPrefix(d, "M") {
		t.Fatalf("messages path %q", d)
	}

	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	desktop := filepath.Join(dir, "status-page-desktop.png")
	if err := os.WriteFile(desktop, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", desktop)

	// Search narrows the table.
	b.do(t, "search", chromedp.SendKeys(chromedp.CSS("#client-search"), "browser"),
		chromedp.WaitNotPresent(chromedp.CSS(`#clients tr[data-clientid="other-dev"]`)))

	// Kick: two taps (arm, confirm); the device is disconnected.
	kick := row + " button.kick"
	b.do(t, "kick", chromedp.Click(chromedp.CSS(kick)), chromedp.Click(chromedp.CSS(kick)))
	if l := dev.line(); l != "KICK kicked" {
		t.Fatalf("device got %q after the kick button", l)
	}
	if l := dev.line(); l != "" {
		t.Fatalf("device still connected: %q", l)
	}
	b.do(t, "row gone", chromedp.WaitNotPresent(chromedp.CSS(row)))
	if g, _ := e.a.Gateways().Get("apitest"); g.ClientCount() != 1 {
		t.Fatal("client still in the gateway's table")
	}
	expr := `Array.from(document.querySelectorAll('#events li')).some(li => li.textContent.includes('client.disconnected') && li.textContent.includes('browser-dev-1'))`
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("no disconnect in the event log: %v", err)
	}

	// On a phone-sized screen.
	b.do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(e.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#clients tr[data-clientid="other-dev"]`)))
	wide, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil || wide {
		t.Fatalf("page scrolls sideways on a phone (%v)", err)
	}
	shot, err = chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	phone := filepath.Join(dir, "status-page-phone.png")
	if err := os.WriteFile(phone, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", phone)

	m, _ := json.MarshalIndent(map[string]any{"first_visit": map[string]any{"requests": len(reqs), "bytes": bytes, "urls": reqs},
		"second_visit": map[string]any{"requests": len(reqs2) - len(reqs), "bytes": bytes2 - bytes, "urls": reqs2[len(reqs):]}}, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, "status-page-weight.json"), m, 0o644)
}

// A viewer sees the page without kick or enable buttons.
func TestStatusPageBrowserViewer(t *testing.T) {
	e := startEnv(t, baseConfig, Options{SampleInterval: 200 * time.Millisecond})
	dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "seen-dev", "", "x")
	b := newBrowser(t, "viewer", viewerPass)
	b.do(t, "load as viewer", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(`#clients tr[data-clientid="seen-dev"]`)))
	// After the scripted refresh too.
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.getElementById('clients-count').textContent !== ''`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('button.kick, button.toggle').length`))
	if err != nil || n != 0 {
		t.Fatalf("viewer sees %d admin buttons (%v)", n, err)
	}
	who, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#who")))
	if !strings.Contains(who, "viewer") {
		t.Fatalf("signed in as %q", who)
	}
}
