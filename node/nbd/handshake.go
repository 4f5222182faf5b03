package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/goblocks/goblocks/node/volume"
)

// errAborted ends a handshake the client ended (NBD_OPT_ABORT).
var errAborted = errors.New("nbd: client aborted the handshake")

// handshake runs fixed newstyle negotiation until the client picks an
// export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) and returns it. Every other
// option is answered and the loop goes on; a protocol violation returns an
// error (the caller closes the connection).
func (c *conn) handshake(ctx context.Context) (volume.Volume, error) {
	var hello []byte
	hello = binary.BigEndian.AppendUint64(hello, magicInit)
	hello = binary.BigEndian.AppendUint64(hello, magicOpt)
	hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if err := c.send(hello); err != nil {
		return volume.Volume{}, err
	}
	var cflags uint32
	if err := binary.Read(c.br, binary.BigEndian, &cflags); err != nil {
		return volume.Volume{}, err
	}
	if cflags&^clientKnownFlagSet != 0 {
		// The protocol: the server MUST close on client flags it does
		// not know.
		return volume.Volume{}, fmt.Errorf("%w: unknown client flags %#x", errProtocol, cflags)
	}
	noZeroes := cflags&clientNoZeroes != 0
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return volume.Volume{}, err
		}
		if binary.BigEndian.Uint64(hdr[:]) != magicOpt {
			return volume.Volume{}, fmt.Errorf("%w: option magic %#x", errProtocol, binary.BigEndian.Uint64(hdr[:]))
		}
		opt, length := binary.BigEndian.Uint32(hdr[8:]), binary.BigEndian.Uint32(hdr[12:])
		if length > maxOptionLength {
			return volume.Volume{}, fmt.Errorf("%w: option %d of %d bytes (limit %d)", errProtocol, opt, length, maxOptionLength)
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return volume.Volume{}, err
		}
		switch opt {
		case optExportName:
			v, err := c.s.o.Exports.Lookup(ctx, string(data))
			if err != nil {
				// No way to answer an error here: the protocol says
				// close the connection.
				return volume.Volume{}, fmt.Errorf("export %q: %w", data, err)
			}
			var reply []byte
			reply = binary.BigEndian.AppendUint64(reply, uint64(v.Size))
			reply = binary.BigEndian.AppendUint16(reply, transmissionFlags)
			if !noZeroes {
				reply = append(reply, make([]byte, 124)...)
			}
			return v, c.send(reply)
		case optAbort:
			_ = c.send(appendOptReply(nil, opt, repAck, nil))
			return volume.Volume{}, errAborted
		case optList:
			if length != 0 {
				if err := c.optError(opt, repErrInvalid, "NBD_OPT_LIST takes no data"); err != nil {
					return volume.Volume{}, err
				}
				continue
			}
			if err := c.list(ctx, opt); err != nil {
				return volume.Volume{}, err
			}
		case optInfo, optGo:
			v, err := c.info(ctx, opt, data)
			if err != nil {
				return volume.Volume{}, err
			}
			if opt == optGo && v.Name != "" {
				return v, nil
			}
		default:
			// STARTTLS, STRUCTURED_REPLY, meta contexts, ...: not
			// offered; the client falls back.
			if err := c.optError(opt, repErrUnsup, fmt.Sprintf("option %d is not supported by this server", opt)); err != nil {
				return volume.Volume{}, err
			}
		}
	}
}

// list answers NBD_OPT_LIST with every ready volume.
func (c *conn) list(ctx context.Context, opt uint32) error {
	names, err := c.s.o.Exports.List(ctx)
	if err != nil {
		return c.optError(opt, repErrPolicy, "listing volumes: "+err.Error())
	}
	var out []byte
	for _, n := range names {
		var d []byte
		d = binary.BigEndian.AppendUint32(d, uint32(len(n)))
		d = append(d, n...)
		out = appendOptReply(out, opt, repServer, d)
	}
	return c.send(appendOptReply(out, opt, repAck, nil))
}

// info answers NBD_OPT_INFO and NBD_OPT_GO. It returns the volume when
// the export was found and acknowledged (for GO: transmission starts), a
// zero volume when an error reply was sent and haggling goes on.
func (c *conn) info(ctx context.Context, opt uint32, data []byte) (volume.Volume, error) {
	// 32-bit name length, name, 16-bit count of info requests, 16-bit each.
	if len(data) < 6 {
		return volume.Volume{}, c.optError(opt, repErrInvalid, "option data too short")
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen)+6 > uint64(len(data)) {
		return volume.Volume{}, c.optError(opt, repErrInvalid, "export name length beyond the option data")
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*nreq {
		return volume.Volume{}, c.optError(opt, repErrInvalid, "info request count does not match the option length")
	}
	wantBlockSize := false
	for i := range nreq {
		if binary.BigEndian.Uint16(rest[2+2*i:]) == infoBlockSize {
			wantBlockSize = true
		}
	}
	v, err := c.s.o.Exports.Lookup(ctx, name)
	if err != nil {
		code := uint32(repErrUnknown)
		if !errors.Is(err, volume.ErrNotFound) && !errors.Is(err, volume.ErrDeleting) && !errors.Is(err, volume.ErrInvalid) {
			code = repErrPolicy
		}
		return volume.Volume{}, c.optError(opt, code, fmt.Sprintf("export %q: %v", name, err))
	}
	var out, d []byte
	d = binary.BigEndian.AppendUint16(d, infoExport)
	d = binary.BigEndian.AppendUint64(d, uint64(v.Size))
	d = binary.BigEndian.AppendUint16(d, transmissionFlags)
	out = appendOptReply(out, opt, repInfo, d)
	if wantBlockSize {
		// Minimum 1: unaligned requests are served (read-modify-write).
		d = binary.BigEndian.AppendUint16(d[:0], infoBlockSize)
		d = binary.BigEndian.AppendUint32(d, 1)
		d = binary.BigEndian.AppendUint32(d, uint32(max(preferredBlock, v.BlockSize)))
		d = binary.BigEndian.AppendUint32(d, maxPayload)
		out = appendOptReply(out, opt, repInfo, d)
	}
	return v, c.send(appendOptReply(out, opt, repAck, nil))
}

// optError sends an error reply with a message.
func (c *conn) optError(opt, code uint32, msg string) error {
	c.s.o.Metrics.protocolError("option")
	return c.send(appendOptReply(nil, opt, code, []byte(msg)))
}

func (c *conn) send(b []byte) error {
	if _, err := c.bw.Write(b); err != nil {
		return err
	}
	return c.bw.Flush()
}
