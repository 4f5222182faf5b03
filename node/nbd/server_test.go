package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/goblocks/goblocks/internal/onenode"

	"github.com/goblocks/goblocks/node/volume"
)

// staticExports serves a fixed set of volumes (the ZooKeeper catalog is
// tested in membership/zk and through the nodes in node/app).
type staticExports map[string]volume.Volume

func (e staticExports) Lookup(_ context.Context, name string) (volume.Volume, error) {
	if v, ok := e[name]; ok {
		return v, nil
	}
	return volume.Volume{}, volume.ErrNotFound
}

func (e staticExports) List(context.Context) ([]string, error) {
	var out []string
	for n := range e {
		out = append(out, n)
	}
	return out, nil
}

// newTestServer is a server over a real one-node coordinator with the
// memory engine.
func newTestServer(t testing.TB) *Server {
	return NewServer(Options{
		Exports:          staticExports{"v": {Name: "v", Size: 1 << 20, BlockSize: 4096, State: volume.Ready}},
		Device:           volume.NewIO(onenode.Coordinator(t)),
		HandshakeTimeout: time.Second,
	})
}

// serveBytes runs one connection whose client sends input and then
// closes its side; it returns what the server sent. The server must end
// the connection by itself (no hang), whatever the input.
func serveBytes(t testing.TB, s *Server, input []byte) []byte {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveConn(server)
		_ = server.Close()
	}()
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		out <- b
	}()
	_, _ = client.Write(input)
	_ = client.(*net.TCPConn).CloseWrite()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not end a connection whose client stopped")
	}
	return <-out
}

// hello is a well-formed start: client flags, then NBD_OPT_GO for "v".
func hello() []byte {
	b := binary.BigEndian.AppendUint32(nil, clientFixed|clientNoZeroes)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint32(b, optGo)
	data := binary.BigEndian.AppendUint32(nil, 1)
	data = append(data, 'v')
	data = binary.BigEndian.AppendUint16(data, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func request(typ, flags uint16, handle, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

// A write then a read of the same bytes, then NBD_CMD_DISC: the read's
// reply carries them.
func TestWriteReadDisc(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newTestServer(t)
	payload := bytes.Repeat([]byte("goblocks"), 1000) // 8000 bytes: unaligned end
	in := hello()
	in = append(in, request(cmdWrite, cmdFlagFUA, 1, 100, uint32(len(payload)), payload)...)
	in = append(in, request(cmdFlush, 0, 2, 0, 0, nil)...)
	// The read may run before the write finishes: requests are concurrent.
	// So the write is read back on a second connection below.
	in = append(in, request(cmdDisc, 0, 3, 0, 0, nil)...)
	out := serveBytes(t, s, in)
	if !bytes.Contains(out, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, magicReply), 0), 1)) {
		t.Fatalf("no successful reply to the write in %d bytes", len(out))
	}
	in = append(hello(), request(cmdRead, 0, 9, 100, uint32(len(payload)), nil)...)
	in = append(in, request(cmdDisc, 0, 10, 0, 0, nil)...)
	out = serveBytes(t, s, in)
	if !bytes.HasSuffix(out, payload) {
		t.Fatal("the read did not return what was written")
	}
	_ = s.Close()
}

// Whatever a client sends, the server answers or closes, and neither
// panics nor leaves a goroutine behind.
func FuzzServer(f *testing.F) {
	f.Add([]byte{})
	f.Add(hello())
	f.Add(append(hello(), request(cmdRead, 0, 1, 0, 4096, nil)...))
	f.Add(append(hello(), request(cmdWrite, 0, 1, 4000, 200, make([]byte, 200))...))
	f.Add(append(hello(), request(cmdWrite, 0, 1, 0, 1<<30, nil)...))
	f.Add(append(hello(), request(cmdTrim, 0, 1, 0, 1<<20, nil)...))
	f.Add(append(hello(), request(cmdWriteZeroes, cmdFlagNoHole, 1, 4095, 2, nil)...))
	f.Add(append(hello(), request(77, 0, 1, 0, 0, nil)...))
	f.Add(binary.BigEndian.AppendUint32(nil, 0xffffffff))
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		serveBytes(t, s, in)
	})
}
