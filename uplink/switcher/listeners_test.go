package switcher_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/scripts/logbuf"
	"tandem/uplink/icy"
	"tandem/uplink/srt"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// icyListener is a raw ICY client: it asks for metadata, strips every
// block (checking each byte for byte) and keeps the audio and the titles.
type icyListener struct {
	resp    *http.Response
	metaInt int
	mu      sync.Mutex
	audio   []byte
	titles  []string
	reader  *icy.Reader
	err     error
	done    chan struct{}
	conn    net.Conn
}

func listenICY(t *testing.T, addr, path string) *icyListener {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\nIcy-MetaData: 1\r\nUser-Agent: icy-test\r\n\r\n", path, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Fatalf("ICY listener: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		t.Fatalf("ICY listener: %s", resp.Status)
	}
	l := &icyListener{resp: resp, done: make(chan struct{}), conn: c}
	fmt.Sscan(resp.Header.Get("icy-metaint"), &l.metaInt)
	if l.metaInt <= 0 {
		c.Close()
		t.Fatalf("no icy-metaint in %v", resp.Header)
	}
	l.reader = icy.NewReader(br, l.metaInt)
	l.reader.OnTitle = func(s string) {
		l.mu.Lock()
		l.titles = append(l.titles, s)
		l.mu.Unlock()
	}
	go func() {
		defer close(l.done)
		buf := make([]byte, 4096)
		for {
			n, err := l.reader.Read(buf)
			l.mu.Lock()
			l.audio = append(l.audio, buf[:n]...)
			if err != nil {
				l.err = err
			}
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *icyListener) stop() { l.conn.Close(); <-l.done }

func (l *icyListener) lastTitle() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.titles) == 0 {
		return "<none>"
	}
	return l.titles[len(l.titles)-1]
}

func adminMetadata(t *testing.T, base, user, pass, mount, song string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/admin/metadata?mode=updinfo&mount="+url.QueryEscape(mount)+"&song="+url.QueryEscape(song), nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestICYMetadataReachesListenersWithoutCorruptingAudio(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Streams = map[string]switcher.StreamConfig{"live/radio": {Key: "radiopass1"}}
		// A small interval puts blocks inside frames, between them and at
		// their first byte many times a second.
		c.ICYMetaInt = 1000
	})
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	toneSource(t, "icecast://source:radiopass1@"+addr+"/radio.aac", 440, "adts", "-content_type", "audio/aac",
		"-ice_name", "Tandem Radio", "-ice_description", "Always on air", "-ice_genre", "Jazz", "-ice_url", "http://radio.example/")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/radio")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("stream did not go online")
	}

	l := listenICY(t, addr, "/radio.aac")
	for k, want := range map[string]string{
		"Content-Type": "audio/aac", "icy-name": "Tandem Radio", "icy-description": "Always on air",
		"icy-genre": "Jazz", "icy-url": "http://radio.example/", "icy-pub": "0", "icy-metaint": "1000",
	} {
		if got := l.resp.Header.Get(k); got != want {
			t.Errorf("response header %s = %q, want %q", k, got, want)
		}
	}
	// A plain listener gets no metadata and no icy-metaint.
	plain := e2e.Listen(t, base+"/live/radio.aac", nil)

	time.Sleep(time.Second)
	if code := adminMetadata(t, base, "source", "wrong-pass", "/radio.aac", "Nope"); code != http.StatusUnauthorized {
		t.Errorf("metadata update with a wrong password: HTTP %d, want 401", code)
	}
	if code := adminMetadata(t, base, "source", "radiopass1", "/radio.aac", "First Song – Ünïcode"); code != http.StatusOK {
		t.Fatalf("metadata update: HTTP %d", code)
	}
	if !e2e.WaitFor(5*time.Second, func() bool { return l.lastTitle() == "First Song – Ünïcode" }) {
		t.Fatalf("title not seen by the listener: last %q", l.lastTitle())
	}
	// The fallback mount's title belongs to the stream's fallback input:
	// not heard while the primary is on air, and no stream of its own.
	if code := adminMetadata(t, base, "source", "radiopass1", "/radio_fallback.aac", "Backup Title"); code != http.StatusOK {
		t.Fatalf("fallback metadata update: HTTP %d", code)
	}
	resp, err := http.Post(base+"/api/v1/streams/live/radio/metadata", "application/json", strings.NewReader(`{"title":"Operator's Title"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST metadata: %s", resp.Status)
	}
	if !e2e.WaitFor(5*time.Second, func() bool { return l.lastTitle() == "Operator's Title" }) {
		t.Fatalf("API title not seen: last %q", l.lastTitle())
	}
	resp, _ = http.Post(base+"/api/v1/streams/live/radio/metadata", "application/json", strings.NewReader(`{"tittle":"x"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST metadata with a misspelt key: %s, want 400", resp.Status)
	}
	resp.Body.Close()
	time.Sleep(time.Second)
	streams := e2e.GetStreams(t, base, nil)
	if st := e2e.FindStream(streams, "live/radio"); st == nil || st.Output.Title != "Operator's Title" {
		t.Errorf("API status title: %+v", st)
	}
	if e2e.FindStream(streams, "live/radio_fallback") != nil || len(streams.Streams) != 1 {
		t.Errorf("the fallback's metadata made a stream of its own: %+v", streams.Streams)
	}

	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil && !strings.Contains(l.err.Error(), "closed") {
		t.Errorf("ICY stream broke: %v", l.err)
	}
	t.Logf("ICY listener: %d audio bytes, %d blocks (%d empty), titles %q", len(l.audio), l.reader.Blocks, l.reader.Empty, l.titles)
	want := []string{"", "First Song – Ünïcode", "Operator's Title"}
	if strings.Join(l.titles, "|") != strings.Join(want, "|") {
		t.Errorf("titles %q, want %q (each once: unchanged metadata is a zero-length block)", l.titles, want)
	}
	if l.reader.Blocks < len(l.audio)/1000-1 {
		t.Errorf("%d blocks in %d bytes at metaint 1000", l.reader.Blocks, len(l.audio))
	}
	// With the blocks removed, the audio must be whole ADTS frames that
	// decode with zero errors.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pcm, err := testpub.DecodeToMono(ctx, e2e.Need(t, "ffmpeg"), l.audio, 48000)
	if err != nil {
		t.Fatalf("ICY listener's audio: %v", err)
	}
	if r := testpub.AnalyzeTone(pcm, 48000, 440); r.PhaseJumps != 0 {
		t.Errorf("ICY listener's tone: %v", r)
	}
	frames, _, err := plain.Stop()
	if err != nil {
		t.Errorf("plain listener: %v", err)
	}
	if len(frames) < 100 {
		t.Errorf("plain listener got %d frames", len(frames))
	}
}

// ffmpeg and ffprobe, as players, read the ICY title and headers.
func TestFFmpegReadsICYMetadata(t *testing.T) {
	ffprobe := e2e.Need(t, "ffprobe")
	srv := startSwitcher(t, nil)
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	toneSource(t, "icecast://source:any@"+addr+"/probe.aac", 440, "adts", "-content_type", "audio/aac", "-ice_name", "Probe FM")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/probe")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("stream did not go online")
	}
	if code := adminMetadata(t, base, "source", "any", "/probe.aac", "Probe Song"); code != http.StatusOK {
		t.Fatalf("metadata update: HTTP %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-icy", "1",
		"-show_entries", "format_tags", "-of", "default=nw=1", base+"/probe.aac").CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	t.Logf("ffprobe:\n%s", out)
	for _, want := range []string{"TAG:icy-name=Probe FM", "TAG:StreamTitle=Probe Song"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ffprobe does not show %s", want)
		}
	}
	// ffmpeg as a player strips the blocks itself and decodes cleanly.
	out, err = exec.CommandContext(ctx, e2e.Need(t, "ffmpeg"), "-hide_banner", "-nostdin", "-v", "error", "-icy", "1",
		"-i", base+"/probe.aac", "-t", "3", "-f", "null", "-").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("ffmpeg -icy 1 decoding: %v: %s", err, out)
	}
}

func TestListenerCaps(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.MaxListeners = 3
		c.Streams = map[string]switcher.StreamConfig{"live/small": {MaxListeners: 2}, "live/big": {}}
	})
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	icecastSource(t, "icecast://source:x@"+addr+"/small.aac", 440)
	icecastSource(t, "icecast://source:x@"+addr+"/big.aac", 660)
	if !e2e.WaitFor(15*time.Second, func() bool {
		s := e2e.GetStreams(t, base, nil)
		a, b := e2e.FindStream(s, "live/small"), e2e.FindStream(s, "live/big")
		return a != nil && b != nil && a.State == "online" && b.State == "online"
	}) {
		t.Fatal("streams did not go online")
	}
	refused := func(path, wantBody string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), wantBody) {
			t.Errorf("listener over a cap on %s: %s %q, want 403 %q", path, resp.Status, body, wantBody)
		}
	}
	a := e2e.Listen(t, base+"/small.aac", nil)
	e2e.Listen(t, base+"/small.aac", nil)
	refused("/small.aac", "max listeners reached")
	e2e.Listen(t, base+"/big.aac", nil)
	refused("/big.aac", "server listener limit reached")

	metrics, err := e2e.HTTPGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`tandem_http_listeners 3`, `tandem_max_listeners 3`,
		`tandem_stream_http_listeners{stream="live/small"} 2`,
		`tandem_stream_max_listeners{stream="live/small"} 2`,
		`tandem_stream_listeners_refused_total{stream="live/small"} 1`,
		`tandem_stream_listeners_refused_total{stream="live/big"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/small")
	if st.Output.HTTPListeners != 2 || st.Output.MaxListeners != 2 || st.Output.ListenersRefused != 1 {
		t.Errorf("API output: %+v", st.Output)
	}
	// A listener that leaves frees its place.
	a.Close()
	if !e2e.WaitFor(5*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, base, nil), "live/small").Output.HTTPListeners == 1
	}) {
		t.Fatal("the closed listener is still counted")
	}
	again := e2e.Listen(t, base+"/small.aac", nil)

	// SRT pulls count against the same caps: refused in the handshake as
	// an overload while the stream is full, admitted when a place frees.
	pull := func() (*srt.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srt.Dial(ctx, srv.SRTAddr().String(), srt.Options{StreamID: "#!::r=live/small,m=request"})
	}
	var rej *srt.Error
	if c, err := pull(); err == nil {
		c.Close()
		t.Error("an SRT pull over the stream's cap was accepted")
	} else if !errors.As(err, &rej) || rej.Reject != srt.RejectOverload {
		t.Errorf("an SRT pull over the cap failed with %v, want reject code %d (overload)", err, srt.RejectOverload)
	}
	again.Close()
	if !e2e.WaitFor(5*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, base, nil), "live/small").Output.HTTPListeners <= 1
	}) {
		t.Fatal("the closed listener is still counted")
	}
	c, err := pull()
	if err != nil {
		t.Fatalf("an SRT pull with a place free: %v", err)
	}
	defer c.Close()
	if !e2e.WaitFor(5*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, base, nil), "live/small").Output.Listeners == 2
	}) {
		t.Errorf("the SRT pull is not counted: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/small").Output)
	}
	refused("/small.aac", "max listeners reached") // the pull holds the second place
}

func TestListenerSettingsFromEnvironmentAreValidated(t *testing.T) {
	c, err := switcher.LoadConfig("", []string{"TANDEM_SWITCHER_MAX_LISTENERS=500", "TANDEM_SWITCHER_ICY_METAINT=8192", "TANDEM_SWITCHER_LISTENER_WRITE_INTERVAL=200ms"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxListeners != 500 || c.ICYMetaInt != 8192 || c.ListenerWriteInterval != switcher.Duration(200*time.Millisecond) {
		t.Errorf("parsed %d %d %v", c.MaxListeners, c.ICYMetaInt, c.ListenerWriteInterval)
	}
	for env, key := range map[string]string{
		"TANDEM_SWITCHER_MAX_LISTENERS=-1":           "max_listeners",
		"TANDEM_SWITCHER_ICY_METAINT=10":             "icy_metaint",
		"TANDEM_SWITCHER_LISTENER_WRITE_INTERVAL=2s": "listener_write_interval",
		"TANDEM_SWITCHER_MAX_LISTENERS=lots":         "TANDEM_SWITCHER_MAX_LISTENERS",
	} {
		if _, err := switcher.LoadConfig("", []string{env}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v, want one naming %s", env, err, key)
		}
	}
	bad := switcher.DefaultConfig()
	bad.Streams = map[string]switcher.StreamConfig{"live/x": {MaxListeners: -3}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "streams.live/x.max_listeners") {
		t.Errorf("negative stream cap: %v", err)
	}
}

// A listener that connects and never reads fills its socket, is dropped
// with a log line once a write has blocked for the write timeout, and the
// stream's other listener plays on undisturbed.
func TestListenerThatNeverReadsIsDroppedAlone(t *testing.T) {
	var logs logbuf.Buffer
	srv := startSwitcherLogging(t, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	// A high bitrate fills the stuck listener's socket buffers sooner.
	toneSourceAt(t, "icecast://source:x@"+addr+"/stuck.aac", 440, "320k", "adts", "-content_type", "audio/aac")
	good := e2e.Listen(t, base+"/stuck.aac", nil)

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		// A small receive window, so the server's writes block soon.
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	stuck, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /stuck.aac HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	if !e2e.WaitFor(5*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, base, nil), "live/stuck").Output.HTTPListeners == 2
	}) {
		t.Fatal("the stuck listener was not admitted")
	}
	if !e2e.WaitFor(40*time.Second, func() bool {
		return strings.Contains(logs.String(), "listener dropped: it stopped reading")
	}) {
		t.Fatalf("the listener that never reads was not dropped; log:\n%s", logs.String())
	}
	if !e2e.WaitFor(5*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, base, nil), "live/stuck").Output.HTTPListeners == 1
	}) {
		t.Error("the dropped listener is still counted")
	}
	time.Sleep(time.Second)
	frames, arrived, err := good.Stop()
	if err != nil {
		t.Fatalf("the other listener dropped: %v", err)
	}
	// It kept receiving all along: no gap longer than a write interval
	// plus scheduling slack.
	for i := 1; i < len(arrived); i++ {
		if gap := arrived[i].Sub(arrived[i-1]); gap > 1500*time.Millisecond {
			t.Errorf("the other listener waited %v for frame %d", gap, i)
		}
	}
	if r := e2e.ToneOf(t, frames, 440); r.PhaseJumps != 0 {
		t.Errorf("the other listener's audio: %v", r)
	}
}

// An RTMP publisher's onMetaData title is the stream's title.
func TestRTMPTitleReachesListeners(t *testing.T) {
	srv := startSwitcher(t, nil)
	addr := srv.HTTPAddr().String()
	toneSource(t, "rtmp://"+srv.RTMPAddr().String()+"/live/rt", 440, "flv", "-metadata", "title=RTMP Show")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, "http://"+addr, nil), "live/rt")
		return st != nil && st.State == "online" && st.Output.Title == "RTMP Show"
	}) {
		t.Fatalf("RTMP title not taken: %+v", e2e.FindStream(e2e.GetStreams(t, "http://"+addr, nil), "live/rt"))
	}
	l := listenICY(t, addr, "/live/rt.aac")
	if !e2e.WaitFor(5*time.Second, func() bool { return l.lastTitle() == "RTMP Show" }) {
		t.Errorf("ICY listener's title %q", l.lastTitle())
	}
}

// TestListenersAreBatchedOnlyWhenMany: a few listeners get each frame as
// it is emitted; above listener_batch_above the server writes them once
// per listener_write_interval.
func TestListenersAreBatchedOnlyWhenMany(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.ListenerBatchAbove = 2
		c.ListenerWriteInterval = switcher.Duration(500 * time.Millisecond)
	})
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	icecastSource(t, "icecast://source:x@"+addr+"/batch.aac", 440)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/batch")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("stream did not go online")
	}
	// longGaps counts the pauses of over 250 ms between frames after the
	// connect burst: none when every frame is written as it is emitted,
	// about two a second when listeners are written every 500 ms.
	longGaps := func(l *e2e.Listener) (gaps, frames int) {
		t.Helper()
		fs, at, err := l.Stop()
		if err != nil {
			t.Fatal(err)
		}
		for i := 25; i < len(at); i++ {
			if at[i].Sub(at[i-1]) > 250*time.Millisecond {
				gaps++
			}
		}
		return gaps, len(fs)
	}

	alone := e2e.Listen(t, base+"/batch.aac", nil)
	time.Sleep(3 * time.Second)
	if gaps, n := longGaps(alone); gaps > 0 {
		t.Errorf("a lone listener got its %d frames with %d pauses over 250 ms: it should get each frame at once", n, gaps)
	}

	crowd := []*e2e.Listener{e2e.Listen(t, base+"/batch.aac", nil), e2e.Listen(t, base+"/batch.aac", nil)}
	watched := e2e.Listen(t, base+"/batch.aac", nil) // the third: above the threshold
	time.Sleep(3 * time.Second)
	gaps, n := longGaps(watched)
	if gaps < 3 {
		t.Errorf("with 3 listeners (threshold 2) a listener got %d frames with %d pauses over 250 ms, want writes every 500 ms", n, gaps)
	}
	if n < 3*47-30 {
		t.Errorf("a batched listener got only %d frames in 3 s", n)
	}
	for _, l := range crowd {
		l.Close()
	}
}
