// Package encoder turns capture blocks into one feed's AAC frames with one
// ffmpeg process, stamped from the capture sample index.
//
// The technique (productised from uplink/testpub): PCM is written to
// ffmpeg as s16le through a pipe, ADTS is read back, the encoder's first
// frame (its priming) is dropped, and frame k of a process started at
// sample index s (a multiple of 1024) is stamped PTS = FramePTS(s/1024+k−1).
// Two encoders fed from one Capture therefore stamp the same audio with the
// same PTS however far apart they were started, and an encoder restarted
// after a crash continues the same timeline: it starts at the next 1024
// boundary of the blocks it receives.
package encoder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/capture"
	"tandem/uplink/adts"
	"tandem/uplink/media"
)

// Profile is what the encoder makes.
type Profile struct {
	Codec   media.Codec // media.CodecAAC (AAC-LC) only for now
	Bitrate int         // bit/s
	// Format is the PCM format of the blocks the encoder accepts and of the
	// AAC it makes (no resampling: that would break the sample-exact
	// timeline).
	Format capture.Format
}

// ProfileOf validates a feed profile (key names it in errors, e.g.
// capture.KeyPrimary) and converts it.
func ProfileOf(key string, fp capture.FeedProfile) (Profile, error) {
	if err := fp.Validate(key); err != nil {
		return Profile{}, err
	}
	return Profile{Codec: media.CodecAAC, Bitrate: fp.Bitrate, Format: fp.Format()}, nil
}

// States of an Encoder.
const (
	StateIdle       = "idle"       // Run not called yet, or no block yet
	StateRunning    = "running"    // an ffmpeg is encoding
	StateRestarting = "restarting" // ffmpeg died; a new one starts with the next block
	StateFailed     = "failed"     // ffmpeg cannot be started, keeps dying, or the blocks do not fit the profile; retrying
	StateStopped    = "stopped"    // Run returned
)

// Stats is a snapshot of an Encoder.
type Stats struct {
	State string
	// Restarts counts ffmpeg processes started after the first.
	Restarts int64
	// Frames counts frames handed to out.
	Frames int64
	// PaddedFrames counts PCM frames of silence written for gaps in the
	// incoming blocks (a lagging subscription).
	PaddedFrames int64
	// DroppedBlocks counts blocks not encoded: while restarting, or in a
	// format other than the profile's.
	DroppedBlocks int64
	LastError     string
	// PID is the current ffmpeg's process id, 0 if none.
	PID int
	// Since is when the current ffmpeg started.
	Since time.Time
}

// Encoder supervises one feed's ffmpeg.
type Encoder struct {
	name    string
	p       Profile
	ffmpeg  string
	log     *slog.Logger
	cfg     media.AudioConfig
	fs      int64         // samples per frame
	padMax  int64         // largest input gap filled with silence, in frames
	stallAt time.Duration // an ffmpeg that takes no input or makes no frame for this long is killed

	mu    sync.Mutex
	stats Stats

	// lastIdx is the index of the last frame handed to out, per session;
	// only Run's goroutine touches it.
	lastIdx     int64
	lastSession string
	haveLast    bool
	frames      atomic.Int64
}

// New makes an encoder named name (the feed, for logs and errors) running
// ffmpegPath ("" = "ffmpeg" from PATH).
func New(name string, p Profile, ffmpegPath string, log *slog.Logger) *Encoder {
	if ffmpegPath == "" {
		ffmpegPath = "ffmpeg"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Encoder{name: name, p: p, ffmpeg: ffmpegPath, log: log.With("encoder", name),
		cfg: media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: p.Format.SampleRate, Channels: p.Format.Channels},
		// A gap of up to a second (blocks lost by a lagging subscription)
		// is filled with silence; a longer one restarts ffmpeg.
		stallAt: 3 * time.Second,
	}
	e.fs = int64(e.cfg.FrameSamples())
	e.padMax = int64(p.Format.SampleRate)
	e.stats.State = StateIdle
	return e
}

// Config is the AudioConfig of the frames the encoder makes.
func (e *Encoder) Config() media.AudioConfig { return e.cfg }

// Stats returns a snapshot.
func (e *Encoder) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	st.Frames = e.frames.Load()
	return st
}

func (e *Encoder) update(f func(*Stats)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.stats)
}

// Out receives the encoder's frames. more reports that ffmpeg is making
// more frames of the same capture block right now (they follow within a
// few milliseconds), so the receiver may hold f to send them together;
// it is false for the last frame ffmpeg can make from the blocks written
// so far.
type Out func(f media.Frame, more bool)

// Run encodes blocks and calls out with each frame, in PTS order, from
// Run's goroutine, a few milliseconds after the block that completes the
// frame (see collect); out must not block for long (hand the frame to a
// buffered queue): Run writes the next blocks to ffmpeg on the same
// goroutine. Frames are stamped PTS = DTS =
// Config().FramePTS(index/1024) on the session's timeline, not reduced to
// 33 bits (muxers do that). If ffmpeg dies it is restarted with the next
// block on the same timeline, from the next 1024-sample boundary; nothing
// else is touched. Run returns nil when ctx ends (ffmpeg is killed) or
// blocks is closed (ffmpeg is drained first), and an error only for a
// profile it cannot encode.
func (e *Encoder) Run(ctx context.Context, blocks <-chan capture.Block, out Out) error {
	if e.p.Codec != media.CodecAAC {
		err := fmt.Errorf("encoder %s: codec %v not supported (only AAC)", e.name, e.p.Codec)
		e.update(func(s *Stats) { s.State, s.LastError = StateFailed, err.Error() })
		return err
	}
	if err := e.p.Format.Validate(); err != nil {
		err = fmt.Errorf("encoder %s: %w", e.name, err)
		e.update(func(s *Stats) { s.State, s.LastError = StateFailed, err.Error() })
		return err
	}
	r := &run{e: e, ctx: ctx, out: out, delay: initialGatherDelay}
	defer func() {
		r.stop()
		e.update(func(s *Stats) { s.State, s.PID = StateStopped, 0 })
	}()
	watch := time.NewTicker(500 * time.Millisecond)
	defer watch.Stop()
	r.gather = time.NewTimer(time.Hour)
	r.gather.Stop()
	defer r.gather.Stop()
	for {
		var died <-chan struct{}
		if r.p != nil {
			died = r.p.done
		}
		select {
		case <-ctx.Done():
			return nil
		case <-died:
			r.died()
		case <-watch.C:
			r.watchdog()
		case <-r.gather.C:
			r.gatherArmed = false
			r.collect()
		case b, ok := <-blocks:
			if !ok {
				r.drain(5 * time.Second)
				return nil
			}
			r.feed(b)
		}
	}
}

// run is the state of one Run call, owned by its goroutine.
type run struct {
	e   *Encoder
	ctx context.Context
	out Out
	p   *proc

	startedOnce bool
	// hist is the last prerollFrames of the capture timeline (interleaved),
	// ending at histEnd in session histSession: a restarted ffmpeg is fed
	// them first so its first frame sent comes from a warmed-up encoder.
	hist        []int16
	histEnd     int64
	histSession string
	pcm         []byte    // send's buffer: PCM as s16le
	quickDeaths int       // processes in a row that died young
	notBefore   time.Time // backoff: no start before this
	badFormat   bool      // the last block did not fit the profile

	// gather fires when the frames of the last write should all be out
	// (see collect).
	gather      *time.Timer
	gatherArmed bool
	delay       time.Duration // from a write to the first look at its frames
	retries     int           // looks since the last write that found the burst unfinished
}

func (r *run) feed(b capture.Block) {
	e := r.e
	if b.Format != e.p.Format {
		if !r.badFormat {
			r.badFormat = true
			err := fmt.Errorf("encoder %s: capture format %v does not match the feed profile %v", e.name, b.Format, e.p.Format)
			e.log.Error("blocks do not fit the profile; not encoding", "err", err)
			r.stop()
			e.update(func(s *Stats) { s.State, s.LastError, s.PID = StateFailed, err.Error(), 0 })
		}
		e.update(func(s *Stats) { s.DroppedBlocks++ })
		return
	}
	r.badFormat = false
	defer r.remember(b)
	ch := int64(e.p.Format.Channels)
	samples := b.Samples
	index := b.Index
	if p := r.p; p != nil {
		gap := index - p.next
		switch {
		case b.Session != p.session || gap < 0 || gap > e.padMax:
			e.log.Info("timeline discontinuity: restarting ffmpeg", "expected", p.next, "index", index,
				"session", b.Session, "was", p.session)
			r.drain(time.Second) // the old timeline's last frames still go out
		case gap > 0:
			if !r.send(make([]int16, gap*ch), gap) {
				return
			}
			e.update(func(s *Stats) { s.PaddedFrames += gap })
		}
	}
	if r.p == nil {
		if time.Now().Before(r.notBefore) {
			e.update(func(s *Stats) { s.DroppedBlocks++ })
			return
		}
		start := ceilDiv(index, e.fs) * e.fs
		if start >= b.End() {
			return // no frame boundary in this block: wait for the next
		}
		pre := r.preroll(b, start)
		launchAt := start
		if pre != nil {
			launchAt = start - prerollFrames
		}
		if !r.start(b.Session, launchAt, start) {
			return
		}
		if pre != nil && !r.send(pre, prerollFrames) {
			return
		}
		samples = samples[(start-index)*ch:]
	}
	if r.send(samples, int64(len(samples))/ch) {
		r.p.lastIn = time.Now()
		r.retries = 0
		r.armGather(r.delay)
	}
}

// How long after a write its frames are read (see collect): the delay
// adapts between minGatherDelay and maxGatherDelay, a step longer each
// time the burst was not finished at the first look and a tenth of a step
// shorter each time it was, so about one look in ten needs another. A
// look that finds the burst unfinished looks again after gatherRetry,
// doubling up to 16 times that until the next write.
const (
	initialGatherDelay = 5 * time.Millisecond
	minGatherDelay     = 2 * time.Millisecond
	maxGatherDelay     = 20 * time.Millisecond
	gatherStep         = time.Millisecond
	gatherRetry        = 2 * time.Millisecond
)

func (r *run) armGather(d time.Duration) {
	if r.gatherArmed {
		return
	}
	r.gatherArmed = true
	r.gather.Reset(d)
}

// send writes PCM to the current ffmpeg's stdin. Run's goroutine writes
// itself: handing each block to a writer goroutine cost a thread wake-up
// per block and feed, a large part of the daemon's CPU. The pipe holds
// 64 KiB (340 ms of 48 kHz stereo); a write that finds it full (a burst of silence after a
// stall, a slow ffmpeg) waits, and an ffmpeg that takes no input for
// stallAt is killed and restarted. ctx ending releases a waiting write.
func (r *run) send(samples []int16, frames int64) bool {
	p := r.p
	r.pcm = r.pcm[:0]
	for _, v := range samples {
		r.pcm = binary.LittleEndian.AppendUint16(r.pcm, uint16(v))
	}
	// Set before checking ctx: the release on ctx's end sets a past
	// deadline, and must not be overwritten by this one.
	p.stdin.SetWriteDeadline(time.Now().Add(r.e.stallAt))
	if r.ctx.Err() != nil {
		return false
	}
	p.fed = p.next + frames
	_, err := p.stdin.Write(r.pcm)
	switch {
	case err == nil:
		p.next += frames
		return true
	case r.ctx.Err() != nil:
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		err := fmt.Errorf("ffmpeg (pid %d) took no input for %v", p.pid, r.e.stallAt)
		r.e.log.Warn("killing ffmpeg", "err", err)
		p.fail(err)
		p.cmd.Process.Kill()
	default:
		// ffmpeg closed its input or died: Run's loop sees the exit next.
		if p.writeErr == nil {
			p.writeErr = fmt.Errorf("writing PCM to ffmpeg: %w", err)
		}
	}
	return false
}

// prerollFrames is how much audio before its first frame a restarted
// encoder is fed, so the first frame it sends decodes like one from an
// encoder that never stopped. Two frames fill the MDCT overlap, but the
// encoder's transient detection is still settling then: spliced after the
// other feed, one join in twelve jumped 0.38 rad. Eight frames (170 ms at
// 48 kHz) bring every join down to the coding noise (worst 0.08 rad;
// TestRestartPrerollSplicesCleanly).
const prerollFrames = 8192

// remember keeps the tail of the capture timeline for a restart's pre-roll.
func (r *run) remember(b capture.Block) {
	ch := r.e.p.Format.Channels
	if b.Session != r.histSession || b.Index != r.histEnd {
		r.hist = r.hist[:0]
	}
	r.hist = append(r.hist, b.Samples...)
	if keep := prerollFrames * ch; len(r.hist) > keep {
		r.hist = append(r.hist[:0], r.hist[len(r.hist)-keep:]...)
	}
	r.histSession, r.histEnd = b.Session, b.End()
}

// preroll is the audio [start-prerollFrames, start) of block b's timeline,
// or nil when the history does not reach back that far.
func (r *run) preroll(b capture.Block, start int64) []int16 {
	ch := int64(r.e.p.Format.Channels)
	if b.Session != r.histSession || b.Index != r.histEnd {
		return nil
	}
	joined := append(append([]int16(nil), r.hist...), b.Samples[:(start-b.Index)*ch]...)
	if int64(len(joined)) < prerollFrames*ch {
		return nil
	}
	return joined[int64(len(joined))-prerollFrames*ch:]
}

// start launches ffmpeg at sample index launchAt (a multiple of 1024); its
// frames before index sendFrom are pre-roll and are not sent.
func (r *run) start(session string, launchAt, sendFrom int64) bool {
	e := r.e
	p, err := e.launch(r.ctx, session, launchAt)
	if p != nil {
		p.sendFrom = sendFrom / e.fs
	}
	if err != nil {
		e.log.Error("cannot start ffmpeg", "err", err)
		r.quickDeaths++
		r.notBefore = time.Now().Add(backoff(r.quickDeaths))
		e.update(func(s *Stats) { s.State, s.LastError, s.PID = StateFailed, err.Error(), 0 })
		return false
	}
	restart := r.startedOnce
	r.startedOnce = true
	r.p = p
	e.update(func(s *Stats) {
		s.State, s.PID, s.Since = StateRunning, p.pid, p.started
		if restart {
			s.Restarts++
		}
	})
	e.log.Info("ffmpeg started", "pid", p.pid, "session", session, "index", sendFrom, "preroll", sendFrom-launchAt, "restart", restart)
	return true
}

// died handles the current process's exit.
func (r *run) died() {
	e := r.e
	p := r.p
	r.collect() // what it wrote before it exited still goes out
	r.p = nil
	p.closeInput()
	p.closeOutput()
	err := p.exitErr()
	lived := time.Since(p.started)
	if lived < 5*time.Second {
		r.quickDeaths++
	} else {
		r.quickDeaths = 0
	}
	state := StateRestarting
	if r.quickDeaths > 0 {
		r.notBefore = time.Now().Add(backoff(r.quickDeaths))
	}
	if r.quickDeaths >= 3 {
		state = StateFailed
	}
	e.log.Warn("ffmpeg died; restarting on the same timeline", "pid", p.pid, "err", err, "lived", lived.Round(time.Millisecond),
		"retry_in", max(0, time.Until(r.notBefore)).Round(time.Millisecond))
	e.update(func(s *Stats) { s.State, s.LastError, s.PID = state, err.Error(), 0 })
}

// backoff is the delay before starting ffmpeg after n quick failures in a
// row: none for the first (a crash is restarted at once), then 250 ms
// doubling to 5 s.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 250 * time.Millisecond << (n - 2)
	if d > 5*time.Second || d <= 0 {
		d = 5 * time.Second
	}
	return d
}

// watchdog kills an ffmpeg that stopped producing frames while it is
// being fed.
func (r *run) watchdog() {
	p := r.p
	if p == nil {
		return
	}
	last := p.lastOut
	if time.Since(last) < r.e.stallAt || time.Since(p.lastIn) > time.Second {
		return
	}
	err := fmt.Errorf("ffmpeg (pid %d) produced no frame for %v", p.pid, time.Since(last).Round(time.Millisecond))
	r.e.log.Warn("killing stalled ffmpeg", "err", err)
	p.fail(err)
	p.cmd.Process.Kill()
}

// stop ends the current process: killed at once, and waited for.
func (r *run) stop() {
	p := r.p
	if p == nil {
		return
	}
	r.p = nil
	p.cmd.Process.Kill()
	p.closeInput()
	<-p.done
	p.closeOutput()
}

// drain ends the input and lets ffmpeg flush its last frames, waiting at
// most max before killing it.
func (r *run) drain(max time.Duration) {
	p := r.p
	if p == nil {
		return
	}
	p.closeInput()
	t := time.NewTimer(max)
	defer t.Stop()
	poll := time.NewTicker(gatherRetry)
	defer poll.Stop()
wait:
	for {
		select {
		case <-p.done:
			break wait
		case <-poll.C:
			r.collect()
		case <-r.ctx.Done():
			p.cmd.Process.Kill()
			<-p.done
			break wait
		case <-t.C:
			p.cmd.Process.Kill()
			<-p.done
			break wait
		}
	}
	r.collect()
	r.p = nil
	p.closeOutput()
}

// proc is one ffmpeg process.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	session string
	start   int64 // sample index of its first input frame
	// sendFrom is the first frame index sent: earlier ones are pre-roll.
	sendFrom int64
	next     int64 // index after the last frame queued
	// fed is next including the write in progress: a frame ffmpeg makes
	// from that write never finds it behind.
	fed     int64
	started time.Time
	stdin   *os.File // ffmpeg's input, written by Run's goroutine only
	// releaseWrites undoes the hook that ends a waiting write when Run's
	// ctx ends.
	releaseWrites func() bool
	lastIn        time.Time     // when Run last wrote PCM (Run's goroutine only)
	done          chan struct{} // closed once the process has exited
	stderr        *limitedBuffer
	lastOut       time.Time // the last frame out (or the start)

	// ffmpeg's output: a non-blocking pipe that Go's poller does not
	// watch (see collect), the bytes of a frame not complete yet, and how
	// the frames read so far are stamped.
	outFD   int
	outBuf  []byte
	outEnd  bool  // EOF or a read error seen
	readErr error // a failed read
	frameK  int64 // frames read so far, the priming frame included
	lag     lagTracker
	warned  bool

	reason   error // why Run killed it
	writeErr error // the first failed write of PCM
	// waitErr is the process's exit status: the reaper sets it before it
	// closes done. Every other field belongs to Run's goroutine.
	waitErr error
}

// closeInput ends ffmpeg's input (it then flushes and exits).
func (p *proc) closeInput() {
	p.releaseWrites()
	p.stdin.Close()
}

// fail records why Run is about to kill the process.
func (p *proc) fail(err error) {
	if p.reason == nil {
		p.reason = err
	}
}

func (e *Encoder) launch(ctx context.Context, session string, start int64) (*proc, error) {
	f := e.p.Format
	// -probesize/-analyzeduration: raw PCM needs no probing, and with the
	// defaults ffmpeg buffers about a second of input before its first
	// frame (measured: 1.07 s to the first frame, 68 ms with these).
	cmd := exec.Command(e.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "s16le", "-ar", strconv.Itoa(f.SampleRate), "-ac", strconv.Itoa(f.Channels), "-i", "pipe:0",
		"-c:a", "aac", "-b:a", strconv.Itoa(e.p.Bitrate), "-f", "adts", "-flush_packets", "1", "pipe:1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Our own pipe rather than StdinPipe: its write end is pollable, so a
	// write can wait with a deadline in Run's goroutine (see send).
	stdinR, stdin, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("encoder %s: stdin pipe: %w", e.name, err)
	}
	cmd.Stdin = stdinR
	// The output pipe's read end stays a bare descriptor: registered with
	// Go's poller, every frame ffmpeg writes would wake a thread (see
	// collect).
	var outFDs [2]int
	if err := syscall.Pipe2(outFDs[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		stdinR.Close()
		stdin.Close()
		return nil, fmt.Errorf("encoder %s: stdout pipe: %w", e.name, err)
	}
	stdoutW := os.NewFile(uintptr(outFDs[1]), "ffmpeg stdout")
	// The child's end blocks: ffmpeg expects that of its output.
	if err := syscall.SetNonblock(outFDs[1], false); err != nil {
		stdinR.Close()
		stdin.Close()
		stdoutW.Close()
		syscall.Close(outFDs[0])
		return nil, fmt.Errorf("encoder %s: stdout pipe: %w", e.name, err)
	}
	cmd.Stdout = stdoutW
	p := &proc{cmd: cmd, session: session, start: start, next: start, fed: start, started: time.Now(),
		stdin: stdin, done: make(chan struct{}), stderr: &limitedBuffer{max: 2048},
		outFD: outFDs[0], outBuf: make([]byte, 0, 16<<10)}
	cmd.Stderr = p.stderr
	err = cmd.Start()
	stdinR.Close() // the child has its copies
	stdoutW.Close()
	if err != nil {
		stdin.Close()
		syscall.Close(p.outFD)
		return nil, fmt.Errorf("encoder %s: start %s: %w", e.name, e.ffmpeg, err)
	}
	p.releaseWrites = context.AfterFunc(ctx, func() { stdin.SetWriteDeadline(time.Unix(1, 0)) })
	p.pid = cmd.Process.Pid
	p.lastOut = p.started
	p.lastIn = p.started
	if !e.haveLast || session != e.lastSession {
		e.haveLast, e.lastSession, e.lastIdx = true, session, start/e.fs-1
	}
	go func() { // reaper
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exitErr says how the process ended; Run calls it once done is closed
// and the output is read.
func (p *proc) exitErr() error {
	msg := strings.TrimSpace(p.stderr.String())
	switch {
	case p.reason != nil:
		return p.reason
	case p.waitErr != nil && msg != "":
		return fmt.Errorf("ffmpeg exited: %v: %s", p.waitErr, msg)
	case p.waitErr != nil:
		return fmt.Errorf("ffmpeg exited: %w", p.waitErr)
	case p.readErr != nil:
		return fmt.Errorf("reading ffmpeg's output: %w", p.readErr)
	case p.writeErr != nil:
		return fmt.Errorf("ffmpeg exited: %w", p.writeErr)
	}
	return errors.New("ffmpeg exited")
}

// closeOutput releases the output pipe once the process is gone.
func (p *proc) closeOutput() {
	if p.outFD >= 0 {
		syscall.Close(p.outFD)
		p.outFD = -1
	}
}

// collect reads what the current ffmpeg has written and delivers its whole
// frames. Run's goroutine calls it a gather delay after each write, not when
// the data arrives: ffmpeg writes each frame of a block as soon as it is
// encoded, and waking for each cost a thread wake-up and a round of Go's
// sysmon per frame, the largest share of the daemon's CPU. If the lag
// says the burst is not finished (or nothing came yet), it looks again
// after gatherRetry, doubling up to 16 times that until the next write;
// the watchdog deals with an ffmpeg that stops.
func (r *run) collect() {
	p := r.p
	if p == nil || p.outEnd {
		return
	}
	for {
		if len(p.outBuf) == cap(p.outBuf) {
			p.outBuf = append(p.outBuf, make([]byte, cap(p.outBuf))...)[:len(p.outBuf)]
		}
		room := p.outBuf[len(p.outBuf):cap(p.outBuf)]
		n, err := syscall.Read(p.outFD, room)
		if err == syscall.EINTR {
			continue
		}
		if n > 0 {
			p.outBuf = p.outBuf[:len(p.outBuf)+n]
			if n == len(room) {
				continue // maybe more
			}
			break
		}
		if err == syscall.EAGAIN {
			break
		}
		p.outEnd = true // EOF, or a failed read
		if err != nil {
			p.readErr = err
		}
		break
	}
	frames, rest, err := adts.Split(p.outBuf)
	more := false
	for _, fr := range frames {
		more = r.deliver(p, fr)
	}
	p.outBuf = p.outBuf[:copy(p.outBuf, rest)]
	if err != nil && !p.outEnd {
		err = fmt.Errorf("ffmpeg's output is not ADTS: %w", err)
		r.e.log.Error("killing ffmpeg", "err", err)
		p.outEnd = true
		p.fail(err)
		p.cmd.Process.Kill()
		return
	}
	if p.outEnd {
		return
	}
	if len(frames) > 0 && !more {
		// The burst is out. Found at the first look: try a little sooner
		// next time.
		if r.retries == 0 {
			r.delay = max(r.delay-gatherStep/10, minGatherDelay)
		}
		return
	}
	if len(frames) > 0 && r.retries == 0 {
		r.delay = min(r.delay+gatherStep, maxGatherDelay)
	}
	r.armGather(gatherRetry << min(r.retries, 4))
	r.retries++
}

// deliver stamps one ADTS frame (header included) of p and hands it out.
// It reports whether more frames of the same burst are to come.
func (r *run) deliver(p *proc, frame []byte) bool {
	e := r.e
	h, err := adts.ParseHeader(frame)
	if err != nil {
		return false // Split parsed it already
	}
	now := time.Now()
	p.lastOut = now
	k := p.frameK
	p.frameK++
	// Frame k of the process covers capture samples start+(k−1)·1024: the
	// first frame is the encoder's priming and is not sent.
	if k == 0 {
		return true
	}
	idx := p.start/e.fs - 1 + k
	if idx <= e.lastIdx || idx < p.sendFrom {
		return true // never a timestamp twice; pre-roll is not sent
	}
	if h.Config.SampleRate != e.cfg.SampleRate || h.Config.Channels != e.cfg.Channels {
		if !p.warned {
			p.warned = true
			e.log.Error("ffmpeg produced another format than asked", "got", h.Config, "want", e.cfg)
		}
	}
	e.lastIdx = idx
	pts := e.cfg.FramePTS(idx)
	e.frames.Add(1)
	more := !p.lag.isLast(now, p.fed/e.fs-idx)
	r.out(media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: append([]byte(nil), frame[h.HeaderLength:]...)}, more)
	return more
}

// lagTracker tells the last frame of a burst. A frame's lag is how many
// frames of input ffmpeg had been given beyond it when it came out. ffmpeg
// holds back a fixed number (measured: 3 with Debian's ffmpeg 5.1), so
// the frames a block of four makes come out with lags 6, 5, 4, 3: the one
// at the smallest lag is the last it can make until the next block. The
// smallest lag is learnt over the current and the previous second. A
// burst that ends on a frame marked as more (a stray smaller lag was
// learnt) is seen when the next burst starts, at a larger lag: the lag it
// ended at becomes the smallest. Until then its frames wait in the sender
// (BurstWait), once.
type lagTracker struct {
	cur, prev int64
	since     time.Time
	last      int64 // the previous frame's lag
	lastMore  bool  // and whether it was marked as more
}

func (l *lagTracker) isLast(now time.Time, lag int64) bool {
	switch {
	case l.since.IsZero():
		l.cur, l.prev, l.since = lag, lag, now
	case l.lastMore && lag > l.last:
		l.cur, l.prev = l.last, l.last
	}
	if now.Sub(l.since) >= time.Second {
		l.prev, l.cur, l.since = l.cur, lag, now
	}
	l.cur = min(l.cur, lag)
	last := lag <= min(l.cur, l.prev)
	l.last, l.lastMore = lag, !last
	return last
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}

// limitedBuffer keeps the first max bytes written (ffmpeg's complaints).
type limitedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
