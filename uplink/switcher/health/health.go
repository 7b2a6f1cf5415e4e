// Package health judges one switcher input from what is observed about it:
// frame arrivals, its transport's statistics, its audio levels and its
// video state. Each signal has its own threshold; the verdict is Healthy,
// Degraded or Failed with human-readable reasons.
//
// Like the merge, the package does no I/O and reads no clock: every
// observation and every evaluation carries its time, so a scenario replays
// exactly in tests. An Input is owned by one goroutine (the stream's).
package health

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// State is an input's overall health.
type State int

const (
	Healthy State = iota
	Degraded
	Failed
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Thresholds say when each signal makes an input degraded or failed.
// A zero field takes the default documented on it; a negative one turns
// that signal off — except SilenceDBFS, which is a level (turn silence off
// with a negative SilenceFor).
type Thresholds struct {
	// Stall: no frame for this long → failed. Default 500 ms.
	Stall time.Duration
	// BitrateDropPercent: the last whole second's bitrate below
	// (100-x)% of the input's own baseline → degraded. The baseline is the
	// median of the per-second rates over the last 30 s and is used only
	// once 10 s of history exist. Default 50.
	BitrateDropPercent float64
	// LossPercent: SRT receive loss (new lost packets / new received
	// packets) over the last 5 s above this → degraded; above 3× → failed.
	// Default 5.
	LossPercent float64
	// RetransPercent: retransmitted / received packets over the last 5 s
	// above this → degraded. Default 20.
	RetransPercent float64
	// RTT: the last SRT round-trip time above this → degraded. Default 500 ms.
	RTT time.Duration
	// SilenceDBFS and SilenceFor: every channel's RMS level below
	// SilenceDBFS for SilenceFor → failed. Defaults -50 dBFS and 2 s.
	SilenceDBFS float64
	SilenceFor  time.Duration
	// ImbalanceDB and ImbalanceFor: |left-right| RMS above ImbalanceDB for
	// ImbalanceFor → degraded (not while both channels are silent).
	// Defaults 20 dB and 5 s.
	ImbalanceDB  float64
	ImbalanceFor time.Duration
	// FrozenVideoFor and BlackVideoFor: the video reported frozen (black)
	// for this long → failed. Defaults 2 s each.
	FrozenVideoFor time.Duration
	BlackVideoFor  time.Duration
	// Stale: a level, video or SRT observation older than this no longer
	// counts (a source that stopped reporting is not judged on its last
	// report). Default 5 s.
	Stale time.Duration
}

// Defaults for Thresholds.
const (
	DefaultStall              = 500 * time.Millisecond
	DefaultBitrateDropPercent = 50
	DefaultLossPercent        = 5
	DefaultRetransPercent     = 20
	DefaultRTT                = 500 * time.Millisecond
	DefaultSilenceDBFS        = -50
	DefaultSilenceFor         = 2 * time.Second
	DefaultImbalanceDB        = 20
	DefaultImbalanceFor       = 5 * time.Second
	DefaultFrozenVideoFor     = 2 * time.Second
	DefaultBlackVideoFor      = 2 * time.Second
	DefaultStale              = 5 * time.Second
)

// Fixed windows of the rate signals.
const (
	// BaselineWindow is how far back the bitrate baseline looks.
	BaselineWindow = 30 * time.Second
	// BaselineMinHistory is how much history the baseline needs first.
	BaselineMinHistory = 10 * time.Second
	// SRTWindow is the span SRT loss and retransmissions are measured over.
	SRTWindow = 5 * time.Second
)

// DefaultThresholds returns every default.
func DefaultThresholds() Thresholds { return Thresholds{}.withDefaults() }

func (t Thresholds) withDefaults() Thresholds {
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	num := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&t.Stall, DefaultStall)
	num(&t.BitrateDropPercent, DefaultBitrateDropPercent)
	num(&t.LossPercent, DefaultLossPercent)
	num(&t.RetransPercent, DefaultRetransPercent)
	dur(&t.RTT, DefaultRTT)
	num(&t.SilenceDBFS, DefaultSilenceDBFS)
	dur(&t.SilenceFor, DefaultSilenceFor)
	num(&t.ImbalanceDB, DefaultImbalanceDB)
	dur(&t.ImbalanceFor, DefaultImbalanceFor)
	dur(&t.FrozenVideoFor, DefaultFrozenVideoFor)
	dur(&t.BlackVideoFor, DefaultBlackVideoFor)
	dur(&t.Stale, DefaultStale)
	return t
}

// Validate reports thresholds that cannot mean anything, naming the field.
func (t Thresholds) Validate() error {
	if t.BitrateDropPercent >= 100 {
		return fmt.Errorf("health: bitrate_drop_percent %v: must be below 100", t.BitrateDropPercent)
	}
	if t.SilenceDBFS > 0 {
		return fmt.Errorf("health: silence_dbfs %v: a level in dBFS is at most 0", t.SilenceDBFS)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"bitrate_drop_percent", t.BitrateDropPercent}, {"loss_percent", t.LossPercent}, {"retrans_percent", t.RetransPercent}, {"imbalance_db", t.ImbalanceDB}, {"silence_dbfs", t.SilenceDBFS}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("health: %s: not a number", f.name)
		}
	}
	return nil
}

// Health is an input's verdict.
type Health struct {
	State State
	// Reasons name each signal past its threshold with its value and the
	// threshold, the failing ones first, e.g.
	// "silence: every channel below -50 dBFS for 2.0s". Empty when healthy.
	Reasons []string
	// Since is when the input entered State: the moment the first signal
	// crossed its threshold, or for Healthy the evaluation that saw it.
	Since time.Time
}

func (h Health) String() string {
	if len(h.Reasons) == 0 {
		return h.State.String()
	}
	return fmt.Sprintf("%s (%s)", h.State, joinReasons(h.Reasons))
}

func joinReasons(rs []string) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += "; "
		}
		s += r
	}
	return s
}

// levelFloor replaces -Inf and NaN levels (the telemetry floor).
const levelFloor = -200.0

type srtSample struct {
	t                   time.Time
	recv, loss, retrans int64
	rtt                 time.Duration
}

// Input is the health state of one input. It is not safe for concurrent
// use: one goroutine owns it.
type Input struct {
	th Thresholds

	connected   bool
	connectedAt time.Time
	disconnAt   time.Time

	lastFrame time.Time
	hasFrame  bool

	// Bitrate: 1 s buckets counted from epoch (the first frame of the
	// connection). hist holds the bytes of the last completed seconds,
	// oldest first; completed counts every completed second.
	epoch     time.Time
	bucket    int64
	bytes     int64
	hist      []int64
	completed int64

	srt []srtSample

	levelsAt    time.Time
	hasLevels   bool
	silent      bool
	silentSince time.Time
	// quietAt is the last report that was silent; quietEnd the last that
	// was not (sound: a back-dated silence cannot begin before it).
	quietAt     time.Time
	quietEnd    time.Time
	hasQuietEnd bool
	imbalanced  bool
	imbSince    time.Time
	imbDB       float64

	videoAt     time.Time
	hasVideo    bool
	frozen      bool
	frozenSince time.Time
	black       bool
	blackSince  time.Time
	// movingAt and pictureAt are the last reports of a moving, and of a
	// non-black, picture.
	movingAt  time.Time
	pictureAt time.Time

	evaluated bool
	lastEval  time.Time
	last      Health
	lastKeys  []string
}

// New makes the health state of one input, disconnected until Connected
// or its first Frame.
func New(th Thresholds) *Input {
	return &Input{th: th.withDefaults()}
}

// Thresholds returns the thresholds in use, defaults filled in.
func (in *Input) Thresholds() Thresholds { return in.th }

// Connected records that the input connected (up) or went away. Going
// away, or coming back, forgets everything observed about the previous
// connection.
func (in *Input) Connected(now time.Time, up bool) {
	if up == in.connected {
		return
	}
	in.reset()
	in.connected = up
	if up {
		in.connectedAt = now
	} else {
		in.disconnAt = now
	}
}

func (in *Input) reset() {
	in.hasFrame = false
	in.hist = in.hist[:0]
	in.completed = 0
	in.bytes = 0
	in.srt = in.srt[:0]
	in.hasLevels, in.silent, in.imbalanced = false, false, false
	in.quietAt, in.hasQuietEnd = time.Time{}, false
	in.hasVideo, in.frozen, in.black = false, false, false
	in.movingAt, in.pictureAt = time.Time{}, time.Time{}
}

// Frame records one audio frame of the given size. A frame from an input
// not known to be connected connects it.
func (in *Input) Frame(now time.Time, bytes int) {
	if !in.connected {
		in.Connected(now, true)
	}
	if !in.hasFrame {
		in.epoch, in.bucket, in.bytes = now, 0, 0
	}
	in.hasFrame = true
	if now.After(in.lastFrame) {
		in.lastFrame = now
	}
	in.roll(now)
	in.bytes += int64(bytes)
}

// roll closes the 1 s buckets that ended by now; seconds without a frame
// count as zero.
func (in *Input) roll(now time.Time) {
	if !in.hasFrame {
		return
	}
	k := int64(now.Sub(in.epoch) / time.Second)
	if k <= in.bucket {
		return
	}
	// The open bucket is now complete; any further ones saw no frame.
	in.push(in.bytes)
	in.bytes = 0
	zeros := k - in.bucket - 1
	in.completed += zeros
	for i := int64(0); i < min(zeros, int64(BaselineWindow/time.Second)); i++ {
		in.hist = append(in.hist, 0)
	}
	if keep := int(BaselineWindow / time.Second); len(in.hist) > keep {
		in.hist = append(in.hist[:0], in.hist[len(in.hist)-keep:]...)
	}
	in.bucket = k
}

func (in *Input) push(v int64) {
	in.hist = append(in.hist, v)
	in.completed++
}

// SRT records a sample of the input's SRT counters (cumulative totals, as
// libsrt reports them), taken about once a second. Counters that go down
// (a new connection) restart the window.
func (in *Input) SRT(now time.Time, pktRecv, pktRecvLoss, pktRetrans int64, rtt time.Duration) {
	if n := len(in.srt); n > 0 {
		l := in.srt[n-1]
		if pktRecv < l.recv || pktRecvLoss < l.loss || pktRetrans < l.retrans || now.Before(l.t) {
			in.srt = in.srt[:0]
		}
	}
	in.srt = append(in.srt, srtSample{t: now, recv: pktRecv, loss: pktRecvLoss, retrans: pktRetrans, rtt: rtt})
	in.pruneSRT(now)
}

// pruneSRT keeps the samples of the window plus the newest one at or
// before its start, so a window of SRTWindow is always measurable.
func (in *Input) pruneSRT(now time.Time) {
	start := now.Add(-SRTWindow)
	i := 0
	for i+1 < len(in.srt) && !in.srt[i+1].t.After(start) {
		i++
	}
	if i > 0 {
		in.srt = append(in.srt[:0], in.srt[i:]...)
	}
}

// Levels records each channel's RMS level in dBFS over a measurement
// interval ending at at (from the appliance's telemetry or a decoder;
// at may lie before the evaluations already made: a decoder reports its
// blocks late, dated by when their audio arrived). -Inf and NaN count as
// silence. silentFor, when the source measures silence itself (the
// appliance's telemetry does), is how long every channel had been silent
// by at: a silence that begins with this report is dated at-silentFor,
// so a report sent once a second does not delay the detection by up to
// a second. Reports must come in order of at.
func (in *Input) Levels(at time.Time, rmsDBFS []float64, silentFor time.Duration) {
	if len(rmsDBFS) == 0 {
		return
	}
	if in.hasLevels && at.Sub(in.levelsAt) > in.th.Stale {
		// The reports stopped for a while: durations start again.
		in.silent, in.imbalanced = false, false
	}
	in.hasLevels, in.levelsAt = true, at
	lv := make([]float64, len(rmsDBFS))
	for i, v := range rmsDBFS {
		if math.IsNaN(v) || v < levelFloor {
			v = levelFloor
		}
		lv[i] = v
	}
	allSilent := true
	for _, v := range lv {
		if v >= in.th.SilenceDBFS {
			allSilent = false
		}
	}
	if allSilent {
		in.quietAt = at
		if !in.silent {
			onset := at
			if silentFor > 0 {
				onset = at.Add(-silentFor)
				if in.hasQuietEnd && onset.Before(in.quietEnd) {
					// Never before the sound this input last reported.
					onset = in.quietEnd
				}
			}
			in.silent, in.silentSince = true, onset
		}
	} else {
		in.quietEnd, in.hasQuietEnd = at, true
		in.silent = false
	}
	imb := false
	if len(lv) >= 2 && !(lv[0] < in.th.SilenceDBFS && lv[1] < in.th.SilenceDBFS) {
		d := math.Abs(lv[0] - lv[1])
		if d > in.th.ImbalanceDB {
			imb = true
			in.imbDB = d
		}
	}
	if imb {
		if !in.imbalanced {
			in.imbalanced, in.imbSince = true, at
		}
	} else {
		in.imbalanced = false
	}
}

// VideoState is what a source says of an input's picture.
type VideoState struct {
	Frozen, Black bool
	// FrozenFor and BlackFor, when the source measures them (the
	// appliance's telemetry does), are how long the picture had been
	// frozen or black by the report: a state that begins with this report
	// is dated that much earlier.
	FrozenFor, BlackFor time.Duration
}

// Video records whether the input's video is frozen or black at at (from
// the appliance's telemetry or a decoder).
func (in *Input) Video(at time.Time, v VideoState) {
	if in.hasVideo && at.Sub(in.videoAt) > in.th.Stale {
		in.frozen, in.black = false, false
	}
	in.hasVideo, in.videoAt = true, at
	// Never dated before the last report that said otherwise.
	since := func(d time.Duration, lastOK time.Time) time.Time {
		t := at.Add(-max(d, 0))
		if t.Before(lastOK) {
			t = lastOK
		}
		return t
	}
	if v.Frozen && !in.frozen {
		in.frozenSince = since(v.FrozenFor, in.movingAt)
	}
	if v.Black && !in.black {
		in.blackSince = since(v.BlackFor, in.pictureAt)
	}
	if !v.Frozen {
		in.movingAt = at
	}
	if !v.Black {
		in.pictureAt = at
	}
	in.frozen, in.black = v.Frozen, v.Black
}

// finding is one signal past its threshold.
type finding struct {
	key   string
	state State
	text  string
	onset time.Time
}

// Evaluate returns the input's health at now, and whether it changed since
// the previous Evaluate: the state, or the set of signals past their
// thresholds (not merely their values). The first Evaluate always reports
// a change.
func (in *Input) Evaluate(now time.Time) (Health, bool) {
	fs := in.findings(now)
	state := Healthy
	for _, f := range fs {
		state = max(state, f.state)
	}
	// Failing signals first, then in the fixed signal order.
	slices.SortStableFunc(fs, func(a, b finding) int { return int(b.state) - int(a.state) })
	h := Health{State: state, Reasons: make([]string, 0, len(fs))}
	keys := make([]string, 0, len(fs))
	for _, f := range fs {
		h.Reasons = append(h.Reasons, f.text)
		keys = append(keys, f.key)
	}
	switch {
	case in.evaluated && state == in.last.State:
		h.Since = in.last.Since
	case state == Healthy:
		h.Since = now
	default:
		var first time.Time
		for _, f := range fs {
			if f.state == state && (first.IsZero() || f.onset.Before(first)) {
				first = f.onset
			}
		}
		h.Since = first
	}
	changed := !in.evaluated || state != in.last.State || !slices.Equal(keys, in.lastKeys)
	in.evaluated, in.last, in.lastKeys = true, h, keys
	if now.After(in.lastEval) {
		in.lastEval = now
	}
	return h, changed
}

// NextDeadline is when a signal that is pending (frames stopped, a
// silence begun, ...) would cross its threshold if nothing more were
// observed, and false when none is pending past the last Evaluate. The
// owner evaluates again at that moment instead of waiting for its next
// periodic tick, so a threshold is acted on when it is crossed.
func (in *Input) NextDeadline() (time.Time, bool) {
	if !in.connected {
		return time.Time{}, false
	}
	var next time.Time
	consider := func(on bool, t time.Time) {
		if on && t.After(in.lastEval) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	th := in.th
	ref := in.connectedAt
	if in.hasFrame {
		ref = in.lastFrame
	}
	consider(th.Stall > 0, ref.Add(th.Stall))
	if in.hasLevels {
		consider(th.SilenceFor > 0 && in.silent, in.silentSince.Add(th.SilenceFor))
		consider(th.ImbalanceDB > 0 && th.ImbalanceFor > 0 && in.imbalanced, in.imbSince.Add(th.ImbalanceFor))
	}
	if in.hasVideo {
		consider(th.FrozenVideoFor > 0 && in.frozen, in.frozenSince.Add(th.FrozenVideoFor))
		consider(th.BlackVideoFor > 0 && in.black, in.blackSince.Add(th.BlackVideoFor))
	}
	return next, !next.IsZero()
}

// SilentSince is when the current silence began as the reports date it,
// and false while the input is not silent.
func (in *Input) SilentSince() (time.Time, bool) {
	return in.silentSince, in.connected && in.hasLevels && in.silent
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func (in *Input) findings(now time.Time) []finding {
	th := in.th
	if !in.connected {
		return []finding{{key: "disconnected", state: Failed, text: "disconnected", onset: in.disconnAt}}
	}
	var fs []finding
	add := func(key string, st State, onset time.Time, format string, args ...any) {
		fs = append(fs, finding{key: key, state: st, onset: onset, text: fmt.Sprintf(format, args...)})
	}

	// Stall, measured from the last frame or, before the first, from the
	// connection.
	ref := in.connectedAt
	if in.hasFrame {
		ref = in.lastFrame
	}
	stalled := false
	if th.Stall > 0 {
		if gap := now.Sub(ref); gap >= th.Stall {
			stalled = true
			what := "no frame"
			if !in.hasFrame {
				what = "no frame since connecting"
			}
			add("stall", Failed, ref.Add(th.Stall), "stall: %s for %s (threshold %s)", what, secs(gap), secs(th.Stall))
		}
	}

	// Bitrate against the input's own baseline; a stall says it better.
	// AAC encoders spend few bits on silence, so a second that held any
	// silence says nothing about the transport: the silence signal, with
	// its own threshold, judges it (else a 1 s silence would fail over
	// as a bitrate drop before silence_for).
	in.roll(now)
	lastSecond := in.epoch.Add(time.Duration(in.bucket-1) * time.Second)
	quiet := in.hasLevels && (in.silent || !in.quietAt.Before(lastSecond))
	if th.BitrateDropPercent > 0 && !stalled && !quiet && in.hasFrame && in.completed >= int64(BaselineMinHistory/time.Second) && len(in.hist) > 0 {
		base := median(in.hist)
		cur := in.hist[len(in.hist)-1]
		limit := float64(base) * (100 - th.BitrateDropPercent) / 100
		if float64(cur) < limit {
			add("bitrate", Degraded, in.epoch.Add(time.Duration(in.bucket)*time.Second),
				"bitrate: %s over the last second, below %.0f%% of its baseline %s (median of the last %s)",
				kbps(cur), 100-th.BitrateDropPercent, kbps(base), secs(time.Duration(len(in.hist))*time.Second))
		}
	}

	// SRT, from the samples in the window.
	in.pruneSRT(now)
	if n := len(in.srt); n > 0 && now.Sub(in.srt[n-1].t) <= th.Stale {
		first, last := in.srt[0], in.srt[n-1]
		if n >= 2 {
			span := secs(last.t.Sub(first.t))
			recv := last.recv - first.recv
			if th.LossPercent > 0 {
				if lost := last.loss - first.loss; lost > 0 {
					pct := percent(lost, recv)
					switch {
					case pct > 3*th.LossPercent:
						add("loss", Failed, last.t, "loss: %.1f%% of packets lost over the last %s (failed above %g%%, 3x %g%%)", pct, span, 3*th.LossPercent, th.LossPercent)
					case pct > th.LossPercent:
						add("loss", Degraded, last.t, "loss: %.1f%% of packets lost over the last %s (threshold %g%%)", pct, span, th.LossPercent)
					}
				}
			}
			if th.RetransPercent > 0 {
				if re := last.retrans - first.retrans; re > 0 {
					if pct := percent(re, recv); pct > th.RetransPercent {
						add("retrans", Degraded, last.t, "retransmissions: %.1f%% of packets over the last %s (threshold %g%%)", pct, span, th.RetransPercent)
					}
				}
			}
		}
		if th.RTT > 0 && last.rtt > th.RTT {
			add("rtt", Degraded, last.t, "rtt: %v (threshold %v)", last.rtt.Round(time.Millisecond), th.RTT)
		}
	}

	// Levels.
	if in.hasLevels && now.Sub(in.levelsAt) <= th.Stale {
		if th.SilenceFor > 0 && in.silent {
			if d := now.Sub(in.silentSince); d >= th.SilenceFor {
				add("silence", Failed, in.silentSince.Add(th.SilenceFor), "silence: every channel below %g dBFS for %s", th.SilenceDBFS, secs(d))
			}
		}
		if th.ImbalanceDB > 0 && th.ImbalanceFor > 0 && in.imbalanced {
			if d := now.Sub(in.imbSince); d >= th.ImbalanceFor {
				add("imbalance", Degraded, in.imbSince.Add(th.ImbalanceFor), "imbalance: left and right %.1f dB apart for %s (threshold %g dB)", in.imbDB, secs(d), th.ImbalanceDB)
			}
		}
	}

	// Video.
	if in.hasVideo && now.Sub(in.videoAt) <= th.Stale {
		if th.FrozenVideoFor > 0 && in.frozen {
			if d := now.Sub(in.frozenSince); d >= th.FrozenVideoFor {
				add("frozen", Failed, in.frozenSince.Add(th.FrozenVideoFor), "video: frozen for %s (threshold %s)", secs(d), secs(th.FrozenVideoFor))
			}
		}
		if th.BlackVideoFor > 0 && in.black {
			if d := now.Sub(in.blackSince); d >= th.BlackVideoFor {
				add("black", Failed, in.blackSince.Add(th.BlackVideoFor), "video: black for %s (threshold %s)", secs(d), secs(th.BlackVideoFor))
			}
		}
	}
	return fs
}

// percent is part/whole in percent; with nothing received, any loss is 100 %.
func percent(part, whole int64) float64 {
	if whole <= 0 {
		return 100
	}
	return float64(part) * 100 / float64(whole)
}

func kbps(bytesPerSecond int64) string {
	return fmt.Sprintf("%.0f kb/s", float64(bytesPerSecond)*8/1000)
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Score ranks inputs for the "best" policy; higher is better.
//
//	Score = base(State) − 40·min(rtt, 2000 ms)/2000 ms − 50·min(loss, 30 %)/30 % − 4·min(len(Reasons), 2)
//
// with base 200 for Healthy, 100 for Degraded and 0 for Failed. The
// penalties within a state add up to at most 98, so a healthier state
// always wins; within a state the lower RTT and loss (and fewer reasons)
// win. Negative RTT or loss count as zero, NaN as the worst value.
func Score(h Health, rttMs float64, lossPct float64) float64 {
	var base float64
	switch h.State {
	case Healthy:
		base = 200
	case Degraded:
		base = 100
	default:
		base = 0
	}
	clamp := func(v, hi float64) float64 {
		if math.IsNaN(v) || v > hi {
			return hi
		}
		return max(v, 0)
	}
	return base - 40*clamp(rttMs, 2000)/2000 - 50*clamp(lossPct, 30)/30 - 4*float64(min(len(h.Reasons), 2))
}
