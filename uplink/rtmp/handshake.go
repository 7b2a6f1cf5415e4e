package rtmp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// The handshake (spec §5.2): C0/S0 is the version byte 3; C1/S1 are 1536
// bytes (time, four zero bytes, random); C2/S2 echo the peer's C1/S1 with
// the time it was read in bytes 4..7. This is the plain handshake: the
// server does not validate or answer the digest variant some clients put
// in C1 (FFmpeg and librtmp publishers accept a plain S1/S2, and a zero
// version field in S1 tells FFmpeg not to expect a digest).
const (
	rtmpVersion   = 3
	handshakeSize = 1536
)

// ErrHandshake is wrapped by handshake failures.
var ErrHandshake = errors.New("rtmp: handshake failed")

func versionHint(v byte) string {
	switch {
	case v == 0x16:
		return " (looks like TLS: rtmps is not served on this port)"
	case v == 6 || v == 8 || v == 9:
		return " (RTMPE encryption is not supported)"
	case v >= 'A' && v <= 'Z':
		return fmt.Sprintf(" (%q: looks like a text protocol such as HTTP)", rune(v))
	}
	return ""
}

func readPacket(r io.Reader, b []byte, what string) error {
	n, err := io.ReadFull(r, b)
	if err != nil {
		return packetErr(err, n, len(b), what)
	}
	return nil
}

func packetErr(err error, n, total int, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: connection closed after %d of %d bytes of %s", ErrHandshake, n, total, what)
	}
	return fmt.Errorf("%w: reading %s (%d of %d bytes): %w", ErrHandshake, what, n, total, err)
}

func fillHandshake(b []byte, epoch uint32) {
	binary.BigEndian.PutUint32(b[0:], epoch)
	binary.BigEndian.PutUint32(b[4:], 0)
	for i := 8; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
}

func sinceMs(start time.Time) uint32 { return uint32(time.Since(start).Milliseconds()) }

// serverHandshake reads C0+C1, sends S0+S1+S2 and reads C2.
func serverHandshake(br *bufio.Reader, w *bufio.Writer, start time.Time) error {
	c0, err := br.ReadByte()
	if err != nil {
		return packetErr(err, 0, 1, "C0")
	}
	if c0 != rtmpVersion {
		return fmt.Errorf("%w: C0 version byte 0x%02x, want 0x03%s", ErrHandshake, c0, versionHint(c0))
	}
	out := make([]byte, 1+2*handshakeSize)
	c1 := out[1+handshakeSize:] // read C1 straight into S2, which echoes it
	if err := readPacket(br, c1, "C1"); err != nil {
		return err
	}
	out[0] = rtmpVersion
	fillHandshake(out[1:1+handshakeSize], sinceMs(start))
	binary.BigEndian.PutUint32(c1[4:], sinceMs(start))
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("%w: writing S0+S1+S2: %w", ErrHandshake, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%w: writing S0+S1+S2: %w", ErrHandshake, err)
	}
	// C2 should echo S1; it is not checked (clients with the digest
	// handshake answer differently, and nothing depends on it).
	return readPacket(br, make([]byte, handshakeSize), "C2")
}

// clientHandshake sends C0+C1, reads S0+S1, sends C2 and reads S2.
func clientHandshake(br *bufio.Reader, w *bufio.Writer, start time.Time) error {
	out := make([]byte, 1+handshakeSize)
	out[0] = rtmpVersion
	fillHandshake(out[1:], sinceMs(start))
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("%w: writing C0+C1: %w", ErrHandshake, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%w: writing C0+C1: %w", ErrHandshake, err)
	}
	s0, err := br.ReadByte()
	if err != nil {
		return packetErr(err, 0, 1, "S0")
	}
	if s0 != rtmpVersion {
		return fmt.Errorf("%w: server answered version byte 0x%02x, want 0x03%s", ErrHandshake, s0, versionHint(s0))
	}
	s1 := make([]byte, handshakeSize)
	if err := readPacket(br, s1, "S1"); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(s1[4:], sinceMs(start)) // s1 becomes C2
	if _, err := w.Write(s1); err != nil {
		return fmt.Errorf("%w: writing C2: %w", ErrHandshake, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%w: writing C2: %w", ErrHandshake, err)
	}
	return readPacket(br, make([]byte, handshakeSize), "S2")
}
