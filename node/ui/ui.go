// Package ui serves the node's operator page: GET /ui draws the ring, the
// members and the migration state from the node's own admin endpoints
// (/admin/ring, /admin/cluster), which the page polls from the same origin.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no
// build step, no framework, no request to any other host. Every response
// carries a strict Content-Security-Policy, so the page can only run its
// own script and talk to the node that served it.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every UI response. The page loads
// only its own script and stylesheet and fetches only same-origin JSON;
// it creates DOM nodes and sets CSSOM properties, which CSP allows, and
// never uses inline scripts, inline style attributes or eval.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes is fixed rather than taken from mime.TypeByExtension, whose
// answer depends on the host's /etc/mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Pages returns the GET (and HEAD) handler of /ui, /ui/ and /ui/<asset>
// for every embedded file, by path. The caller mounts them (and answers
// other methods and paths): the page only reads the node's JSON, so this
// package needs nothing of the node's.
func Pages() map[string]http.HandlerFunc {
	files, err := load(static)
	if err != nil {
		// The files are compiled in; failing to read them is a build bug.
		panic("ui: " + err.Error())
	}
	pages := map[string]http.HandlerFunc{}
	for name, f := range files {
		h := f.handler()
		pages["/ui/"+name] = h
		if name == "index.html" {
			pages["/ui"], pages["/ui/"] = h, h
		}
	}
	return pages
}

type file struct {
	name        string
	contentType string
	etag        string
	body        []byte
}

// load reads every file under static/ once, so each request serves bytes
// from memory with a precomputed ETag.
func load(fsys fs.FS) (map[string]*file, error) {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, err
	}
	out := map[string]*file{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil // not served: no type we would vouch for
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		out[p] = &file{name: p, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: body}
		return nil
	})
	return out, err
}

func (f *file) handler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Assets have fixed names, so a browser must revalidate them on
		// every load (cheap: the ETag answers 304) or it could pair a new
		// index.html with an old app.js after an upgrade.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		// ServeContent answers HEAD, If-None-Match and ranges.
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	}
}
