package pebble

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/vfs"
)

// checkedFS is the filesystem pebble sees. It adds two things pebble
// v1.1.5 lacks:
//
//   - Before pebble reads a WAL (only ever to replay it at open) or a
//     MANIFEST, checkedFS checks it for damage in the middle, which pebble
//     would take for the end of the file (see checkRecordLog). Opening
//     such a file then fails, and so does pebble.Open, before it has
//     replayed or deleted anything.
//   - It reports a failed WAL write to walFailed before pebble sees the
//     error, so commits that have not yet entered pebble stay out (see
//     Engine.commit).
type checkedFS struct {
	vfs.FS
	walFailed func(error)
}

func (fs checkedFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if f, ok := recordLogFormat(fs.PathBase(name)); ok {
		if err := fs.check(name, f); err != nil {
			return nil, fmt.Errorf("pebble: %s: %w", name, err)
		}
	}
	return fs.FS.Open(name, opts...)
}

func (fs checkedFS) check(name string, f logFormat) error {
	file, err := fs.FS.Open(name)
	if err != nil {
		return err
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return err
	}
	return checkRecordLog(file, info.Size(), f)
}

func (fs checkedFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	return fs.watch(name, f, err)
}

func (fs checkedFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname)
	return fs.watch(newname, f, err)
}

func (fs checkedFS) watch(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return walFile{File: f, failed: fs.walFailed}, nil
}

// recordLogFormat recognizes pebble's WAL (NNNNNN.log, recyclable chunks
// carrying the file number) and MANIFEST-NNNNNN (legacy chunks) files.
func recordLogFormat(base string) (logFormat, bool) {
	if num, ok := strings.CutSuffix(base, ".log"); ok {
		n, err := strconv.ParseUint(num, 10, 64)
		return logFormat{recyclable: true, logNum: uint32(n)}, err == nil
	}
	return logFormat{}, strings.HasPrefix(base, "MANIFEST-")
}

// walFile passes a WAL's write and sync errors to failed on their way to
// pebble, for which each is fatal. Preallocate is left alone: pebble
// ignores its errors (vfs/syncing_file.go:61), and the write after it may
// well succeed.
type walFile struct {
	vfs.File
	failed func(error)
}

func (f walFile) report(err error) error {
	if err != nil {
		f.failed(fmt.Errorf("WAL write: %w", err))
	}
	return err
}

func (f walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.report(err)
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.report(err)
}

func (f walFile) Sync() error { return f.report(f.File.Sync()) }

func (f walFile) SyncData() error { return f.report(f.File.SyncData()) }

func (f walFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.report(err)
}
