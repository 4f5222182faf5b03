// Package nbdclient is a minimal NBD client (fixed newstyle, NBD_OPT_GO,
// simple replies) for tests: it speaks the protocol byte by byte, so tests
// can also send what a correct client never would.
package nbdclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Protocol values the tests use.
const (
	OptExportName = 1
	OptAbort      = 2
	OptList       = 3
	OptInfo       = 6
	OptGo         = 7
	OptStructured = 8

	RepAck        = 1
	RepServer     = 2
	RepInfo       = 3
	RepErrUnsup   = 1<<31 | 1
	RepErrInvalid = 1<<31 | 3
	RepErrUnknown = 1<<31 | 6

	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdWriteZeroes = 6

	FlagFUA = 1

	EINVAL = 22
	ENOSPC = 28

	// Transmission flags.
	FlagSendFlush       = 1 << 2
	FlagSendFUA         = 1 << 3
	FlagSendTrim        = 1 << 5
	FlagSendWriteZeroes = 1 << 6
	FlagCanMultiConn    = 1 << 8
)

// Conn is one connection.
type Conn struct {
	NC    net.Conn
	R     *bufio.Reader
	Size  uint64
	Flags uint16
}

// Dial connects and reads the server's greeting.
func Dial(addr string) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Conn{NC: nc, R: bufio.NewReader(nc)}
	var hello [18]byte
	if _, err := io.ReadFull(c.R, hello[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if binary.BigEndian.Uint64(hello[:]) != 0x4e42444d41474943 || binary.BigEndian.Uint64(hello[8:]) != 0x49484156454f5054 {
		nc.Close()
		return nil, errors.New("not an NBD newstyle server")
	}
	return c, nil
}

// ClientFlags sends the client flags (fixed newstyle, no zeroes: 3).
func (c *Conn) ClientFlags(f uint32) error {
	return binary.Write(c.NC, binary.BigEndian, f)
}

// Option sends an option.
func (c *Conn) Option(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, 0x49484156454f5054)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := c.NC.Write(append(b, data...))
	return err
}

// OptReply is one option reply.
type OptReply struct {
	Opt, Type uint32
	Data      []byte
}

// ReadOptReply reads one option reply.
func (c *Conn) ReadOptReply() (OptReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.R, h[:]); err != nil {
		return OptReply{}, err
	}
	if binary.BigEndian.Uint64(h[:]) != 0x0003e889045565a9 {
		return OptReply{}, fmt.Errorf("option reply magic %#x", binary.BigEndian.Uint64(h[:]))
	}
	r := OptReply{Opt: binary.BigEndian.Uint32(h[8:]), Type: binary.BigEndian.Uint32(h[12:])}
	n := binary.BigEndian.Uint32(h[16:])
	if n > 1<<20 {
		return r, fmt.Errorf("option reply of %d bytes", n)
	}
	r.Data = make([]byte, n)
	_, err := io.ReadFull(c.R, r.Data)
	return r, err
}

// GoData is the data of NBD_OPT_GO/INFO for export name with no info
// requests.
func GoData(name string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

// Open dials addr and enters transmission on export name with NBD_OPT_GO.
func Open(addr, name string) (*Conn, error) {
	c, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Go(name); err != nil {
		c.NC.Close()
		return nil, err
	}
	return c, nil
}

// Go sends client flags and NBD_OPT_GO and reads the replies up to ACK.
func (c *Conn) Go(name string) error {
	if err := c.ClientFlags(3); err != nil {
		return err
	}
	if err := c.Option(OptGo, GoData(name)); err != nil {
		return err
	}
	for {
		r, err := c.ReadOptReply()
		if err != nil {
			return err
		}
		switch {
		case r.Type == RepAck:
			return nil
		case r.Type == RepInfo && len(r.Data) >= 12 && binary.BigEndian.Uint16(r.Data) == 0:
			c.Size = binary.BigEndian.Uint64(r.Data[2:])
			c.Flags = binary.BigEndian.Uint16(r.Data[10:])
		case r.Type&(1<<31) != 0:
			return fmt.Errorf("NBD_OPT_GO %q: error reply %#x: %s", name, r.Type, r.Data)
		}
	}
}

// Send writes a request (and payload for a write).
func (c *Conn) Send(typ, flags uint16, handle, offset uint64, length uint32, payload []byte) error {
	b := binary.BigEndian.AppendUint32(nil, 0x25609513)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint64(b, offset)
	b = binary.BigEndian.AppendUint32(b, length)
	_, err := c.NC.Write(append(b, payload...))
	return err
}

// ReadReply reads a simple reply header: errno and handle.
func (c *Conn) ReadReply() (errno uint32, handle uint64, err error) {
	var h [16]byte
	if _, err := io.ReadFull(c.R, h[:]); err != nil {
		return 0, 0, err
	}
	if binary.BigEndian.Uint32(h[:]) != 0x67446698 {
		return 0, 0, fmt.Errorf("reply magic %#x", binary.BigEndian.Uint32(h[:]))
	}
	return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:]), nil
}

// ReadAt reads len(p) bytes at off with one request.
func (c *Conn) ReadAt(p []byte, off uint64) error {
	if err := c.Send(CmdRead, 0, 1, off, uint32(len(p)), nil); err != nil {
		return err
	}
	errno, _, err := c.ReadReply()
	if err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("read at %d: errno %d", off, errno)
	}
	_, err = io.ReadFull(c.R, p)
	return err
}

// WriteAt writes p at off with one request.
func (c *Conn) WriteAt(p []byte, off uint64) error {
	if err := c.Send(CmdWrite, 0, 2, off, uint32(len(p)), p); err != nil {
		return err
	}
	errno, _, err := c.ReadReply()
	if err == nil && errno != 0 {
		err = fmt.Errorf("write at %d: errno %d", off, errno)
	}
	return err
}

// Close sends NBD_CMD_DISC and closes.
func (c *Conn) Close() error {
	_ = c.Send(CmdDisc, 0, 0, 0, 0, nil)
	return c.NC.Close()
}
