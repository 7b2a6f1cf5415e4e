package merge

import (
	"bytes"
	"testing"
	"time"

	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// Video frames in these scenarios: 25 frames per second, one every 3600
// ticks, a keyframe every gop frames. The payload is an Annex-B access
// unit whose slice ends with the sender's tag and frame number, so the
// test can tell where an output frame came from even after the merge
// added parameter sets in front.

const videoTick = media.ClockRate / 25

var (
	testSPS = []byte{0x67, 0x42, 0xC0, 0x1E, 0x01}
	testPPS = []byte{0x68, 0xCE, 0x3C, 0x80}
)

type videoFeed struct {
	gop      int
	keyPhase int   // frame i is a keyframe when (i+keyPhase)%gop == 0
	reorder  int64 // PTS - DTS (B-frames), in ticks
}

func videoAU(tag byte, i int64, key bool) []byte {
	nal := byte(0x41)
	if key {
		nal = 0x65
	}
	return []byte{0, 0, 0, 1, nal, 0x88, tag, byte(i), byte(i >> 8)}
}

// feedVideo schedules video frames [from, to) of a sender whose clock
// started at start, on the same timeline as its audio (ptsOrigin).
func (s *sim) feedVideo(r Role, p path, vf videoFeed, start time.Time, ptsOrigin int64, from, to int64) {
	for i := from; i < to; i++ {
		sent := start.Add(time.Duration(i) * 40 * time.Millisecond)
		if p.down != nil && p.down(sent) {
			continue
		}
		dts := ptsOrigin + i*videoTick
		key := (i+int64(vf.keyPhase))%int64(vf.gop) == 0
		f := media.Frame{Kind: media.KindVideo, PTS: (dts + vf.reorder) & (wrap - 1), DTS: dts & (wrap - 1), Key: key, Data: videoAU(p.tag, i, key)}
		s.q.add(delivery{at: sent.Add(p.delay), role: r, frame: f})
	}
}

type videoOutFrame struct {
	at       time.Time
	pts, dts int64
	key      bool
	source   Role
	tag      byte
	index    int64
	data     []byte
}

func (s *sim) videoOut() []videoOutFrame {
	var vs []videoOutFrame
	for _, e := range s.out {
		f := e.out.Frame
		if f.Kind != media.KindVideo {
			continue
		}
		d := f.Data
		vs = append(vs, videoOutFrame{e.at, f.PTS, f.DTS, f.Key, e.out.Source, d[len(d)-3], int64(d[len(d)-2]) | int64(d[len(d)-1])<<8, d})
	}
	return vs
}

// checkDecodable asserts what a decoder needs: DTS strictly rising, PTS
// never before DTS, the first frame and every change of sender a keyframe
// carrying SPS and PPS, and within one sender's run no frame skipped.
func checkDecodable(t *testing.T, vs []videoOutFrame) {
	t.Helper()
	if len(vs) == 0 {
		t.Fatal("no video emitted")
	}
	for i, v := range vs {
		if v.pts < v.dts {
			t.Fatalf("video frame %d: PTS %d before DTS %d", i, v.pts, v.dts)
		}
		if v.key && !h264.HasParameterSets(v.data) {
			t.Fatalf("video frame %d: keyframe without SPS/PPS in band", i)
		}
		if i == 0 || vs[i-1].tag != v.tag {
			if !v.key {
				t.Fatalf("video frame %d (sender %d frame %d) starts a run without a keyframe", i, v.tag, v.index)
			}
			// Players show one frame per instant: a new sender's first
			// frame comes at least a frame after the last one.
			if i > 0 && v.dts-vs[i-1].dts < videoTick {
				t.Fatalf("video frame %d (sender %c) only %d ticks after the last", i, v.tag, v.dts-vs[i-1].dts)
			}
			continue
		}
		p := vs[i-1]
		if v.dts <= p.dts {
			t.Fatalf("video DTS not rising at %d: %d then %d", i, p.dts, v.dts)
		}
		if v.index != p.index+1 && !v.key {
			t.Fatalf("video frame %d: sender %d frame %d follows its frame %d without a keyframe", i, v.tag, v.index, p.index)
		}
	}
}

func setVideo(m *Merge) {
	cfg := media.VideoConfig{Codec: media.CodecH264, Width: 320, Height: 240, SPS: testSPS, PPS: testPPS}
	m.SetVideo(Primary, cfg)
	m.SetVideo(Fallback, cfg)
}

func TestVideoAlignedManualSwitchIsFrameExact(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	setVideo(s.m)
	const origin = 900000
	frames := int64(10 * framesPerSec48k)
	vf := videoFeed{gop: 25}
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'A'}, "sess", t0, origin, 0, frames, 0)
	s.feed(Fallback, path{delay: 50 * time.Millisecond, tag: 'B'}, "sess", t0, origin, 0, frames, 0)
	s.feedVideo(Primary, path{delay: 20 * time.Millisecond, tag: 'A'}, vf, t0, origin, 0, 250)
	s.feedVideo(Fallback, path{delay: 50 * time.Millisecond, tag: 'B'}, vf, t0, origin, 0, 250)
	// The operator switches mid-GOP at 3.6 s: the video follows at the
	// fallback's next keyframe (frame 100, 4 s), frame-exact.
	s.at(sec(3.6), func(m *Merge, now time.Time) {
		if err := m.Pin(now, Fallback); err != nil {
			t.Fatal(err)
		}
	})
	s.run(t0.Add(11 * time.Second))

	vs := s.videoOut()
	checkDecodable(t, vs)
	for i := 1; i < len(vs); i++ {
		if vs[i].index != vs[i-1].index+1 {
			t.Fatalf("aligned video skipped or repeated a frame: %d then %d", vs[i-1].index, vs[i].index)
		}
		if vs[i].tag != vs[i-1].tag && (vs[i].tag != 'B' || vs[i].index != 100) {
			t.Fatalf("video changed sender at frame %d (to %c); want at the fallback's keyframe 100", vs[i].index, vs[i].tag)
		}
	}
	if vs[0].tag != 'A' || vs[len(vs)-1].tag != 'B' {
		t.Fatalf("video went from %c to %c, want A to B", vs[0].tag, vs[len(vs)-1].tag)
	}
	// Lip sync: the output video of sender frame i sits where the output
	// audio of the same instant does.
	var audioPTS0 int64 = -1
	for _, e := range s.out {
		if e.out.Frame.Kind == media.KindAudio && !e.out.Filled {
			d := e.out.Frame.Data
			idx := int64(d[1]) | int64(d[2])<<8
			audioPTS0 = e.out.Frame.PTS - aac48.FramePTS(idx)
			break
		}
	}
	for _, v := range vs {
		if want := audioPTS0 + v.index*videoTick; v.dts != want {
			t.Fatalf("video frame %d at DTS %d, want %d (the audio's offset)", v.index, v.dts, want)
		}
	}
}

func TestVideoAlignedCutSwitchesAtNextKeyframe(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	setVideo(s.m)
	const origin = 0
	frames := int64(12 * framesPerSec48k)
	vf := videoFeed{gop: 25}
	cut := cuts([2]time.Duration{sec(3.5), sec(6.5)})
	pa := path{delay: 20 * time.Millisecond, tag: 'A', down: cut}
	pb := path{delay: 40 * time.Millisecond, tag: 'B'}
	s.feed(Primary, pa, "sess", t0, origin, 0, frames, 0)
	s.feed(Fallback, pb, "sess", t0, origin, 0, frames, 0)
	s.feedVideo(Primary, pa, vf, t0, origin, 0, 300)
	s.feedVideo(Fallback, pb, vf, t0, origin, 0, 300)
	s.run(t0.Add(12 * time.Second))

	if s.holes() != 0 {
		for _, e := range s.events {
			t.Log(e.Time.Sub(t0), e)
		}
		t.Fatalf("aligned audio had %d holes", s.holes())
	}
	vs := s.videoOut()
	checkDecodable(t, vs)
	// The primary's video stops after frame 87 (3.48 s); the fallback's
	// P-frames 88..99 cannot follow it, so the output resumes with the
	// fallback's keyframe 100 and returns to the primary at its keyframe
	// 175 (7 s) once the primary delivers again.
	var runs []string
	for i, v := range vs {
		if i == 0 || v.tag != vs[i-1].tag {
			runs = append(runs, string(v.tag)+itoa(v.index))
		}
	}
	want := []string{"A0", "B100", "A175"}
	if len(runs) != len(want) {
		t.Fatalf("video runs %v, want %v", runs, want)
	}
	for i := range want {
		if runs[i] != want[i] {
			t.Fatalf("video runs %v, want %v", runs, want)
		}
	}
	gap := 0
	for i := 1; i < len(vs); i++ {
		if n := int(vs[i].index - vs[i-1].index - 1); n > 0 {
			gap += n
		}
	}
	if gap != 12 {
		t.Fatalf("video missed %d frames, want 12 (primary's 88..99)", gap)
	}
}

func itoa(n int64) string {
	var b []byte
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestVideoSpliceKillPrimary(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond, Stall: 500 * time.Millisecond}, aac48)
	setVideo(s.m)
	// Two independent encoders: other timelines, GOPs not aligned, the
	// fallback's with B-frames.
	frames := int64(12 * framesPerSec48k)
	pa := path{delay: 20 * time.Millisecond, tag: 'A', down: cuts([2]time.Duration{sec(4), sec(100)})}
	pb := path{delay: 30 * time.Millisecond, tag: 'B'}
	s.feed(Primary, pa, "", t0, 5000, 0, frames, 0)
	s.feedVideo(Primary, pa, videoFeed{gop: 25}, t0, 5000, 0, 300)
	startB := t0.Add(sec(0.5) + 27*time.Millisecond) // its frames fall between the primary's
	s.feed(Fallback, pb, "", startB, 777777, 0, frames, 0)
	s.feedVideo(Fallback, pb, videoFeed{gop: 25, keyPhase: 12, reorder: 2 * videoTick}, startB, 777777, 0, 280)
	s.disconnectAt(Primary, t0.Add(sec(9.2))) // libsrt notices a dead peer after ~5 s: the stall decides first
	s.run(t0.Add(12 * time.Second))

	vs := s.videoOut()
	checkDecodable(t, vs)
	var firstB = -1
	for i, v := range vs {
		if v.tag == 'B' {
			firstB = i
			break
		}
	}
	if firstB < 0 {
		t.Fatal("the fallback's video never reached the output")
	}
	if vs[firstB-1].tag != 'A' || vs[firstB-1].index > 100 {
		t.Fatalf("before the fallback: %c frame %d", vs[firstB-1].tag, vs[firstB-1].index)
	}
	b := vs[firstB]
	if !b.key || (b.index+12)%25 != 0 {
		t.Fatalf("fallback video starts at its frame %d (key %v), want a keyframe", b.index, b.key)
	}
	// The switch is at the fallback's first keyframe after the primary's
	// last frame (frame 88, 40 ms after the cut), although that keyframe
	// arrived before the stall was declared: the video gap is less than
	// one GOP.
	last := vs[firstB-1]
	t.Logf("primary's last frame %d, fallback from its frame %d: video gap %d ms", last.index, b.index, (b.dts-last.dts)/90)
	if b.index != 88 {
		t.Errorf("fallback video from its frame %d, want its first keyframe after the cut, 88", b.index)
	}
	if gap := b.dts - last.dts; gap <= 0 || gap > 25*videoTick {
		t.Fatalf("video gap at the splice %d ticks, more than a GOP", gap)
	}
	for _, v := range vs[firstB:] {
		if v.tag != 'B' {
			t.Fatalf("primary frame %d after the splice", v.index)
		}
		if v.pts-v.dts != 2*videoTick {
			t.Fatalf("fallback frame %d: PTS-DTS %d, want the sender's %d", v.index, v.pts-v.dts, 2*videoTick)
		}
	}
	if !s.hasEvent(EventVideo) {
		t.Fatal("no video event")
	}
}

func TestVideoSpliceKeepsOldVideoUntilKeyframe(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	setVideo(s.m)
	frames := int64(10 * framesPerSec48k)
	pa := path{delay: 20 * time.Millisecond, tag: 'A'}
	pb := path{delay: 20 * time.Millisecond, tag: 'B'}
	s.feed(Primary, pa, "", t0, 0, 0, frames, 0)
	s.feedVideo(Primary, pa, videoFeed{gop: 50}, t0, 0, 0, 250)
	// The fallback's frames fall 27 ms after the primary's.
	startB := t0.Add(27 * time.Millisecond)
	s.feed(Fallback, pb, "", startB, 123456, 0, frames, 0)
	s.feedVideo(Fallback, pb, videoFeed{gop: 50, keyPhase: 20}, startB, 123456, 0, 250)
	s.at(sec(3.1), func(m *Merge, now time.Time) { _ = m.Pin(now, Fallback) })
	s.run(t0.Add(11 * time.Second))

	vs := s.videoOut()
	checkDecodable(t, vs)
	// The audio switches at 3.1 s; the video keeps the primary's frames
	// until the fallback's keyframe (frame 80, 3.227 s): no frame missing,
	// and the fallback's video held back by 13 ms so that it follows the
	// primary's last frame by one frame interval.
	for i := 1; i < len(vs); i++ {
		if vs[i].dts-vs[i-1].dts != videoTick {
			t.Fatalf("video DTS step %d at frame %d (%c%d), want one frame", vs[i].dts-vs[i-1].dts, i, vs[i].tag, vs[i].index)
		}
		if vs[i].tag != vs[i-1].tag && vs[i].index != 80 {
			t.Fatalf("video switched at fallback frame %d, want its keyframe 80", vs[i].index)
		}
	}
}

func TestVideoKeyframeGetsParameterSets(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	setVideo(s.m)
	withSets := h264.WithParameterSets(videoAU('A', 0, true), testSPS, testPPS)
	s.feed(Primary, path{tag: 'A'}, "", t0, 0, 0, 100, 0)
	s.q.add(delivery{at: t0, role: Primary, frame: media.Frame{Kind: media.KindVideo, Key: true, Data: withSets}})
	s.q.add(delivery{at: t0.Add(40 * time.Millisecond), role: Primary, frame: media.Frame{Kind: media.KindVideo, PTS: videoTick, DTS: videoTick, Data: videoAU('A', 1, false)}})
	s.q.add(delivery{at: t0.Add(80 * time.Millisecond), role: Primary, frame: media.Frame{Kind: media.KindVideo, PTS: 2 * videoTick, DTS: 2 * videoTick, Key: true, Data: videoAU('A', 2, true)}})
	s.run(t0.Add(2 * time.Second))
	vs := s.videoOut()
	if len(vs) != 3 {
		t.Fatalf("%d video frames out, want 3", len(vs))
	}
	if !bytes.Equal(vs[0].data, withSets) {
		t.Errorf("a keyframe that had its parameter sets was changed: % x", vs[0].data)
	}
	if !bytes.Equal(vs[1].data, videoAU('A', 1, false)) {
		t.Errorf("a P-frame was changed: % x", vs[1].data)
	}
	if !bytes.Equal(vs[2].data, h264.WithParameterSets(videoAU('A', 2, true), testSPS, testPPS)) {
		t.Errorf("keyframe without parameter sets came out as % x", vs[2].data)
	}
}

func TestVideoBeforeFirstKeyframeIsDropped(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	setVideo(s.m)
	frames := int64(5 * framesPerSec48k)
	p := path{delay: 10 * time.Millisecond, tag: 'A'}
	s.feed(Primary, p, "", t0, 0, 0, frames, 0)
	s.feedVideo(Primary, p, videoFeed{gop: 25, keyPhase: 10}, t0, 0, 0, 100)
	s.run(t0.Add(6 * time.Second))
	vs := s.videoOut()
	checkDecodable(t, vs)
	if vs[0].index != 15 {
		t.Fatalf("video starts at frame %d, want the first keyframe 15", vs[0].index)
	}
	if got := s.m.VideoCounters().Dropped; got != 15 {
		t.Fatalf("dropped %d frames, want the 15 before the first keyframe", got)
	}
}
