package srt

/*
#include "csrt.h"
*/
import "C"

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinels. *Error implements Is for them, so callers write
// errors.Is(err, srt.ErrConnectionLost).
var (
	// ErrClosed: the socket was closed by this side (Conn.Close,
	// Listener.Close) or no longer exists.
	ErrClosed = errors.New("srt: closed")
	// ErrConnectionLost: the peer went away. libsrt reports a normal close
	// by the peer and a broken link the same way (SRT error 2001), so this
	// is also what a reader sees when the peer closes cleanly.
	ErrConnectionLost = errors.New("srt: connection lost")
	// ErrTimeout: connect timed out (SRT 1001 or reject reason
	// "connection timeout") or a libsrt operation timed out (6003).
	ErrTimeout = errors.New("srt: timeout")
	// ErrRejected: the listener refused the connection; see Error.Reject.
	ErrRejected = errors.New("srt: connection rejected")
	// ErrBadPassphrase: the connection was refused because the passphrases
	// did not match, or one side had one and the other did not.
	ErrBadPassphrase = errors.New("srt: passphrase mismatch")
	// ErrSendBufferFull: the live-mode send buffer is full (SRT 6001). The
	// message was not queued; the link cannot keep up.
	ErrSendBufferFull = errors.New("srt: send buffer full")
)

// SRT error codes (srt.h SRT_ERRNO) used by this package.
const (
	codeUnknown     = -1
	codeConnSetup   = 1000
	codeNoServer    = 1001 // connect timeout
	codeConnRej     = 1002
	codeSockFail    = 1003
	codeSecFail     = 1004
	codeSClosed     = 1005
	codeConnFail    = 2000
	codeConnLost    = 2001
	codeNoConn      = 2002
	codeInvParam    = 5003
	codeInvSock     = 5004
	codeInvalMsgAPI = 5009
	codeLargeMsg    = 5012
	codeAsyncSnd    = 6001
	codeAsyncRcv    = 6002
	codeXmTimeout   = 6003
	codeEpollInvald = 5013
)

// Reject codes. Values below 1000 are libsrt's own (SRT_REJ_*); 1000..1999
// are the access-control codes of srt/access_control.h (SRT_REJX_*), which a
// listener sends from Authorize via *RejectError.
const (
	RejectPeer       = 2  // SRT_REJ_PEER: rejected by the peer (no code given)
	RejectBacklog    = 5  // SRT_REJ_BACKLOG: listener's backlog exceeded
	RejectClose      = 7  // SRT_REJ_CLOSE: socket is closing
	RejectVersion    = 8  // SRT_REJ_VERSION: peer too old
	RejectBadSecret  = 10 // SRT_REJ_BADSECRET: wrong passphrase
	RejectUnsecure   = 11 // SRT_REJ_UNSECURE: passphrase required or unexpected
	RejectTimeoutHS  = 16 // SRT_REJ_TIMEOUT: connection (handshake) timeout
	RejectFallback   = 1000
	RejectBadRequest = 1400
	// RejectUnauthorized: authentication failed.
	RejectUnauthorized = 1401
	RejectOverload     = 1402
	// RejectForbidden: access denied; the default code for a refusal that
	// is not a *RejectError.
	RejectForbidden     = 1403
	RejectNotFound      = 1404
	RejectBadMode       = 1405
	RejectUnacceptable  = 1406
	RejectConflict      = 1409
	RejectNotSupMedia   = 1415
	RejectLocked        = 1423
	RejectFailedDepend  = 1424
	RejectInternal      = 1500
	RejectUnimplemented = 1501
	RejectGateway       = 1502
	RejectDown          = 1503
	RejectSRTVersion    = 1505
	RejectNoRoom        = 1507
)

var rejectNames = map[int]string{
	RejectFallback:      "fallback",
	1001:                "key not supported",
	1002:                "file path",
	1003:                "host not found",
	RejectBadRequest:    "bad request",
	RejectUnauthorized:  "unauthorized",
	RejectOverload:      "overload",
	RejectForbidden:     "forbidden",
	RejectNotFound:      "not found",
	RejectBadMode:       "bad mode",
	RejectUnacceptable:  "unacceptable",
	RejectConflict:      "conflict",
	RejectNotSupMedia:   "media not supported",
	RejectLocked:        "locked",
	RejectFailedDepend:  "failed dependency",
	RejectInternal:      "internal server error",
	RejectUnimplemented: "unimplemented",
	RejectGateway:       "gateway",
	RejectDown:          "down",
	RejectSRTVersion:    "version",
	RejectNoRoom:        "no room",
}

// RejectName names a reject code: libsrt's text for codes below 1000, the
// access-control name for 1000..1999, "user <n>" above.
func RejectName(code int) string {
	if code < 1000 {
		return rejectText(code)
	}
	if n, ok := rejectNames[code]; ok {
		return n
	}
	if code >= 2000 {
		return "user " + strconv.Itoa(code)
	}
	return "code " + strconv.Itoa(code)
}

// RejectError is returned by ListenConfig.Authorize to refuse a connection
// with a specific reason. Code is sent to the caller (srt_setrejectreason):
// use the Reject* constants (1000..1999) or an application code >= 2000.
// Reason is only logged on the listener side; SRT cannot carry text.
type RejectError struct {
	Code   int
	Reason string
}

func (e *RejectError) Error() string {
	s := "srt: refused: " + strconv.Itoa(e.Code) + " " + RejectName(e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Error is every libsrt failure. Op names the operation (for connect it
// includes the address), Code is the SRT error code (srt_getlasterror; 1002
// for a rejected connect), Text is libsrt's message, and Reject is the reject
// reason of a failed connect (srt_getrejectreason), else 0.
type Error struct {
	Op     string
	Code   int
	Text   string
	Reject int
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("srt ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Reject == RejectTimeoutHS {
		b.WriteString("connection timed out, no answer from the listener (libsrt: ")
		b.WriteString(rejectText(e.Reject))
		b.WriteString("; SRT error ")
		b.WriteString(strconv.Itoa(e.Code))
		b.WriteString(")")
		return b.String()
	}
	if e.Reject != 0 {
		b.WriteString("rejected: ")
		switch e.Reject {
		case RejectBadSecret:
			b.WriteString("wrong passphrase")
		case RejectUnsecure:
			b.WriteString("passphrase required or unexpected (one side encrypts, the other does not)")
		default:
			b.WriteString(strconv.Itoa(e.Reject))
			b.WriteString(" ")
			b.WriteString(RejectName(e.Reject))
		}
		b.WriteString(" (libsrt: ")
		b.WriteString(rejectText(e.Reject))
		b.WriteString("; reject reason ")
		b.WriteString(strconv.Itoa(e.Reject))
		b.WriteString(", SRT error ")
		b.WriteString(strconv.Itoa(e.Code))
		b.WriteString(")")
		return b.String()
	}
	text := e.Text
	if text == "" {
		text = "error"
	}
	b.WriteString(text)
	b.WriteString(" (SRT error ")
	b.WriteString(strconv.Itoa(e.Code))
	b.WriteString(")")
	return b.String()
}

// Is matches the package sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrClosed:
		return e.Code == codeSClosed || e.Code == codeInvSock
	case ErrConnectionLost:
		return e.Code == codeConnFail || e.Code == codeConnLost || e.Code == codeNoConn
	case ErrTimeout:
		return e.Code == codeNoServer || e.Code == codeXmTimeout || e.Reject == RejectTimeoutHS
	case ErrRejected:
		return e.Reject != 0 && e.Reject != RejectTimeoutHS
	case ErrBadPassphrase:
		return e.Reject == RejectBadSecret || e.Reject == RejectUnsecure
	case ErrSendBufferFull:
		return e.Code == codeAsyncSnd
	}
	return false
}

func errFrom(op string, e *C.tsrt_err) *Error {
	return &Error{Op: op, Code: int(e.code), Text: goText(e)}
}

// errCode builds an Error from a code returned (negated) by a hot-path helper.
func errCode(op string, code int) *Error {
	return &Error{Op: op, Code: code, Text: strerror(code)}
}

func strerror(code int) string {
	var buf [256]C.char
	C.tsrt_strerror(C.int(code), &buf[0], C.int(len(buf)))
	return C.GoString(&buf[0])
}

func rejectText(reason int) string {
	var buf [128]C.char
	C.tsrt_rejectstr(C.int(reason), &buf[0], C.int(len(buf)))
	return C.GoString(&buf[0])
}
