package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/client"
)

var importCommand = command{
	name: "import", args: "FILE|- PREFIX", summary: "store a file of any size as blocks PREFIX-000000... plus a manifest",
	help: `Splits FILE (or stdin for -) into blocks PREFIX-000000, PREFIX-000001, ...
(the last one zero-padded) and stores them with -c concurrent requests;
then stores the manifest block PREFIX-manifest, JSON
{"size","blocks","sha256","block_size"} padded with spaces. The manifest
is written last, so export never sees a half-imported file. Importing
again under the same prefix replaces the file.`,
	run: runImport,
}

var exportCommand = command{
	name: "export", args: "PREFIX FILE|-", summary: "write an imported file back out, verifying its sha256",
	help: `Reads the manifest PREFIX-manifest, fetches the blocks with -c concurrent
requests and writes the original bytes to FILE (or stdout for -),
verifying size and sha256. FILE is written under a temporary name and
renamed only once verified. Exit code 3 when the manifest or a block is
missing, 1 when the content does not match the manifest.`,
	run: runExport,
}

// manifest describes an imported file; it is stored as block
// PREFIX-manifest.
type manifest struct {
	Size      int64  `json:"size"`
	Blocks    int64  `json:"blocks"`
	SHA256    string `json:"sha256"`
	BlockSize int    `json:"block_size"`
}

func blockID(prefix string, i int64) string { return fmt.Sprintf("%s-%06d", prefix, i) }
func manifestID(prefix string) string       { return prefix + "-manifest" }

// maxIDLen is the nodes' limit on block ids, checked here so that an
// import cannot store every block and then fail on its manifest.
const maxIDLen = 255

func runImport(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	conc := f.Int("c", 8, "concurrent requests")
	progressOn := f.progressFlag()
	pos, code, ok := f.parse(e, args, 2, 2)
	if !ok {
		return code
	}
	name, prefix := pos[0], pos[1]
	switch {
	case *conc < 1:
		return f.usageError(e, "-c must be at least 1")
	case prefix == "" || len(manifestID(prefix)) > maxIDLen:
		return f.usageError(e, fmt.Sprintf("PREFIX must be 1-%d bytes", maxIDLen-len("-manifest")))
	}
	c, code, ok := f.client(e)
	if !ok {
		return code
	}
	defer c.Close()
	in, total, err := openInput(e, name)
	if err != nil {
		fmt.Fprintf(e.Stderr, "goblocks import: %v\n", err)
		return inputErrorCode(err)
	}
	defer in.Close()

	var done atomic.Int64
	p := startProgress(e.Stderr, progressOn(e), func(elapsed time.Duration) string {
		return transferLine("import", done.Load(), total, elapsed)
	})
	m, err := importBlocks(ctx, c, in, prefix, *conc, &done)
	if err == nil {
		_, err = c.Put(ctx, manifestID(prefix), encodeManifest(m, c.BlockSize()))
	}
	p.finish()
	if err != nil {
		return fail(e, cmd.name, err)
	}
	fmt.Fprintf(e.Stdout, "imported %s: %d bytes in %d blocks %s..%s, manifest %s, sha256 %s\n",
		name, m.Size, m.Blocks, blockID(prefix, 0), blockID(prefix, max(m.Blocks-1, 0)), manifestID(prefix), m.SHA256)
	return ExitOK
}

// openInput opens name (stdin for "-") and returns its size when known
// (-1 otherwise).
func openInput(e Env, name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		if e.Stdin == nil {
			return nil, 0, errors.New("no stdin")
		}
		return io.NopCloser(e.Stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return f, -1, nil
	}
	return f, st.Size(), nil
}

// importBlocks reads in block by block and puts the blocks with conc
// workers; the first failure stops the rest.
func importBlocks(ctx context.Context, c *client.Client, in io.Reader, prefix string, conc int, done *atomic.Int64) (manifest, error) {
	bs := c.BlockSize()
	m := manifest{BlockSize: bs}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type job struct {
		i    int64
		data []byte
		n    int
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for j := range jobs {
				if _, err := c.Put(ctx, blockID(prefix, j.i), j.data); err != nil {
					cancel(err)
					return
				}
				done.Add(int64(j.n))
			}
		})
	}
	h := sha256.New()
	for ctx.Err() == nil {
		buf := make([]byte, bs) // zero-padded when the read is short
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			h.Write(buf[:n])
			select {
			case jobs <- job{m.Blocks, buf, n}:
			case <-ctx.Done():
			}
			m.Blocks++
			m.Size += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			cancel(fmt.Errorf("read: %w", err))
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return m, err
	}
	m.SHA256 = hex.EncodeToString(h.Sum(nil))
	return m, nil
}

// encodeManifest pads the JSON with spaces to one block: still valid JSON,
// so `goblocks get PREFIX-manifest | jq` works.
func encodeManifest(m manifest, bs int) []byte {
	b, _ := json.Marshal(m)
	if len(b) > bs {
		return b // the put fails with a bad size; blocks this small are unusable anyway
	}
	return append(b, bytes.Repeat([]byte(" "), bs-len(b))...)
}

func decodeManifest(b []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(bytes.TrimRight(b, " \x00"), &m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	if m.BlockSize <= 0 || m.Size < 0 || m.Blocks != (m.Size+int64(m.BlockSize)-1)/int64(m.BlockSize) || len(m.SHA256) != 64 {
		return m, fmt.Errorf("manifest %+v is inconsistent", m)
	}
	return m, nil
}

func transferLine(what string, done, total int64, elapsed time.Duration) string {
	rate := ""
	if s := elapsed.Seconds(); s > 0 {
		rate = fmt.Sprintf(" %s/s", bytesString(int64(float64(done)/s)))
	}
	if total < 0 {
		return fmt.Sprintf("%s %s%s", what, bytesString(done), rate)
	}
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	return fmt.Sprintf("%s %s %3.0f%% %s/%s%s", what, bar(frac, 30), 100*frac, bytesString(done), bytesString(total), rate)
}

func runExport(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	conc := f.Int("c", 8, "concurrent requests")
	progressOn := f.progressFlag()
	pos, code, ok := f.parse(e, args, 2, 2)
	if !ok {
		return code
	}
	prefix, name := pos[0], pos[1]
	if *conc < 1 {
		return f.usageError(e, "-c must be at least 1")
	}
	c, code, ok := f.client(e)
	if !ok {
		return code
	}
	defer c.Close()
	raw, err := c.Get(ctx, manifestID(prefix))
	if err != nil {
		return fail(e, cmd.name, err)
	}
	m, err := decodeManifest(raw)
	if err != nil {
		return fail(e, cmd.name, err)
	}

	out, commit, abort, err := createOutput(e, name)
	if err != nil {
		return fail(e, cmd.name, err)
	}
	var done atomic.Int64
	p := startProgress(e.Stderr, progressOn(e), func(elapsed time.Duration) string {
		return transferLine("export", done.Load(), m.Size, elapsed)
	})
	err = exportBlocks(ctx, c, m, prefix, *conc, out, &done)
	p.finish()
	if err == nil {
		err = commit()
	} else {
		abort()
	}
	if err != nil {
		return fail(e, cmd.name, err)
	}
	summary := e.Stdout
	if name == "-" {
		summary = e.Stderr
	}
	fmt.Fprintf(summary, "exported %s to %s: %d bytes in %d blocks, sha256 %s verified\n", prefix, name, m.Size, m.Blocks, m.SHA256)
	return ExitOK
}

// createOutput opens stdout, or a temporary file beside name that commit
// renames to name (abort removes it).
func createOutput(e Env, name string) (w io.Writer, commit func() error, abort func(), err error) {
	if name == "-" {
		return e.Stdout, func() error { return nil }, func() {}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return nil, nil, nil, err
	}
	abort = func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}
	commit = func() error {
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), name); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		return nil
	}
	return tmp, commit, abort, nil
}

// exportBlocks fetches the blocks in windows of conc*4 (conc at a time)
// and writes each window in order, hashing as it goes.
func exportBlocks(ctx context.Context, c *client.Client, m manifest, prefix string, conc int, out io.Writer, done *atomic.Int64) error {
	h := sha256.New()
	window := int64(conc * 4)
	bufs := make([][]byte, window)
	errs := make([]error, window)
	for first := int64(0); first < m.Blocks; first += window {
		n := min(window, m.Blocks-first)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(int64(conc), n) {
			wg.Go(func() {
				for {
					k := next.Add(1) - 1
					if k >= n {
						return
					}
					bufs[k], errs[k] = c.Get(ctx, blockID(prefix, first+k))
				}
			})
		}
		wg.Wait()
		for k := range n {
			i := first + k
			if errs[k] != nil {
				return errs[k]
			}
			data := bufs[k]
			if len(data) != m.BlockSize {
				return fmt.Errorf("block %s has %d bytes, the manifest says %d", blockID(prefix, i), len(data), m.BlockSize)
			}
			if last := m.Size - i*int64(m.BlockSize); last < int64(len(data)) {
				data = data[:last]
			}
			h.Write(data)
			if _, err := out.Write(data); err != nil {
				return err
			}
			done.Add(int64(len(data)))
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("sha256 %s, the manifest says %s: a block changed since the import", got, m.SHA256)
	}
	return nil
}
