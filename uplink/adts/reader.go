package adts

import (
	"errors"
	"fmt"
	"io"
)

// MaxSyncSearch is how many bytes a Reader skips in a row looking for a
// frame before it gives up with ErrNotADTS.
const MaxSyncSearch = 64 << 10

// readerBufSize holds two maximal frames plus a header, so a frame and the
// header after it always fit.
const readerBufSize = 32 << 10

// Reader reads ADTS frames from a byte stream (an encoder's stdout, an
// Icecast upload). It buffers its input, resynchronises after garbage and
// allocates nothing per frame.
//
// Sync rule: after a good frame the next header is taken at face value.
// When searching (at the start and after garbage) a candidate header is
// only accepted if the header right after its frame also parses and
// describes the same stream, or if the candidate frame ends exactly at the
// end of the input. Bytes skipped while searching are counted in Skipped.
// A Reader is not safe for concurrent use.
type Reader struct {
	r       io.Reader
	buf     []byte
	start   int // unread data is buf[start:end]
	end     int
	err     error // sticky read error from r
	synced  bool
	frames  int64
	skipped int64
	run     int // bytes skipped since the last good frame
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, readerBufSize)}
}

// Skipped is the total number of bytes discarded while searching for sync.
func (r *Reader) Skipped() int64 { return r.skipped }

// Frames is the number of frames returned so far.
func (r *Reader) Frames() int64 { return r.frames }

// fill makes at least n bytes available if the input allows; it returns
// false once the input has ended (or failed) before that.
func (r *Reader) fill(n int) bool {
	for r.end-r.start < n {
		if r.err != nil {
			return false
		}
		if r.start > 0 && len(r.buf)-r.start < n {
			copy(r.buf, r.buf[r.start:r.end])
			r.end -= r.start
			r.start = 0
		}
		k, err := r.r.Read(r.buf[r.end:])
		r.end += k
		if err != nil {
			r.err = err
		} else if k == 0 {
			// A reader returning (0, nil) repeatedly: avoid spinning forever.
			r.err = io.ErrNoProgress
		}
	}
	return true
}

// ReadFrame returns the next frame's header and raw payload (the AAC
// access unit without the ADTS header or CRC).
//
// The payload aliases the Reader's buffer and is only valid until the next
// call: copy it to keep it. At the end of the input ReadFrame returns
// io.EOF, or io.ErrUnexpectedEOF if the input ends inside a frame; an input
// in which no frame was ever found, or which holds MaxSyncSearch bytes in a
// row without one, gives an error wrapping ErrNotADTS. Errors from the
// underlying reader are returned as they are.
func (r *Reader) ReadFrame() (Header, []byte, error) {
	for {
		if !r.fill(7) {
			return Header{}, nil, r.endErr()
		}
		b := r.buf[r.start:r.end]
		h, err := ParseHeader(b)
		if errors.Is(err, ErrShort) { // 9-byte header with CRC
			if !r.fill(9) {
				return Header{}, nil, r.endErr()
			}
			continue
		}
		if err == nil && !r.synced {
			err = r.confirm(h)
		}
		if err != nil {
			r.synced = false
			if e := r.skip(); e != nil {
				return Header{}, nil, e
			}
			continue
		}
		if !r.fill(h.FrameLength) {
			if r.synced {
				return Header{}, nil, r.endErr()
			}
			// A candidate frame cut by the end of input: treat as garbage.
			if e := r.skip(); e != nil {
				return Header{}, nil, e
			}
			continue
		}
		p := r.buf[r.start+h.HeaderLength : r.start+h.FrameLength : r.start+h.FrameLength]
		r.start += h.FrameLength
		r.synced = true
		r.run = 0
		r.frames++
		return h, p, nil
	}
}

// confirm checks a candidate header found while searching: the header
// after its frame must parse and describe the same stream, unless the
// frame ends the input exactly.
func (r *Reader) confirm(h Header) error {
	r.fill(h.FrameLength + 9) // best effort: the input may end sooner
	avail := r.end - r.start
	if avail == h.FrameLength {
		return nil // fill stopped exactly here, so the input ended here
	}
	if avail < h.FrameLength+7 {
		return errNoConfirm
	}
	next, err := ParseHeader(r.buf[r.start+h.FrameLength : r.end])
	if err != nil || next.Config != h.Config {
		return errNoConfirm
	}
	return nil
}

var errNoConfirm = errors.New("adts: unconfirmed sync")

// skip drops one byte and anything up to the next 0xFF.
func (r *Reader) skip() error {
	n := 1
	b := r.buf[r.start+1 : r.end]
	for _, c := range b {
		if c == 0xFF {
			break
		}
		n++
	}
	r.start += n
	r.skipped += int64(n)
	r.run += n
	if r.run >= MaxSyncSearch {
		r.run = 0
		return fmt.Errorf("%w: no frame in %d bytes (%d frames read before)", ErrNotADTS, MaxSyncSearch, r.frames)
	}
	return nil
}

// endErr is the error for an input that ended (or failed) with the
// unread bytes still in the buffer.
func (r *Reader) endErr() error {
	left := r.end - r.start
	if r.err != nil && r.err != io.EOF {
		return r.err
	}
	if r.frames == 0 && r.skipped+int64(left) > 0 {
		return fmt.Errorf("%w: %d bytes without a frame", ErrNotADTS, r.skipped+int64(left))
	}
	if left > 0 {
		if _, err := ParseHeader(r.buf[r.start:r.end]); err == nil || errors.Is(err, ErrShort) && r.buf[r.start] == 0xFF {
			r.start = r.end
			return io.ErrUnexpectedEOF
		}
		r.skipped += int64(left)
		r.start = r.end
	}
	return io.EOF
}
