// Package icy is the in-band metadata of the ICY protocol that Icecast and
// SHOUTcast players speak: a listener that sends "Icy-MetaData: 1" is
// answered with "icy-metaint: N", and after every N bytes of audio the
// server inserts one metadata block. A block is a length byte L followed by
// L×16 bytes of text ("StreamTitle='...';") padded with NULs; L = 0 says
// "unchanged". Icecast sends the current title in the first block after a
// listener connects and a zero-length block whenever it has not changed;
// this package does the same.
//
// Audio is never copied: Interleaver slices the shared frames at block
// boundaries and adds the shared, pre-encoded blocks between the slices.
package icy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// DefaultMetaInt is Icecast's default metadata interval in bytes.
const DefaultMetaInt = 16000

// MaxBlockText is the most text a block can hold (a length byte of 255).
const MaxBlockText = 255 * 16

const (
	titlePrefix = "StreamTitle='"
	titleSuffix = "';"
)

// MaxTitle is the longest title that fits in one block; longer titles are
// cut at a character boundary.
const MaxTitle = MaxBlockText - len(titlePrefix) - len(titleSuffix)

// unchanged is the block sent when the metadata has not changed.
var unchanged = []byte{0}

// Metadata is one version of a stream's title with its encoded block. It is
// immutable and shared by every listener of the stream.
type Metadata struct {
	Title string
	// Version increases whenever Title changes; listeners compare it with
	// the version they last sent.
	Version uint64
	block   []byte
}

// NewMetadata encodes title as version v.
func NewMetadata(title string, v uint64) *Metadata {
	return &Metadata{Title: title, Version: v, block: Block(title)}
}

// Block encodes a StreamTitle metadata block. The title is cut to MaxTitle
// bytes (at a UTF-8 character boundary) and NUL bytes, which would end the
// text early for players, are dropped.
func Block(title string) []byte {
	title = cleanTitle(title)
	n := len(titlePrefix) + len(title) + len(titleSuffix)
	units := (n + 15) / 16
	b := make([]byte, 1, 1+units*16)
	b[0] = byte(units)
	b = append(b, titlePrefix...)
	b = append(b, title...)
	b = append(b, titleSuffix...)
	return b[:1+units*16] // the padding is the zeroed capacity
}

func cleanTitle(title string) string {
	title = strings.ReplaceAll(title, "\x00", "")
	if len(title) <= MaxTitle {
		return title
	}
	cut := MaxTitle
	for cut > 0 && !utf8.RuneStart(title[cut]) {
		cut--
	}
	return title[:cut]
}

// Interleaver is one listener's position in the ICY byte stream.
type Interleaver struct {
	metaInt int
	left    int    // audio bytes before the next block
	sent    uint64 // version of the last title sent; 0 before the first block
	first   bool
}

// NewInterleaver starts a listener's stream: the first block comes after
// metaInt bytes of audio.
func NewInterleaver(metaInt int) *Interleaver {
	return &Interleaver{metaInt: metaInt, left: metaInt, first: true}
}

// Append adds audio to bufs, inserting a metadata block at every metaInt
// boundary: cur's block when it is the first or cur changed since the last
// block sent, else the zero-length block. audio is sliced, not copied.
// cur may be nil (no title yet: an empty StreamTitle is sent first).
func (in *Interleaver) Append(bufs [][]byte, audio []byte, cur *Metadata) [][]byte {
	for len(audio) > 0 {
		if len(audio) < in.left {
			in.left -= len(audio)
			return append(bufs, audio)
		}
		bufs = append(bufs, audio[:in.left])
		audio = audio[in.left:]
		in.left = in.metaInt
		bufs = append(bufs, in.next(cur))
	}
	return bufs
}

func (in *Interleaver) next(cur *Metadata) []byte {
	if cur == nil {
		if in.first {
			in.first = false
			return emptyTitle
		}
		return unchanged
	}
	if in.first || cur.Version != in.sent {
		in.first = false
		in.sent = cur.Version
		return cur.block
	}
	return unchanged
}

var emptyTitle = Block("")

// Reader removes the metadata blocks from an ICY stream, checking each
// one byte for byte, and reports the titles it finds. It is what a player
// does; tests and load clients use it.
type Reader struct {
	r       io.Reader
	metaInt int
	left    int
	// OnTitle, if set, is called with the text of every non-empty block
	// (the StreamTitle value).
	OnTitle func(title string)
	// Blocks and Empty count the blocks seen and how many were zero-length.
	Blocks, Empty int
	buf           [MaxBlockText]byte
}

// NewReader reads the audio of an ICY stream with the given interval.
func NewReader(r io.Reader, metaInt int) *Reader {
	return &Reader{r: r, metaInt: metaInt, left: metaInt}
}

// ErrBadBlock is returned for a metadata block that is not well formed.
var ErrBadBlock = errors.New("icy: malformed metadata block")

// Read returns audio bytes only.
func (rd *Reader) Read(p []byte) (int, error) {
	if rd.left == 0 {
		if err := rd.readBlock(); err != nil {
			return 0, err
		}
		rd.left = rd.metaInt
	}
	if len(p) > rd.left {
		p = p[:rd.left]
	}
	n, err := rd.r.Read(p)
	rd.left -= n
	return n, err
}

func (rd *Reader) readBlock() error {
	var l [1]byte
	if _, err := io.ReadFull(rd.r, l[:]); err != nil {
		return fmt.Errorf("icy: reading a block's length: %w", err)
	}
	rd.Blocks++
	if l[0] == 0 {
		rd.Empty++
		return nil
	}
	text := rd.buf[:int(l[0])*16]
	if _, err := io.ReadFull(rd.r, text); err != nil {
		return fmt.Errorf("icy: reading a %d-byte block: %w", len(text), err)
	}
	title, err := ParseBlock(text)
	if err != nil {
		return err
	}
	if rd.OnTitle != nil {
		rd.OnTitle(title)
	}
	return nil
}

// ParseBlock checks a block's text (without its length byte): one
// StreamTitle='...'; then NUL padding of less than 16 bytes. It returns the
// title.
func ParseBlock(text []byte) (string, error) {
	end := bytes.IndexByte(text, 0)
	if end < 0 {
		end = len(text)
	}
	for _, c := range text[end:] {
		if c != 0 {
			return "", fmt.Errorf("%w: text after the NUL padding: %q", ErrBadBlock, text)
		}
	}
	if len(text)-end >= 16 {
		return "", fmt.Errorf("%w: %d bytes of padding, a block pads to the next 16 only: %q", ErrBadBlock, len(text)-end, text)
	}
	s := string(text[:end])
	if len(s) < len(titlePrefix)+len(titleSuffix) || s[:len(titlePrefix)] != titlePrefix || s[len(s)-len(titleSuffix):] != titleSuffix {
		return "", fmt.Errorf("%w: want StreamTitle='...'; got %q", ErrBadBlock, s)
	}
	return s[len(titlePrefix) : len(s)-len(titleSuffix)], nil
}
