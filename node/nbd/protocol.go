// Package nbd serves volumes over the Network Block Device protocol
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md):
// fixed newstyle handshake, simple replies, requests of one connection
// served concurrently and answered out of order. Linux's nbd-client,
// QEMU (nbd://), libnbd's tools (nbdcopy, nbdinfo, nbdfuse) and fio's nbd
// engine speak it.
package nbd

import (
	"encoding/binary"
	"io"
)

// Magic numbers.
const (
	magicInit     = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt      = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply = 0x0003e889045565a9
	magicRequest  = 0x25609513
	magicReply    = 0x67446698
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	clientFixed        = 1 << 0
	clientNoZeroes     = 1 << 1
	clientKnownFlagSet = clientFixed | clientNoZeroes
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
)

// Option reply types; errors have bit 31 set.
const (
	repAck        = 1
	repServer     = 2
	repInfo       = 3
	repErrUnsup   = 1<<31 | 1
	repErrPolicy  = 1<<31 | 2
	repErrInvalid = 1<<31 | 3
	repErrUnknown = 1<<31 | 6
	repErrTooBig  = 1<<31 | 9
)

// Info types of NBD_OPT_INFO / NBD_OPT_GO.
const (
	infoExport    = 0
	infoBlockSize = 3
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagCanMultiConn    = 1 << 8
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
)

// Error values of simple replies (errno values the protocol fixes).
const (
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errShutdown = 108
)

// Limits. maxPayload is the largest READ or WRITE a client may send; it is
// advertised as the maximum block size, and larger requests are refused.
const (
	maxPayload      = 32 << 20
	maxOptionLength = 64 << 10 // names are ≤ 4096 bytes; nothing needs more
	preferredBlock  = 4096
)

// requestHeader is one transmission request (28 bytes on the wire).
type requestHeader struct {
	flags  uint16
	typ    uint16
	handle uint64
	offset uint64
	length uint32
}

const requestHeaderLen = 28

func readRequest(r io.Reader, buf *[requestHeaderLen]byte) (requestHeader, uint32, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return requestHeader{}, 0, err
	}
	b := buf[:]
	return requestHeader{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, binary.BigEndian.Uint32(b[0:]), nil
}

// appendReply appends a simple reply header.
func appendReply(b []byte, errno uint32, handle uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, magicReply)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, handle)
}

// appendOptReply appends an option reply header and its data.
func appendOptReply(b []byte, opt, typ uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

var commandNames = map[uint16]string{
	cmdRead: "read", cmdWrite: "write", cmdDisc: "disc", cmdFlush: "flush",
	cmdTrim: "trim", cmdWriteZeroes: "write_zeroes",
}

func commandName(typ uint16) string {
	if n, ok := commandNames[typ]; ok {
		return n
	}
	return "unknown"
}
