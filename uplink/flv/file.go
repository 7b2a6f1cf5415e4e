package flv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxTagSize is the largest tag body the 24-bit DataSize field allows.
const MaxTagSize = 1<<24 - 1

// Writer writes an FLV file: the header, then tags, each followed by its
// PreviousTagSize.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes the FLV header (version 1, the audio and video flags,
// PreviousTagSize0) and returns a Writer for the tags.
func NewWriter(w io.Writer, hasAudio, hasVideo bool) (*Writer, error) {
	var flags byte
	if hasAudio {
		flags |= 4
	}
	if hasVideo {
		flags |= 1
	}
	hdr := []byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("flv: write header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WriteTag writes one tag.
func (w *Writer) WriteTag(t Tag) error {
	if len(t.Body) > MaxTagSize {
		return fmt.Errorf("%w: tag body of %d bytes exceeds %d", ErrInvalid, len(t.Body), MaxTagSize)
	}
	n := len(t.Body)
	b := w.buf[:0]
	b = append(b, t.Type, byte(n>>16), byte(n>>8), byte(n),
		byte(t.Timestamp>>16), byte(t.Timestamp>>8), byte(t.Timestamp), byte(t.Timestamp>>24),
		0, 0, 0)
	b = append(b, t.Body...)
	b = binary.BigEndian.AppendUint32(b, uint32(11+n))
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("flv: write tag: %w", err)
	}
	return nil
}

// Reader reads the tags of an FLV file.
type Reader struct {
	r        *bufio.Reader
	HasAudio bool
	HasVideo bool
	hdr      [11]byte
}

// NewReader reads and checks the FLV header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	var h [9]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("flv: header: %w", noEOF(err))
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, fmt.Errorf("%w: file starts with % x, not \"FLV\"", ErrInvalid, h[:3])
	}
	if h[3] != 1 {
		return nil, fmt.Errorf("%w: FLV version %d", ErrUnsupported, h[3])
	}
	off := binary.BigEndian.Uint32(h[5:])
	if off < 9 || off > 1<<16 {
		return nil, fmt.Errorf("%w: FLV header size %d", ErrInvalid, off)
	}
	if _, err := br.Discard(int(off) - 9 + 4); err != nil { // rest of header, PreviousTagSize0
		return nil, fmt.Errorf("flv: header: %w", noEOF(err))
	}
	return &Reader{r: br, HasAudio: h[4]&4 != 0, HasVideo: h[4]&1 != 0}, nil
}

// ReadTag reads the next tag. It returns io.EOF at the end of the file,
// io.ErrUnexpectedEOF for a file cut inside a tag. Encrypted (filtered)
// tags are refused.
func (r *Reader) ReadTag() (Tag, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Tag{}, io.EOF
		}
		return Tag{}, fmt.Errorf("flv: tag header: %w", err)
	}
	h := r.hdr
	if h[0]&0x20 != 0 {
		return Tag{}, fmt.Errorf("%w: encrypted (filtered) tag", ErrUnsupported)
	}
	t := Tag{
		Type:      h[0] & 0x1F,
		Timestamp: uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6]),
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	t.Body = make([]byte, n)
	if _, err := io.ReadFull(r.r, t.Body); err != nil {
		return Tag{}, fmt.Errorf("flv: tag body of %d bytes: %w", n, noEOF(err))
	}
	var prev [4]byte
	if _, err := io.ReadFull(r.r, prev[:]); err != nil && !errors.Is(err, io.EOF) {
		return Tag{}, fmt.Errorf("flv: previous tag size: %w", noEOF(err))
	}
	return t, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
