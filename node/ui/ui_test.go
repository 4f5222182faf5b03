package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/ui"
)

// server mounts the UI the way a node does: as an extra route of the API
// handler, so unknown paths and wrong methods get the API's JSON errors.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	mount := func(r *mux.Router) {
		for path, h := range ui.Pages() {
			r.Handle(path, api.Methods{http.MethodGet: h, http.MethodHead: h})
		}
	}
	s := httptest.NewServer(api.NewHandler(api.Options{Logger: zerolog.Nop(), Extra: mount}))
	t.Cleanup(s.Close)
	return s
}

func fetch(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestIndex(t *testing.T) {
	s := server(t)
	for _, path := range []string{"/ui", "/ui/", "/ui/index.html"} {
		resp, body := fetch(t, http.MethodGet, s.URL+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, got)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
			t.Errorf("GET %s: Content-Security-Policy %q", path, got)
		}
		for _, directive := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), directive) {
				t.Errorf("CSP lacks %q", directive)
			}
		}
		if strings.Contains(ui.ContentSecurityPolicy, "unsafe") {
			t.Errorf("CSP allows unsafe sources: %s", ui.ContentSecurityPolicy)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", path, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, got)
		}
		if !strings.Contains(body, `id="ring-legend"`) {
			t.Errorf("GET %s: not the UI page", path)
		}
	}
}

// TestAssets loads every asset the page references, as a browser would.
func TestAssets(t *testing.T) {
	s := server(t)
	_, index := fetch(t, http.MethodGet, s.URL+"/ui")
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(index, -1)
	want := map[string]string{
		"/ui/app.js":      "text/javascript; charset=utf-8",
		"/ui/style.css":   "text/css; charset=utf-8",
		"/ui/favicon.svg": "image/svg+xml",
	}
	seen := map[string]bool{}
	for _, ref := range refs {
		path := ref[1]
		if !strings.HasPrefix(path, "/ui/") {
			t.Errorf("index.html references %q outside /ui/ (the page must fetch nothing else)", path)
			continue
		}
		seen[path] = true
		resp, body := fetch(t, http.MethodGet, s.URL+path)
		if resp.StatusCode != http.StatusOK || body == "" {
			t.Fatalf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if got := resp.Header.Get("Content-Type"); got != want[path] {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, want[path])
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
		// A revalidation with the ETag costs no body.
		again, body := fetch(t, http.MethodGet, s.URL+path, "If-None-Match", resp.Header.Get("ETag"))
		if again.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s with its ETag: %d, %d bytes", path, again.StatusCode, len(body))
		}
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("index.html does not reference %s", path)
		}
	}
}

// TestStaticRules guards the rules the page's CSP and safety depend on.
func TestStaticRules(t *testing.T) {
	s := server(t)
	_, js := fetch(t, http.MethodGet, s.URL+"/ui/app.js")
	_, html := fetch(t, http.MethodGet, s.URL+"/ui")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s: build DOM nodes and set textContent instead", bad)
		}
	}
	if strings.Contains(html, "style=") || strings.Contains(html, "<script>") || strings.Contains(html, "<style") {
		t.Error("index.html has inline style or script, which the CSP blocks")
	}
	// The only absolute URL allowed is the SVG namespace, which is a name,
	// not a fetch.
	for _, u := range regexp.MustCompile(`https?://[^\s"'`+"`"+`]+`).FindAllString(js+html, -1) {
		if u != "http://www.w3.org/2000/svg" && !strings.HasPrefix(u, "http://${") {
			t.Errorf("static files mention %s: the lab has no internet", u)
		}
	}
}

func TestHead(t *testing.T) {
	s := server(t)
	resp, body := fetch(t, http.MethodHead, s.URL+"/ui/app.js")
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("HEAD /ui/app.js: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestUnknownAsset(t *testing.T) {
	s := server(t)
	for _, path := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui/../admin/ring", "/uix"} {
		resp, body := fetch(t, http.MethodGet, s.URL+path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, resp.StatusCode, body)
		}
	}
}

func TestWrongMethod(t *testing.T) {
	s := server(t)
	for _, path := range []string{"/ui", "/ui/", "/ui/app.js"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			resp, body := fetch(t, method, s.URL+path)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d %s, want 405", method, path, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q", method, path, got)
			}
		}
	}
}
