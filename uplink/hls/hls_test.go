package hls

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/scripts/testenv"
	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
)

var aac48 = media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}

const frameTicks = 1920 // one AAC frame at 48 kHz

var tone struct {
	once   sync.Once
	frames [][]byte
	err    error
}

// toneFrames returns 31 s of a 440 Hz stereo tone encoded by ffmpeg's AAC
// encoder at 48 kHz, as raw access units. It is encoded once per run.
func toneFrames(t testing.TB) [][]byte {
	t.Helper()
	ffmpeg := testenv.Need(t, "ffmpeg")
	tone.once.Do(func() {
		dir, err := os.MkdirTemp("", "hls-tone")
		if err != nil {
			tone.err = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "tone.aac")
		out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=31",
			"-ac", "2", "-c:a", "aac", "-b:a", "128k", "-f", "adts", path).CombinedOutput()
		if err != nil {
			tone.err = fmt.Errorf("ffmpeg: %v: %s", err, out)
			return
		}
		f, err := os.Open(path)
		if err != nil {
			tone.err = err
			return
		}
		defer f.Close()
		r := adts.NewReader(f)
		for {
			h, p, err := r.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				tone.err = err
				return
			}
			if h.Config != aac48 {
				tone.err = fmt.Errorf("ffmpeg made %v, want %v", h.Config, aac48)
				return
			}
			tone.frames = append(tone.frames, bytes.Clone(p))
		}
	})
	if tone.err != nil {
		t.Fatal(tone.err)
	}
	return tone.frames
}

// synthFrames returns n frames of random bytes: enough for everything but
// decoding.
func synthFrames(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 150+rng.IntN(400))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out[i] = b
	}
	return out
}

// feed writes frames[from:to] with PTS = cfg.FramePTS(n0+i).
func feed(s *Segmenter, cfg media.AudioConfig, frames [][]byte, from, to int, n0 int64) {
	for i := from; i < to; i++ {
		pts := cfg.FramePTS(n0 + int64(i))
		s.WriteFrame(media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: frames[i]})
	}
}

type plSegment struct {
	uri  string
	ms   int64 // EXTINF in milliseconds
	disc bool
}

type playlist struct {
	version, target, mediaSeq int64
	discSeq                   int64 // -1 when absent
	ended                     bool
	segs                      []plSegment
}

func (p playlist) seq(i int) int64 { return p.mediaSeq + int64(i) }

// parsePlaylist parses and checks the syntax of a media playlist.
func parsePlaylist(t testing.TB, body []byte) playlist {
	t.Helper()
	p := playlist{discSeq: -1, version: -1, target: -1, mediaSeq: -1}
	sc := bufio.NewScanner(bytes.NewReader(body))
	line := 0
	var pendingDur int64 = -1
	var pendingDisc bool
	for sc.Scan() {
		l := sc.Text()
		line++
		if line == 1 {
			if l != "#EXTM3U" {
				t.Fatalf("playlist starts with %q", l)
			}
			continue
		}
		if p.ended {
			t.Fatalf("line after EXT-X-ENDLIST: %q", l)
		}
		tag, val, _ := strings.Cut(l, ":")
		num := func() int64 {
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				t.Fatalf("line %d %q: %v", line, l, err)
			}
			return n
		}
		switch {
		case tag == "#EXT-X-VERSION":
			p.version = num()
		case tag == "#EXT-X-TARGETDURATION":
			p.target = num()
		case tag == "#EXT-X-MEDIA-SEQUENCE":
			p.mediaSeq = num()
		case tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
			if len(p.segs) > 0 || pendingDur >= 0 {
				t.Fatalf("discontinuity sequence after a segment")
			}
			p.discSeq = num()
		case l == "#EXT-X-DISCONTINUITY":
			pendingDisc = true
		case l == "#EXT-X-ENDLIST":
			p.ended = true
		case tag == "#EXTINF":
			d, ok := strings.CutSuffix(val, ",")
			sec, frac, ok2 := strings.Cut(d, ".")
			if !ok || !ok2 || len(frac) != 3 {
				t.Fatalf("line %d: EXTINF %q is not <seconds>.<3 decimals>,", line, val)
			}
			a, err1 := strconv.ParseInt(sec, 10, 64)
			b, err2 := strconv.ParseInt(frac, 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("line %d: EXTINF %q", line, val)
			}
			pendingDur = a*1000 + b
		case strings.HasPrefix(l, "#"):
			t.Fatalf("unexpected tag %q", l)
		default:
			if pendingDur < 0 {
				t.Fatalf("line %d: URI %q without EXTINF", line, l)
			}
			p.segs = append(p.segs, plSegment{uri: l, ms: pendingDur, disc: pendingDisc})
			pendingDur, pendingDisc = -1, false
		}
	}
	if p.version != 3 || p.target < 1 || p.mediaSeq < 0 || pendingDur >= 0 || pendingDisc {
		t.Fatalf("incomplete playlist %+v:\n%s", p, body)
	}
	for i, s := range p.segs {
		if want := fmt.Sprintf("seg-%d.ts", p.seq(i)); s.uri != want {
			t.Fatalf("segment %d is %q, want %q", i, s.uri, want)
		}
		if (s.ms+500)/1000 > p.target {
			t.Fatalf("EXTINF %d ms exceeds the target duration %d s", s.ms, p.target)
		}
	}
	return p
}

func get(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func getPlaylist(t testing.TB, base string) playlist {
	t.Helper()
	code, h, body := get(t, base+"index.m3u8")
	if code != 200 {
		t.Fatalf("playlist: %d %s", code, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/vnd.apple.mpegurl" {
		t.Fatalf("playlist Content-Type %q", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("playlist Cache-Control %q", cc)
	}
	return parsePlaylist(t, body)
}

// demux reads a segment with our demuxer and checks its structure.
func demux(t testing.TB, data []byte) []media.Frame {
	t.Helper()
	if len(data) == 0 || len(data)%mpegts.PacketSize != 0 {
		t.Fatalf("segment of %d bytes is not whole TS packets", len(data))
	}
	pid := func(i int) int { p := data[i*188:]; return int(p[1]&0x1F)<<8 | int(p[2]) }
	if pid(0) != 0 || pid(1) != mpegts.DefaultPMTPID {
		t.Fatalf("segment does not start with PAT and PMT (PIDs %#x %#x)", pid(0), pid(1))
	}
	for i := 2; i < len(data)/188; i++ {
		if pid(i) == 0 {
			t.Fatalf("PAT repeated at packet %d", i)
		}
	}
	var frames []media.Frame
	d := mpegts.NewDemuxer(mpegts.Handler{OnFrame: func(_ uint16, f media.Frame) { frames = append(frames, f) }})
	if err := d.Feed(data); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.CCErrors != 0 || st.DroppedPES != 0 || st.Resyncs != 0 || st.SkippedBytes != 0 {
		t.Fatalf("demux stats %+v", st)
	}
	return frames
}

// TestSegments checks segments and playlist with our own demuxer: frame by
// frame content, exact timestamps continuous across segments, durations.
func TestSegments(t *testing.T) {
	const n0 = 123457 // the output timeline rarely starts at 0
	frames := synthFrames(1407)
	s := New(Config{Audio: aac48})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	feed(s, aac48, frames, 0, len(frames), n0)

	p := getPlaylist(t, base)
	// 93 frames (1.984 s) per segment: 15 complete, the 16th building.
	if p.target != 2 || len(p.segs) != 6 || p.mediaSeq != 9 || p.ended || p.discSeq != -1 {
		t.Fatalf("playlist %+v", p)
	}
	for _, sg := range p.segs {
		if sg.ms != 1984 || sg.disc {
			t.Fatalf("segment %+v, want 1.984 s", sg)
		}
	}
	// Every retained segment (window + 2), frame by frame.
	next := 7 * 93
	for seq := 7; seq <= 14; seq++ {
		code, h, data := get(t, fmt.Sprintf("%sseg-%d.ts", base, seq))
		if code != 200 || h.Get("Content-Type") != "video/mp2t" || !strings.HasPrefix(h.Get("Cache-Control"), "max-age=") {
			t.Fatalf("seg-%d: %d %v", seq, code, h)
		}
		got := demux(t, data)
		if len(got) != 93 {
			t.Fatalf("seg-%d holds %d frames, want 93", seq, len(got))
		}
		for _, f := range got {
			if want := aac48.FramePTS(n0 + int64(next)); f.PTS != want || !bytes.Equal(f.Data, frames[next]) {
				t.Fatalf("seg-%d: frame %d PTS %d, want %d (or data differs)", seq, next, f.PTS, want)
			}
			next++
		}
	}
	s.Close()
	p = getPlaylist(t, base)
	if !p.ended || p.mediaSeq != 10 || len(p.segs) != 6 {
		t.Fatalf("closed playlist %+v", p)
	}
	// The last segment holds the remaining 1407 - 15*93 = 12 frames.
	if last := p.segs[5]; last.ms != 12*1920/90 {
		t.Fatalf("last segment %+v, want %d ms", last, 12*1920/90)
	}
	_, _, data := get(t, base+"seg-15.ts")
	if got := demux(t, data); len(got) != 12 || got[0].PTS != aac48.FramePTS(n0+15*93) {
		t.Fatalf("last segment: %d frames", len(got))
	}
}

// TestSlidingWindow follows the playlist segment by segment.
func TestSlidingWindow(t *testing.T) {
	frames := synthFrames(93*20 + 1)
	s := New(Config{Audio: aac48, Window: 4})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	completed := 0
	for i := range frames {
		feed(s, aac48, frames, i, i+1, 1)
		if i == 0 || i%93 != 0 {
			continue
		}
		completed++ // frame i started segment i/93
		p := getPlaylist(t, base)
		if want := min(completed, 4); len(p.segs) != want {
			t.Fatalf("after %d segments the playlist lists %d, want %d", completed, len(p.segs), want)
		}
		if want := int64(max(0, completed-4)); p.mediaSeq != want {
			t.Fatalf("after %d segments media sequence %d, want %d", completed, p.mediaSeq, want)
		}
		if p.target != 2 {
			t.Fatalf("target duration %d changed", p.target)
		}
		// Window + 2 retained: the two before the window still answer.
		for seq := max(0, completed-6); seq < completed; seq++ {
			if code, _, body := get(t, fmt.Sprintf("%sseg-%d.ts", base, seq)); code != 200 {
				t.Fatalf("retained seg-%d: %d %s", seq, code, body)
			}
		}
		if completed > 6 {
			code, _, body := get(t, fmt.Sprintf("%sseg-%d.ts", base, completed-7))
			if code != 404 || !strings.Contains(string(body), "expired") {
				t.Fatalf("expired segment: %d %s", code, body)
			}
		}
	}
}

// TestDurations44k checks exact durations where frame ticks are uneven.
func TestDurations44k(t *testing.T) {
	cfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 44100, Channels: 2}
	frames := synthFrames(2000)
	s := New(Config{Audio: cfg, Window: 100})
	srv := httptest.NewServer(s)
	defer srv.Close()
	const n0 = 77
	feed(s, cfg, frames, 0, len(frames), n0)
	s.Close()
	p := getPlaylist(t, srv.URL+"/")
	next := int64(n0)
	minMS := 2000 - (1024*1000+44099)/44100
	for i, sg := range p.segs {
		_, _, data := get(t, srv.URL+"/"+sg.uri)
		got := demux(t, data)
		if got[0].PTS != cfg.FramePTS(next) {
			t.Fatalf("%s starts at %d, want %d", sg.uri, got[0].PTS, cfg.FramePTS(next))
		}
		next += int64(len(got))
		exact := cfg.FramePTS(next) - got[0].PTS
		if want := (exact*1000 + 45000) / 90000; sg.ms != want {
			t.Fatalf("%s EXTINF %d ms, frames span %d ms", sg.uri, sg.ms, want)
		}
		if sg.ms > 2000 || (i < len(p.segs)-1 && sg.ms < int64(minMS)) {
			t.Fatalf("%s lasts %d ms", sg.uri, sg.ms)
		}
	}
	if next != n0+2000 {
		t.Fatalf("playlist covers %d frames, want 2000", next-n0)
	}
}

// TestDiscontinuity checks the tag's place and the discontinuity sequence.
func TestDiscontinuity(t *testing.T) {
	frames := synthFrames(2000)
	s := New(Config{Audio: aac48, Window: 3})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	feed(s, aac48, frames, 0, 200, 1000) // 2 segments + 14 frames
	s.Discontinuity()                    // publishes the 14 frames as seg-2
	s.Discontinuity()                    // twice is once
	feed(s, aac48, frames, 200, 400, 900000)

	p := getPlaylist(t, base)
	// seg-0, seg-1 (93), seg-2 (14), seg-3 (93, tagged), seg-4 (93), building.
	if p.mediaSeq != 2 || len(p.segs) != 3 || p.discSeq != 0 {
		t.Fatalf("playlist %+v", p)
	}
	if p.segs[0].disc || !p.segs[1].disc || p.segs[2].disc {
		t.Fatalf("discontinuity tags %+v, want before seg-3 only", p.segs)
	}
	if p.segs[0].ms != (14*1920*1000+45000)/90000 {
		t.Fatalf("segment cut by Discontinuity lasts %d ms", p.segs[0].ms)
	}
	_, _, data := get(t, base+"seg-2.ts")
	if got := demux(t, data); got[len(got)-1].PTS != aac48.FramePTS(1000+199) {
		t.Fatal("seg-2 does not end with the last frame before the break")
	}
	_, _, data = get(t, base+"seg-3.ts")
	if got := demux(t, data); got[0].PTS != aac48.FramePTS(900000+200) {
		t.Fatal("seg-3 does not start with the first frame after the break")
	}
	// A timestamp going back without Discontinuity is a break too.
	feed(s, aac48, frames, 400, 600, 0)
	p = getPlaylist(t, base)
	var tags []int64
	for i, sg := range p.segs {
		if sg.disc {
			tags = append(tags, p.seq(i))
		}
	}
	// seg-5 (14 frames, cut by the break), seg-6 tagged, seg-7; seg-3 is gone.
	if p.mediaSeq != 5 || p.discSeq != 1 || len(tags) != 1 || tags[0] != 6 {
		t.Fatalf("after an implicit break: %+v, tags before %v", p, tags)
	}
	feed(s, aac48, frames, 600, 900, 0)
	if p = getPlaylist(t, base); p.discSeq != 2 {
		t.Fatalf("discontinuity sequence %d once both tagged segments left, want 2", p.discSeq)
	}
	for _, sg := range p.segs {
		if sg.disc {
			t.Fatalf("stale tag: %+v", p)
		}
	}
}

// TestHTTP checks status codes, headers and messages.
func TestHTTP(t *testing.T) {
	s := New(Config{Audio: aac48})
	mux := http.NewServeMux()
	mux.Handle("/live/test/", s) // as the switcher mounts it
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base := srv.URL + "/live/test/"

	code, h, body := get(t, base+"index.m3u8")
	if code != 503 || h.Get("Retry-After") != "2" || h.Get("Cache-Control") != "no-cache" {
		t.Fatalf("playlist before the first segment: %d %v %s", code, h, body)
	}
	if code, _, body = get(t, base+"seg-0.ts"); code != 404 || !strings.Contains(string(body), "does not exist yet") {
		t.Fatalf("future segment: %d %s", code, body)
	}
	frames := synthFrames(93*12 + 1)
	feed(s, aac48, frames, 0, len(frames), 0)
	for _, c := range []struct {
		path, want string
		code       int
	}{
		{"seg-4.ts", "", 200},
		{"seg-11.ts", "", 200},
		{"seg-3.ts", "expired (segments 4 to 11 are available)", 404},
		{"seg-0.ts", "expired", 404},
		{"seg-12.ts", "does not exist yet", 404},
		{"seg-x.ts", "not a segment name", 404},
		{"seg--1.ts", "not a segment name", 404},
		{"playlist.m3u8", "serves index.m3u8 and seg-<n>.ts", 404},
		{"", "serves index.m3u8", 404},
	} {
		code, h, body := get(t, base+c.path)
		if code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.path, code, body, c.code, c.want)
		}
		if code == 200 {
			if h.Get("Cache-Control") != "max-age=16" || h.Get("Content-Length") != strconv.Itoa(len(body)) {
				t.Errorf("%s headers %v", c.path, h)
			}
		}
	}
	resp, err := http.Post(base+"index.m3u8", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	resp, err = http.Head(base + "index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength <= 0 {
		t.Errorf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

// TestConcurrentReaders runs players against a writer under -race. Each
// player polls the playlist and fetches the segments it has not fetched
// yet, as players do: every segment a playlist lists must still be there
// when fetched (the writer, at 50 ms a segment, is 40 times faster than
// real time, yet slow enough for the two retained segments' slack), and
// identical for every player.
func TestConcurrentReaders(t *testing.T) {
	const segments = 40
	frames := synthFrames(93*segments + 1)
	s := New(Config{Audio: aac48})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	feed(s, aac48, frames, 0, 94, 0) // the first segment
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 94; i < len(frames); i++ {
			feed(s, aac48, frames, i, i+1, 0)
			if i%93 == 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		s.Close()
	}()
	var mu sync.Mutex
	seen := map[string][]byte{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			fetched := -1
			for {
				resp, err := http.Get(base + "index.m3u8")
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for l := range strings.Lines(string(body)) {
					l = strings.TrimSpace(l)
					var seq int
					if _, err := fmt.Sscanf(l, "seg-%d.ts", &seq); err != nil || seq <= fetched {
						continue
					}
					resp, err := http.Get(base + l)
					if err != nil {
						errs <- err
						return
					}
					data, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("%s listed but answered %d %s", l, resp.StatusCode, data)
						return
					}
					fetched = seq
					mu.Lock()
					if prev, ok := seen[l]; ok && !bytes.Equal(prev, data) {
						errs <- fmt.Errorf("%s changed between reads", l)
					}
					seen[l] = data
					mu.Unlock()
				}
				if strings.Contains(string(body), "#EXT-X-ENDLIST") {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != segments+1 { // the frame left over is published by Close
		t.Errorf("players saw %d segments, want %d", len(seen), segments+1)
	}
}

// ffprobePTS returns the packet timestamps ffprobe reads from url, failing
// on any message ffprobe prints.
func ffprobePTS(t testing.TB, ffprobe, url string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "packet=pts", "-of", "csv=p=0", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, stderr.Bytes())
	}
	var pts []int64
	for l := range strings.Lines(string(out)) {
		// The first packet of a PES carries side data (its MPEG-TS stream
		// id), which csv prints as an empty field and an empty line.
		f, _, _ := strings.Cut(strings.TrimSpace(l), ",")
		if f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("ffprobe %s: packet pts %q", url, l)
		}
		pts = append(pts, n)
	}
	return pts
}

func ffmpegDecode(t testing.TB, ffmpeg, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-v", "error", "-i", url, "-f", "null", "-").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("ffmpeg decoding %s: %v\n%s", url, err, out)
	}
}

// TestFFmpeg feeds 30 s of real AAC and has ffprobe and ffmpeg read every
// segment and the playlist.
func TestFFmpeg(t *testing.T) {
	ffprobe := testenv.Need(t, "ffprobe")
	ffmpeg := testenv.Need(t, "ffmpeg")
	frames := toneFrames(t)[:1407] // 30.016 s
	const n0 = 4_000_000           // 24 h into the timeline: PTS near the 33-bit wrap is not needed here
	s := New(Config{Audio: aac48})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	feed(s, aac48, frames, 0, len(frames), n0)

	// The live playlist: ffprobe must open it and find the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "csv=p=0", base+"index.m3u8").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "aac,48000,2") || strings.Contains(string(out), "rror") {
		t.Fatalf("ffprobe live playlist: %v: %q", err, out)
	}

	// Every retained segment on its own: no messages, timestamps exact and
	// continuous across segment boundaries.
	p := getPlaylist(t, base)
	next := int64(7 * 93)
	for seq := int64(7); seq <= 14; seq++ {
		pts := ffprobePTS(t, ffprobe, fmt.Sprintf("%sseg-%d.ts", base, seq))
		if len(pts) != 93 {
			t.Fatalf("seg-%d: ffprobe reads %d packets, want 93", seq, len(pts))
		}
		for i, v := range pts {
			if want := aac48.FramePTS(n0 + next); v != want {
				t.Fatalf("seg-%d packet %d: pts %d, want %d", seq, i, v, want)
			}
			next++
		}
	}

	s.Close()
	p = getPlaylist(t, base)
	// The whole closed window through the playlist.
	pts := ffprobePTS(t, ffprobe, base+"index.m3u8")
	wantN := 5*93 + 12
	if len(pts) != wantN {
		t.Fatalf("ffprobe reads %d packets through the playlist, want %d", len(pts), wantN)
	}
	// Through the HLS demuxer ffprobe interpolates the frames of the very
	// first PES one frame late (the parser does not know the frame
	// duration yet): it does the same with ffmpeg's own "-f hls" output,
	// and not when reading the segment alone (checked above). From the
	// second PES on, and across every segment boundary, pts are exact.
	first := n0 + p.mediaSeq*93
	if pts[0] != aac48.FramePTS(first) {
		t.Fatalf("playlist starts at pts %d, want %d", pts[0], aac48.FramePTS(first))
	}
	exactFrom := 0
	for i, v := range pts {
		if v != aac48.FramePTS(first+int64(i)) {
			exactFrom = i + 1
		}
	}
	if exactFrom > 10 {
		t.Fatalf("playlist pts differ from the frames' up to packet %d: %v", exactFrom-1, pts[:exactFrom])
	}
	ffmpegDecode(t, ffmpeg, base+"index.m3u8")
	t.Logf("%d segments of 1.984 s, window %d from seq %d; ffprobe: %d packets, pts %d..%d, exact from packet %d", p.mediaSeq+int64(len(p.segs)), len(p.segs), p.mediaSeq, len(pts), pts[0], pts[len(pts)-1], exactFrom)
}

// TestFFmpegDiscontinuity decodes a playlist with a timeline break.
func TestFFmpegDiscontinuity(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	frames := toneFrames(t)
	s := New(Config{Audio: aac48, Window: 10})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	feed(s, aac48, frames, 0, 300, 10)
	s.Discontinuity()
	feed(s, aac48, frames, 300, 600, 5_000_000)
	s.Close()
	p := getPlaylist(t, base)
	if p.discSeq != 0 || !p.segs[4].disc {
		t.Fatalf("playlist %+v", p)
	}
	ffmpegDecode(t, ffmpeg, base+"index.m3u8")
	if n := len(ffprobePTS(t, ffprobe, base+"index.m3u8")); n != 600 {
		t.Fatalf("ffprobe reads %d packets, want 600", n)
	}
}

func TestDefaults(t *testing.T) {
	s := New(Config{})
	if s.cfg.TargetDuration != 2*time.Second || s.cfg.Window != 6 || s.target != 180000 {
		t.Fatalf("defaults %+v", s.cfg)
	}
	s.WriteFrame(media.Frame{Kind: media.KindVideo, PTS: 1}) // ignored
	s.Close()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/index.m3u8", nil))
	if rec.Code != 404 {
		t.Fatalf("closed without a segment: %d", rec.Code)
	}
}
