package icy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestBlockLayout(t *testing.T) {
	for _, c := range []struct {
		title string
		want  string
	}{
		// 13 + 0 + 2 = 15 bytes: one unit, one NUL of padding.
		{"", "\x01StreamTitle='';\x00"},
		// 13 + 11 + 2 = 26 bytes: two units, six NULs.
		{"Hello World", "\x02StreamTitle='Hello World';\x00\x00\x00\x00\x00\x00"},
		// 13 + 1 + 2 = 16: exactly one unit, no padding.
		{"x", "\x01StreamTitle='x';"},
		// NUL bytes would end the text early for players: dropped.
		{"a\x00b", "\x02StreamTitle='ab';" + strings.Repeat("\x00", 15)},
	} {
		if got := string(Block(c.title)); got != c.want {
			t.Errorf("Block(%q) = %q, want %q", c.title, got, c.want)
		}
	}
}

func TestBlockCutsALongTitleAtACharacterBoundary(t *testing.T) {
	title := strings.Repeat("é", MaxTitle) // 2 bytes each
	b := Block(title)
	if b[0] != 255 || len(b) != 1+MaxBlockText {
		t.Fatalf("length byte %d, block %d bytes; want 255 and %d", b[0], len(b), 1+MaxBlockText)
	}
	got, err := ParseBlock(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(title, got) || len(got) < MaxTitle-1 || !strings.HasSuffix(got, "é") {
		t.Errorf("cut title is %d bytes, ends %q", len(got), got[len(got)-4:])
	}
}

// icyStream runs frames through an Interleaver the way a listener does,
// with the title changing before the given frames.
func icyStream(metaInt int, frames [][]byte, titles map[int]*Metadata) []byte {
	in := NewInterleaver(metaInt)
	var out []byte
	var cur *Metadata
	for i, f := range frames {
		if m, ok := titles[i]; ok {
			cur = m
		}
		for _, b := range in.Append(nil, f, cur) {
			out = append(out, b...)
		}
	}
	return out
}

func TestInterleaverKeepsAudioIntactAndTitlesInOrder(t *testing.T) {
	// Frames of odd sizes so blocks fall inside frames, between frames and
	// at a frame's first byte.
	var frames [][]byte
	var audio []byte
	for i := 0; i < 400; i++ {
		f := bytes.Repeat([]byte{byte(i)}, 100+i%37)
		frames = append(frames, f)
		audio = append(audio, f...)
	}
	const metaInt = 1000
	stream := icyStream(metaInt, frames, map[int]*Metadata{
		0:   NewMetadata("one", 1),
		150: NewMetadata("two", 2),
		300: NewMetadata("three 'quoted'", 3),
	})
	rd := NewReader(bytes.NewReader(stream), metaInt)
	var titles []string
	rd.OnTitle = func(s string) { titles = append(titles, s) }
	got, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, audio) {
		t.Fatalf("audio after removing the blocks differs: %d bytes, want %d", len(got), len(audio))
	}
	if strings.Join(titles, "|") != "one|two|three 'quoted'" {
		t.Errorf("titles %q", titles)
	}
	wantBlocks := len(audio) / metaInt
	if rd.Blocks != wantBlocks || rd.Empty != wantBlocks-3 {
		t.Errorf("%d blocks (%d empty), want %d (%d empty)", rd.Blocks, rd.Empty, wantBlocks, wantBlocks-3)
	}
}

func TestInterleaverSendsAnEmptyTitleFirstWhenThereIsNone(t *testing.T) {
	stream := icyStream(16, [][]byte{make([]byte, 40)}, nil)
	want := string(make([]byte, 16)) + "\x01StreamTitle='';\x00" + string(make([]byte, 16)) + "\x00" + string(make([]byte, 8))
	if string(stream) != want {
		t.Errorf("stream %q\nwant   %q", stream, want)
	}
}

func TestInterleaverDoesNotCopyAudio(t *testing.T) {
	frame := make([]byte, 3000)
	in := NewInterleaver(1000)
	bufs := in.Append(nil, frame, NewMetadata("t", 1))
	// 1000 audio, block, 1000 audio, block, 1000 audio, block.
	if len(bufs) != 6 {
		t.Fatalf("%d buffers, want 6", len(bufs))
	}
	for i := 0; i < 6; i += 2 {
		if &bufs[i][0] != &frame[i/2*1000] {
			t.Errorf("buffer %d is a copy, not a slice of the frame", i)
		}
	}
}

func TestParseBlockRejectsMalformedBlocks(t *testing.T) {
	for _, text := range []string{
		"StreamTitle='x'\x00",          // no ';'
		"Title='abc';\x00\x00\x00\x00", // wrong key
		"StreamTitle='';\x00" + "\x00x" + "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", // text after padding
		"StreamTitle='';" + strings.Repeat("\x00", 17),                                               // padding past the next 16
	} {
		if _, err := ParseBlock([]byte(text)); !errors.Is(err, ErrBadBlock) {
			t.Errorf("ParseBlock(%q) = %v, want ErrBadBlock", text, err)
		}
	}
}

func BenchmarkInterleave1000Listeners(b *testing.B) {
	// One second of 128 kbit/s ADTS (47 frames of ~340 bytes) to 1000
	// listeners: the cost per listener is slicing, never copying.
	frames := make([][]byte, 47)
	for i := range frames {
		frames[i] = make([]byte, 340)
	}
	ls := make([]*Interleaver, 1000)
	for i := range ls {
		ls[i] = NewInterleaver(DefaultMetaInt)
	}
	cur := NewMetadata("title", 1)
	var bufs [][]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for _, f := range frames {
			for _, l := range ls {
				bufs = l.Append(bufs[:0], f, cur)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)*len(ls)), "ns/listener-frame")
}
