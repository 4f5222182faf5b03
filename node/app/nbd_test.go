package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/nbdclient"
	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
)

// The NBD tests drive the nodes with the tools people use: libnbd's
// nbdinfo and nbdcopy, qemu-io, fio's nbd engine, mke2fs and e2fsck
// (Debian's libnbd-bin, qemu-utils, fio, e2fsprogs; make deps installs
// them).
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not found on PATH: run make deps (libnbd-bin, qemu-utils, fio, e2fsprogs)", name)
		}
	}
}

// tool runs a command and returns its stdout; failure ends the test with
// its output.
func tool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

const nbdConnCap = 12

func nbdCluster(t *testing.T) *testCluster {
	return zkCluster(t, 3, clusterOpts{configure: func(_ int, cfg *config.Config) {
		cfg.NBDAddress = "127.0.0.1:0"
		cfg.NBDMaxConnections = nbdConnCap
	}})
}

func (c *testCluster) createVolume(t *testing.T, i int, name, size string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"size":%q}`, name, size)
	status, out, _, err := c.do(http.MethodPost, c.url(i, "/admin/volumes"), []byte(body))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create volume %s: %d %s %v", name, status, out, err)
	}
}

func (c *testCluster) nbdURI(i int, name string) string {
	return "nbd://" + c.nodes[i].NBDAddr() + "/" + name
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestNBD(t *testing.T) {
	needTools(t, "nbdinfo", "nbdcopy", "qemu-io", "fio", "mkfs.ext4", "e2fsck")
	c := nbdCluster(t)
	dir := t.TempDir()
	c.createVolume(t, 0, "vol64", "64MiB")

	t.Run("nbdinfo shows size and flags", func(t *testing.T) {
		var info struct {
			Exports []map[string]any `json:"exports"`
		}
		if err := json.Unmarshal(tool(t, "nbdinfo", "--json", c.nbdURI(1, "vol64")), &info); err != nil || len(info.Exports) != 1 {
			t.Fatalf("nbdinfo --json: %v %+v", err, info)
		}
		e := info.Exports[0]
		if size, _ := e["export-size"].(float64); size != 64<<20 {
			t.Errorf("export-size %v, want %d", e["export-size"], 64<<20)
		}
		for _, flag := range []string{"can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"} {
			if e[flag] != true {
				t.Errorf("%s = %v, want true", flag, e[flag])
			}
		}
		if e["is_read_only"] != false {
			t.Errorf("is_read_only = %v", e["is_read_only"])
		}
		list := string(tool(t, "nbdinfo", "--list", "--json", "nbd://"+c.nodes[2].NBDAddr()))
		if !strings.Contains(list, `"vol64"`) {
			t.Errorf("nbdinfo --list does not name vol64: %s", list)
		}
	})

	t.Run("nbdcopy in through one node, out through another", func(t *testing.T) {
		in := filepath.Join(dir, "in.img")
		data := randomFile(t, in, 32<<20)
		tool(t, "nbdcopy", in, c.nbdURI(0, "vol64"))
		out := filepath.Join(dir, "out.img")
		tool(t, "nbdcopy", c.nbdURI(2, "vol64"), out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 64<<20 || !bytes.Equal(got[:32<<20], data) {
			t.Fatalf("copied out %d bytes; first 32 MiB identical: %v", len(got), bytes.Equal(got[:min(len(got), 32<<20)], data))
		}
		if !bytes.Equal(got[32<<20:], make([]byte, 32<<20)) {
			t.Fatal("the never-written half of the volume does not read as zeros")
		}
	})

	t.Run("unaligned write with qemu-io", func(t *testing.T) {
		// 3000 bytes at 1000: parts of blocks 0 and 1, read-modify-write.
		before := make([]byte, 8192)
		conn, err := nbdclient.Open(c.nodes[0].NBDAddr(), "vol64")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.ReadAt(before, 0); err != nil {
			t.Fatal(err)
		}
		tool(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 1000 3000", c.nbdURI(1, "vol64"))
		out := string(tool(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 1000 3000", c.nbdURI(2, "vol64")))
		if strings.Contains(out, "failed") {
			t.Fatalf("qemu-io read -P: %s", out)
		}
		after := make([]byte, 8192)
		if err := conn.ReadAt(after, 0); err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(before)
		copy(want[1000:4000], bytes.Repeat([]byte{0xab}, 3000))
		if !bytes.Equal(after, want) {
			t.Fatal("bytes around the unaligned write changed")
		}
	})

	t.Run("ext4 round trip", func(t *testing.T) {
		c.createVolume(t, 1, "fs", "64MiB")
		img := filepath.Join(dir, "fs.img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		// A few files (mkfs -d copies a directory in), so the image is
		// more than metadata.
		files := filepath.Join(dir, "files")
		if err := os.MkdirAll(filepath.Join(files, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		randomFile(t, filepath.Join(files, "a.bin"), 3<<20)
		randomFile(t, filepath.Join(files, "sub", "b.bin"), 123457)
		tool(t, "mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", files, img)
		tool(t, "e2fsck", "-fn", img)
		src, _ := os.ReadFile(img)
		tool(t, "nbdcopy", img, c.nbdURI(1, "fs"))
		back := filepath.Join(dir, "fs-back.img")
		tool(t, "nbdcopy", c.nbdURI(0, "fs"), back)
		got, _ := os.ReadFile(back)
		if !bytes.Equal(got, src) {
			t.Fatal("the filesystem image read back differs")
		}
		tool(t, "e2fsck", "-fn", back)
	})

	t.Run("a write on one connection is visible on another node's connection", func(t *testing.T) {
		a, err := nbdclient.Open(c.nodes[0].NBDAddr(), "vol64")
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := nbdclient.Open(c.nodes[2].NBDAddr(), "vol64")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if a.Flags&nbdclient.FlagCanMultiConn == 0 {
			t.Fatal("CAN_MULTI_CONN not advertised")
		}
		for i := range 20 {
			p := make([]byte, 4096)
			_, _ = rand.Read(p)
			off := uint64(40<<20 + i*4096)
			if err := a.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4096)
			if err := b.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("write %d acknowledged on n0 not read back on n2", i)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) { nbdBadInput(t, c) })

	t.Run("connection cap", func(t *testing.T) {
		var held []*nbdclient.Conn
		defer func() {
			for _, h := range held {
				h.NC.Close()
			}
		}()
		addr := c.nodes[1].NBDAddr()
		// The server lets go of the earlier subtests' connections as it
		// notices they closed: the cap is only free once it has.
		testkit.Eventually(t, 10*time.Second, func() error {
			if n := gatheredValue(t, c.nodes[1].Registry(), "blocks_nbd_connections"); n != 0 {
				return fmt.Errorf("%v NBD connections still open on n1", n)
			}
			return nil
		})
		for range nbdConnCap {
			h, err := nbdclient.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("connection over the cap got %d bytes, %v; want it closed", n, err)
		}
	})

	t.Run("fio randrw verify while a node is killed", func(t *testing.T) {
		c.createVolume(t, 0, "fio", "32MiB")
		fio := exec.Command("fio", "--name=verify", "--ioengine=nbd", "--uri="+c.nbdURI(0, "fio"),
			"--rw=randrw", "--bs=4k", "--iodepth=32", "--size=32M", "--io_size=48M",
			"--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0", "--output-format=json")
		fio.Dir = t.TempDir() // fio drops state files in its directory
		var stdout, stderr bytes.Buffer
		fio.Stdout, fio.Stderr = &stdout, &stderr
		if err := fio.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- fio.Wait() }()
		// Kill n2 once fio is well into its run.
		testkit.Eventually(t, 2*time.Minute, func() error {
			select {
			case err := <-done:
				done <- err
				return nil
			default:
			}
			if n := gatheredValue(t, c.nodes[0].Registry(), "blocks_nbd_requests_total", "command", "write", "errno", "0"); n < 2000 {
				return fmt.Errorf("%v writes so far", n)
			}
			return nil
		})
		c.kill(2)
		err := <-done
		if err != nil {
			t.Fatalf("fio: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
		var res struct {
			Jobs []struct {
				Error int `json:"error"`
				Read  struct {
					IOPS float64 `json:"iops"`
					Ios  int64   `json:"total_ios"`
				} `json:"read"`
				Write struct {
					IOPS float64 `json:"iops"`
					Ios  int64   `json:"total_ios"`
				} `json:"write"`
			} `json:"jobs"`
		}
		// fio's nbd engine prints a line before the JSON.
		out := stdout.Bytes()
		if i := bytes.IndexByte(out, '{'); i > 0 {
			out = out[i:]
		}
		if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
			t.Fatalf("fio output: %v\n%s", err, stdout.String())
		}
		j := res.Jobs[0]
		if j.Error != 0 || j.Write.Ios == 0 || j.Read.Ios == 0 {
			t.Fatalf("fio job: error %d, %d reads, %d writes", j.Error, j.Read.Ios, j.Write.Ios)
		}
		t.Logf("fio: %d reads, %d writes (verified), n2 killed during the run", j.Read.Ios, j.Write.Ios)
	})
}

// nbdBadInput sends what no correct client sends and checks each gets the
// protocol's error reply or a closed connection, and that the server
// serves normally afterwards.
func nbdBadInput(t *testing.T, c *testCluster) {
	addr := c.nodes[1].NBDAddr()
	closed := func(t *testing.T, conn *nbdclient.Conn) {
		t.Helper()
		_ = conn.NC.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(conn.R); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection left open")
			}
		}
	}
	optReply := func(t *testing.T, conn *nbdclient.Conn, want uint32) {
		t.Helper()
		r, err := conn.ReadOptReply()
		if err != nil || r.Type != want {
			t.Fatalf("option reply %#x %q, %v; want %#x", r.Type, r.Data, err, want)
		}
	}
	handshake := []struct {
		name string
		run  func(t *testing.T, conn *nbdclient.Conn)
	}{
		{"unknown client flags: closed", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(1 << 7)
			closed(t, conn)
		}},
		{"wrong option magic: closed", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_, _ = conn.NC.Write(make([]byte, 16))
			closed(t, conn)
		}},
		{"option longer than the limit: closed", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			b := binary.BigEndian.AppendUint64(nil, 0x49484156454f5054)
			b = binary.BigEndian.AppendUint32(b, nbdclient.OptGo)
			b = binary.BigEndian.AppendUint32(b, 1<<30)
			_, _ = conn.NC.Write(b)
			closed(t, conn)
		}},
		{"unknown option: ERR_UNSUP, then GO works", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(99, []byte("x"))
			optReply(t, conn, nbdclient.RepErrUnsup)
			_ = conn.Option(nbdclient.OptStructured, nil)
			optReply(t, conn, nbdclient.RepErrUnsup)
			_ = conn.Option(nbdclient.OptGo, nbdclient.GoData("vol64"))
			optReply(t, conn, nbdclient.RepInfo)
			optReply(t, conn, nbdclient.RepAck)
		}},
		{"GO for a missing volume: ERR_UNKNOWN", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(nbdclient.OptGo, nbdclient.GoData("no-such-volume"))
			optReply(t, conn, nbdclient.RepErrUnknown)
			_ = conn.Option(nbdclient.OptGo, nbdclient.GoData("../etc"))
			optReply(t, conn, nbdclient.RepErrUnknown)
		}},
		{"GO with a name length beyond the data: ERR_INVALID", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(nbdclient.OptGo, []byte{0, 0, 1, 0, 'v', 0, 0})
			optReply(t, conn, nbdclient.RepErrInvalid)
		}},
		{"LIST with data: ERR_INVALID", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(nbdclient.OptList, []byte("x"))
			optReply(t, conn, nbdclient.RepErrInvalid)
		}},
		{"EXPORT_NAME of a missing volume: closed", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(nbdclient.OptExportName, []byte("nope"))
			closed(t, conn)
		}},
		{"ABORT: ACK and closed", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_ = conn.Option(nbdclient.OptAbort, nil)
			optReply(t, conn, nbdclient.RepAck)
			closed(t, conn)
		}},
		{"client gone mid-handshake", func(t *testing.T, conn *nbdclient.Conn) {
			_ = conn.ClientFlags(3)
			_, _ = conn.NC.Write([]byte{0x49, 0x48})
		}},
	}
	for _, tc := range handshake {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := nbdclient.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.NC.Close()
			tc.run(t, conn)
		})
	}

	size := uint64(64 << 20)
	transmission := []struct {
		name  string
		send  func(conn *nbdclient.Conn) error
		errno uint32 // expected reply errno; closed when > 1<<16
	}{
		{"read past the end: EINVAL", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdRead, 0, 7, size-1, 2, nil) }, nbdclient.EINVAL},
		{"read at a huge offset: EINVAL", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdRead, 0, 7, 1<<63, 4096, nil) }, nbdclient.EINVAL},
		{"write past the end: ENOSPC", func(c *nbdclient.Conn) error {
			return c.Send(nbdclient.CmdWrite, 0, 7, size-4096, 8192, make([]byte, 8192))
		}, nbdclient.ENOSPC},
		{"trim past the end: EINVAL", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdTrim, 0, 7, size, 4096, nil) }, nbdclient.EINVAL},
		{"oversized read: EINVAL", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdRead, 0, 7, 0, 64<<20, nil) }, nbdclient.EINVAL},
		{"unknown command: EINVAL", func(c *nbdclient.Conn) error { return c.Send(42, 0, 7, 0, 0, nil) }, nbdclient.EINVAL},
		{"unknown command flag: EINVAL", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdFlush, 1<<9, 7, 0, 0, nil) }, nbdclient.EINVAL},
		{"flush: ok", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdFlush, 0, 7, 0, 0, nil) }, 0},
		{"write with FUA: ok", func(c *nbdclient.Conn) error {
			return c.Send(nbdclient.CmdWrite, nbdclient.FlagFUA, 7, 8192, 4096, make([]byte, 4096))
		}, 0},
		{"oversized write: closed", func(c *nbdclient.Conn) error { return c.Send(nbdclient.CmdWrite, 0, 7, 0, 64<<20, nil) }, 1 << 17},
		{"wrong request magic: closed", func(c *nbdclient.Conn) error { _, err := c.NC.Write(make([]byte, 28)); return err }, 1 << 17},
		{"client gone in the middle of a write's payload", func(c *nbdclient.Conn) error {
			if err := c.Send(nbdclient.CmdWrite, 0, 7, 0, 8192, make([]byte, 100)); err != nil {
				return err
			}
			return c.NC.(*net.TCPConn).CloseWrite()
		}, 1 << 17},
	}
	for _, tc := range transmission {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := nbdclient.Open(addr, "vol64")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.NC.Close()
			if err := tc.send(conn); err != nil {
				t.Fatal(err)
			}
			if tc.errno > 1<<16 {
				closed(t, conn)
				return
			}
			errno, handle, err := conn.ReadReply()
			if err != nil || errno != tc.errno || handle != 7 {
				t.Fatalf("reply errno %d handle %d, %v; want errno %d handle 7", errno, handle, err, tc.errno)
			}
			// The connection still works.
			if err := conn.ReadAt(make([]byte, 4096), 0); err != nil {
				t.Fatalf("after the bad request: %v", err)
			}
		})
	}
}
