package app

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
)

// TestUIBrowser loads /ui of a 3-node ZooKeeper cluster in headless
// Chromium, waits until the page draws every member in the ring legend, the
// ring and the members table, then adds a fourth node and watches the page
// show the migration (the target ring) and the new member. It saves
// full-page screenshots of the three states.
//
// The screenshots go to t.ArtifactDir(): a temporary folder removed after
// the test, unless the test runs with -artifacts, which keeps them under
// -outputdir (default: the package folder), e.g.
//
//	go test -run TestUIBrowser -artifacts -outputdir /tmp/goblocks-ui ./node/app/
//
// The test needs a Chromium binary (Debian's chromium package, which
// `make deps` installs); it drives it over the DevTools protocol, so no
// chromedriver is needed.
func TestUIBrowser(t *testing.T) {
	chrome := findChromium(t)
	// A slow transfer rate keeps the join's migration running for several
	// seconds, long enough for the page (polling every 1.5 s) to show it.
	// Public URLs as the lab sets them: the page must link there, not to
	// the address peers use.
	c := zkCluster(t, 3, clusterOpts{rateBps: 64 << 10, configure: func(_ int, cfg *config.Config) {
		cfg.PublicURL = "http://{name}.lab.example:80{n}/"
	}})
	preload(t, c, 300)
	b := newBrowser(t, chrome)
	if err := chromedp.Do(b.ctx, chromedp.Navigate(c.url(0, "/ui"))); err != nil {
		t.Fatalf("load %s: %v", c.url(0, "/ui"), err)
	}

	members := []string{"n0", "n1", "n2"}
	b.waitPage(t, "three members drawn", func(p uiPage) error { return p.showsRing(members, c.nodes[0].RingStatus()) })
	b.screenshot(t, "1-three-nodes.png")
	b.waitPage(t, "links to the public URLs", func(p uiPage) error {
		want := []string{"", "http://n1.lab.example:801/ui", "http://n2.lab.example:802/ui"} // n0 serves the page
		if !slices.Equal(p.Links, want) {
			return fmt.Errorf("member links %q, want %q", p.Links, want)
		}
		return nil
	})

	joined := c.addNode(t)
	name := c.cfgs[joined].ReplicaName
	b.waitPage(t, "migration drawn", func(p uiPage) error {
		switch {
		case !strings.Contains(p.State, "migrating"):
			return fmt.Errorf("migration state %q", p.State)
		case p.Target[name] == 0:
			return fmt.Errorf("target ring has no vnode of %s: %v", name, p.Target)
		case !slices.Contains(p.Legend, name):
			return fmt.Errorf("legend %v lacks %s", p.Legend, name)
		}
		return nil
	})
	b.screenshot(t, "2-migrating.png")

	members = append(members, name)
	c.waitStable(t, len(members))
	b.waitPage(t, "four members drawn", func(p uiPage) error {
		if !strings.Contains(p.State, "idle") {
			return fmt.Errorf("migration state %q", p.State)
		}
		return p.showsRing(members, c.nodes[0].RingStatus())
	})
	b.screenshot(t, "3-four-nodes.png")
	b.checkConsole(t)
}

// findChromium returns the browser binary, failing (not skipping) when it
// is missing so that a CI without it does not silently pass.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium not found on PATH (chromium, chromium-browser, google-chrome): run make deps")
	return ""
}

// browser is one headless Chromium tab, with the page's console errors.
type browser struct {
	ctx      context.Context // the tab; derive per-action timeouts from it
	mu       sync.Mutex
	problems []string
	output   bytes.Buffer // the browser's stdout and stderr, for failures
}

func newBrowser(t *testing.T, chrome string) *browser {
	t.Helper()
	b := &browser{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", "new"),
		// Containers run tests as root, where Chromium's sandbox cannot
		// start, and have no GPU and a small /dev/shm.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(&syncWriter{mu: &b.mu, w: &b.output}),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b.ctx = ctx
	// The first action starts the browser; it must not run under a
	// timeout, which would end the browser with it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		cancelTab()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		t.Fatalf("start %s: %v\n%s", chrome, err, b.output.String())
	}
	messages := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		wg.Wait()
	})
	return b
}

// uiPage is what the page shows, read from its DOM.
type uiPage struct {
	Legend     []string       `json:"legend"`      // names in the ring legend
	LegendText string         `json:"legend_text"` // its rendered text
	Current    map[string]int `json:"current"`     // vnode dots per node, current ring
	Target     map[string]int `json:"target"`      // same for the target ring
	Members    []string       `json:"members"`     // "name health" rows of the members table
	Blocks     []string       `json:"blocks"`      // the blocks cell of each row
	Links      []string       `json:"links"`       // the address link of each row ("" for none)
	State      string         `json:"state"`       // migration state line
	Error      string         `json:"error"`       // the error banner, if shown
}

const readPage = `(() => {
  const dots = (ring) => {
    const out = {};
    for (const d of document.querySelectorAll('[data-ring="' + ring + '"] .vnode')) out[d.dataset.node] = (out[d.dataset.node] || 0) + 1;
    return out;
  };
  const banner = document.getElementById("error");
  return {
    legend: Array.from(document.querySelectorAll("#ring-legend li[data-node]"), (li) => li.dataset.node),
    legend_text: document.getElementById("ring-legend").innerText,
    current: dots("current"),
    target: dots("target"),
    members: Array.from(document.querySelectorAll("#members-body tr[data-node]"), (tr) => tr.dataset.node + " " + tr.cells[2].innerText),
    blocks: Array.from(document.querySelectorAll("#members-body tr[data-node]"), (tr) => tr.cells[5].innerText),
    links: Array.from(document.querySelectorAll("#members-body tr[data-node]"), (tr) => (tr.cells[1].querySelector("a") || {}).href || ""),
    state: (document.getElementById("migration-state") || {}).innerText || "",
    error: banner.hidden ? "" : banner.innerText,
  };
})()`

// showsRing checks that the page draws exactly the given members, as
// visible legend entries, alive rows and every vnode of ring.
func (p uiPage) showsRing(members []string, ring RingStatus) error {
	if p.Error != "" {
		return fmt.Errorf("error banner: %s", p.Error)
	}
	if !slices.Equal(p.Legend, members) {
		return fmt.Errorf("legend %v, want %v", p.Legend, members)
	}
	if len(p.Target) != 0 {
		return fmt.Errorf("target ring still drawn: %v", p.Target)
	}
	var rows []string
	for _, m := range members {
		if !strings.Contains(p.LegendText, m) {
			return fmt.Errorf("legend text does not show %s: %q", m, p.LegendText)
		}
		rows = append(rows, m+" alive")
	}
	if !slices.Equal(p.Members, rows) {
		return fmt.Errorf("members table %q, want %q", p.Members, rows)
	}
	// Every member's block count, not only this node's.
	for i, b := range p.Blocks {
		if b == "" || b == "—" {
			return fmt.Errorf("members table shows no block count for %s: %q", members[i], p.Blocks)
		}
	}
	want := map[string]int{}
	for _, v := range ring.Ring.VNodes {
		want[v.Node]++
	}
	for _, m := range members {
		if p.Current[m] == 0 || p.Current[m] != want[m] {
			return fmt.Errorf("ring draws %d vnodes of %s, /admin/ring has %d", p.Current[m], m, want[m])
		}
	}
	return nil
}

// waitPage polls the page's DOM until cond accepts it.
func (b *browser) waitPage(t *testing.T, what string, cond func(uiPage) error) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		p, err := chromedp.Run(ctx, chromedp.Evaluate[uiPage](readPage))
		if err != nil {
			return fmt.Errorf("%s: reading the page: %w", what, err)
		}
		if err := cond(p); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// screenshot saves a full-page PNG in the test's artifact folder and checks
// that it decodes to a 1280-pixel-wide picture that is not blank.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w != 1280 || h < 800 {
		t.Errorf("screenshot is %dx%d, want 1280 wide and at least 800 high", w, h)
	}
	if n := colours(img, 64); n < 64 {
		t.Errorf("screenshot has only %d colours: the page looks blank", n)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(data))
}

// colours counts the distinct colours of img, stopping at limit.
func colours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			c0, c1, c2, c3 := img.At(x, y).RGBA()
			seen[[4]uint32{c0, c1, c2, c3}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// checkConsole fails the test on any console error or uncaught exception
// of the page, such as a Content-Security-Policy violation.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("browser console: %s", p)
	}
}

// syncWriter lets the browser's output goroutines share a buffer.
type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
