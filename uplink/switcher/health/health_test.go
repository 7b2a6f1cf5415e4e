package health

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scenarios below are scripts, one observation or expectation a line,
// times relative to t0:
//
//	connect 0s | disconnect 5s
//	frames FROM TO EVERY BYTES          a frame every EVERY in [FROM, TO)
//	srt AT RECV LOSS RETRANS RTT        cumulative counters
//	levels AT DB... [silent=DUR]        one report (silent=: the source's own silence duration)
//	levels-every FROM TO EVERY DB...    a report every EVERY in [FROM, TO)
//	video AT ok|frozen|black|frozen,black [for=DUR]   (for=: the source's own duration)
//	video-every FROM TO EVERY STATE
//	expect AT STATE ["exact reason" ...]    with no reasons, healthy must have none
//	expect AT STATE ~"substring"            some reason contains it
//	since AT                            the last expectation's Health.Since
//	changed AT true|false               Evaluate's changed result
//	deadline AT none|DUR                NextDeadline after the observations at AT
//
// Observations and expectations at the same instant run in script order.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type step struct {
	at   time.Duration
	line int
	text string
	do   func(t *testing.T, in *Input, now time.Time, st *scriptState)
}

type scriptState struct {
	last    Health
	changed bool
}

func tokens(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		prefix := ""
		if strings.HasPrefix(line, "~\"") {
			prefix, line = "~", line[1:]
		}
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("bad quote in %q: %v", line, err)
			}
			u, _ := strconv.Unquote(q)
			out = append(out, prefix+"\""+u)
			line = line[len(q):]
			continue
		}
		f, rest, _ := strings.Cut(line, " ")
		out = append(out, f)
		line = rest
	}
	return out
}

func dur(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("bad duration %q: %v", s, err)
	}
	return d
}

func num(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("bad number %q: %v", s, err)
	}
	return v
}

func floats(t *testing.T, ss []string) []float64 {
	t.Helper()
	var out []float64
	for _, s := range ss {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("bad level %q: %v", s, err)
		}
		out = append(out, v)
	}
	return out
}

func every(t *testing.T, f []string, fn func(at time.Duration)) {
	t.Helper()
	from, to, step := dur(t, f[1]), dur(t, f[2]), dur(t, f[3])
	for at := from; at < to; at += step {
		fn(at)
	}
}

func video(t *testing.T, s string) (frozen, black bool) {
	t.Helper()
	for _, p := range strings.Split(s, ",") {
		switch p {
		case "ok":
		case "frozen":
			frozen = true
		case "black":
			black = true
		default:
			t.Fatalf("bad video state %q", s)
		}
	}
	return
}

func parseState(t *testing.T, s string) State {
	t.Helper()
	for _, st := range []State{Healthy, Degraded, Failed} {
		if st.String() == s {
			return st
		}
	}
	t.Fatalf("bad state %q", s)
	return 0
}

func runScript(t *testing.T, th Thresholds, script string) *Input {
	t.Helper()
	var steps []step
	add := func(at time.Duration, line int, text string, do func(*testing.T, *Input, time.Time, *scriptState)) {
		steps = append(steps, step{at: at, line: line, text: text, do: do})
	}
	for n, raw := range strings.Split(script, "\n") {
		text := strings.TrimSpace(raw)
		if i := strings.Index(text, "#"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		f := tokens(t, text)
		line := n + 1
		switch f[0] {
		case "connect", "disconnect":
			up := f[0] == "connect"
			add(dur(t, f[1]), line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.Connected(now, up) })
		case "frames":
			b := int(num(t, f[4]))
			every(t, f, func(at time.Duration) {
				add(at, line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.Frame(now, b) })
			})
		case "srt":
			recv, loss, re, rtt := num(t, f[2]), num(t, f[3]), num(t, f[4]), dur(t, f[5])
			add(dur(t, f[1]), line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.SRT(now, recv, loss, re, rtt) })
		case "levels":
			args := f[2:]
			var silentFor time.Duration
			if n := len(args); n > 0 && strings.HasPrefix(args[n-1], "silent=") {
				silentFor = dur(t, strings.TrimPrefix(args[n-1], "silent="))
				args = args[:n-1]
			}
			lv := floats(t, args)
			add(dur(t, f[1]), line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.Levels(now, lv, silentFor) })
		case "deadline":
			add(dur(t, f[1]), line, text, func(t *testing.T, in *Input, _ time.Time, _ *scriptState) {
				t.Helper()
				got, ok := in.NextDeadline()
				switch {
				case f[2] == "none" && ok:
					t.Errorf("line %d %q: deadline at %v, want none", line, text, got.Sub(t0))
				case f[2] != "none" && (!ok || !got.Equal(t0.Add(dur(t, f[2])))):
					t.Errorf("line %d %q: deadline %v (%v), want %s", line, text, got.Sub(t0), ok, f[2])
				}
			})
		case "levels-every":
			lv := floats(t, f[4:])
			every(t, f, func(at time.Duration) {
				add(at, line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.Levels(now, lv, 0) })
			})
		case "video":
			fr, bl := video(t, f[2])
			var d time.Duration
			if len(f) > 3 {
				d = dur(t, strings.TrimPrefix(f[3], "for="))
			}
			v := VideoState{Frozen: fr, Black: bl}
			if fr {
				v.FrozenFor = d
			}
			if bl {
				v.BlackFor = d
			}
			add(dur(t, f[1]), line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) { in.Video(now, v) })
		case "video-every":
			fr, bl := video(t, f[4])
			every(t, f, func(at time.Duration) {
				add(at, line, text, func(_ *testing.T, in *Input, now time.Time, _ *scriptState) {
					in.Video(now, VideoState{Frozen: fr, Black: bl})
				})
			})
		case "expect":
			want := parseState(t, f[2])
			reasons := f[3:]
			add(dur(t, f[1]), line, text, func(t *testing.T, in *Input, now time.Time, st *scriptState) {
				t.Helper()
				h, ch := in.Evaluate(now)
				st.last, st.changed = h, ch
				if h.State != want {
					t.Errorf("line %d %q: state %s, want %s; reasons %q", line, text, h.State, want, h.Reasons)
					return
				}
				var exact []string
				for _, r := range reasons {
					if sub, ok := strings.CutPrefix(r, "~\""); ok {
						if !slices.ContainsFunc(h.Reasons, func(s string) bool { return strings.Contains(s, sub) }) {
							t.Errorf("line %d %q: no reason contains %q; reasons %q", line, text, sub, h.Reasons)
						}
						continue
					}
					exact = append(exact, strings.TrimPrefix(r, "\""))
				}
				if len(exact) > 0 || (want == Healthy && len(reasons) == 0) {
					if !slices.Equal(h.Reasons, exact) && !(len(exact) == 0 && len(h.Reasons) == 0) {
						t.Errorf("line %d %q: reasons\n got %q\nwant %q", line, text, h.Reasons, exact)
					}
				}
			})
		case "since":
			want := t0.Add(dur(t, f[1]))
			add(-1, line, text, func(t *testing.T, _ *Input, _ time.Time, st *scriptState) {
				t.Helper()
				if !st.last.Since.Equal(want) {
					t.Errorf("line %d %q: since %v, want %v", line, text, st.last.Since.Sub(t0), want.Sub(t0))
				}
			})
		case "changed":
			want := f[1] == "true"
			add(-1, line, text, func(t *testing.T, _ *Input, _ time.Time, st *scriptState) {
				t.Helper()
				if st.changed != want {
					t.Errorf("line %d %q: changed %v, want %v", line, text, st.changed, want)
				}
			})
		default:
			t.Fatalf("line %d: unknown command %q", line, f[0])
		}
	}
	// since/changed apply to the expectation just before them.
	for i := range steps {
		if steps[i].at == -1 {
			if i == 0 {
				t.Fatalf("line %d: %q needs an expect before it", steps[i].line, steps[i].text)
			}
			steps[i].at = steps[i-1].at
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	in := New(th)
	var st scriptState
	for _, s := range steps {
		s.do(t, in, t0.Add(s.at), &st)
	}
	return in
}

func TestScripts(t *testing.T) {
	cases := []struct {
		name   string
		th     Thresholds
		script string
	}{
		{"never connected", Thresholds{}, `
			expect 0s failed "disconnected"
			changed true
			expect 1s failed "disconnected"
			changed false
		`},
		{"stall", Thresholds{}, `
			connect 0s
			expect 0s healthy
			changed true
			expect 0.499s healthy
			changed false
			expect 0.5s failed "stall: no frame since connecting for 0.5s (threshold 0.5s)"
			since 0.5s
			changed true
			frames 1s 2s 20ms 400       # last frame at 1.98s
			expect 1s healthy
			changed true
			since 1s
			expect 2.479s healthy
			expect 2.48s failed "stall: no frame for 0.5s (threshold 0.5s)"
			since 2.48s
			expect 4s failed "stall: no frame for 2.0s (threshold 0.5s)"
			since 2.48s
			changed false
			frames 4.1s 5s 20ms 400
			expect 4.1s healthy
		`},
		{"stall custom threshold", Thresholds{Stall: 2 * time.Second}, `
			frames 0s 1s 20ms 400       # a frame connects the input
			expect 2.979s healthy
			expect 2.98s failed "stall: no frame for 2.0s (threshold 2.0s)"
		`},
		{"stall off", Thresholds{Stall: -1}, `
			connect 0s
			expect 60s healthy
		`},
		{"disconnect", Thresholds{}, `
			connect 0s
			frames 0s 5s 20ms 400
			levels-every 0s 5s 100ms -20 -20
			expect 4s healthy
			disconnect 5s
			expect 5s failed "disconnected"
			since 5s
			changed true
			expect 9s failed "disconnected"
			changed false
			connect 10s
			frames 10s 12s 20ms 400
			expect 10s healthy
		`},
		{"bitrate needs history", Thresholds{}, `
			# 400 B every 20 ms is 160 kb/s; from 5 s, 400 B every 100 ms is 32 kb/s.
			frames 0s 5s 20ms 400
			frames 5s 20s 100ms 400
			expect 9.999s healthy       # only 9 s of history
			expect 10s degraded "bitrate: 32 kb/s over the last second, below 50% of its baseline 96 kb/s (median of the last 10.0s)"
			since 10s
		`},
		{"bitrate drop onset and recovery", Thresholds{}, `
			frames 0s 10s 20ms 400      # 160 kb/s
			frames 10s 11s 40ms 400     # 80 kb/s: exactly 50%, not below
			frames 11s 12s 100ms 400    # 32 kb/s
			frames 12s 20s 20ms 400
			expect 11s healthy
			expect 11.999s healthy
			expect 12s degraded "bitrate: 32 kb/s over the last second, below 50% of its baseline 160 kb/s (median of the last 12.0s)"
			since 12s
			expect 12.999s degraded
			expect 13s healthy
		`},
		{"bitrate custom percent", Thresholds{BitrateDropPercent: 20}, `
			frames 0s 10s 20ms 400      # 160 kb/s
			frames 10s 11s 25ms 400     # 128 kb/s: exactly 80%, not below
			frames 11s 12s 40ms 400     # 80 kb/s
			expect 11s healthy
			expect 12s degraded ~"below 80% of its baseline 160 kb/s"
		`},
		{"bitrate drop that lasts becomes the baseline", Thresholds{}, `
			frames 0s 30s 20ms 400
			frames 30s 60s 100ms 400
			expect 31s degraded ~"bitrate: 32 kb/s"
			expect 45s degraded
			expect 46s healthy          # the low rate is now the median of the last 30 s
		`},
		{"bitrate not judged while stalled", Thresholds{}, `
			frames 0s 20s 20ms 400
			expect 25s failed "stall: no frame for 5.0s (threshold 0.5s)"
		`},
		{"loss", Thresholds{}, `
			frames 0s 30s 20ms 400
			srt 0s 0 0 0 100ms
			expect 0s healthy           # one sample: nothing to measure yet
			srt 1s 1000 10 0 100ms      # 1%
			srt 2s 2000 100 0 100ms     # 5.0%: not above
			expect 2s healthy
			srt 3s 3000 151 0 100ms     # 5.03%
			expect 3s degraded "loss: 5.0% of packets lost over the last 3.0s (threshold 5%)"
			since 3s
			srt 4s 4000 600 0 100ms     # 15.0%: degraded, not failed
			expect 4s degraded ~"15.0% of packets lost"
			srt 5s 5000 751 0 100ms     # 15.02%
			expect 5s failed "loss: 15.0% of packets lost over the last 5.0s (failed above 15%, 3x 5%)"
			srt 6s 6000 751 0 100ms     # window 1s..6s: 741/5000, degraded again
			expect 6s degraded ~"14.8%"
			srt 7s 7000 751 0 100ms     # window 2s..7s: 651/5000
			expect 7s degraded ~"13.0%"
			srt 8s 8000 751 0 100ms     # window 3s..8s: 600/5000 = 12%
			expect 8s degraded ~"12.0%"
			srt 9s 9000 751 0 100ms     # 151/5000 = 3%
			expect 9s healthy
		`},
		{"loss with nothing received", Thresholds{}, `
			frames 0s 10s 20ms 400
			srt 0s 1000 0 0 100ms
			srt 1s 1000 5 0 100ms
			expect 1s failed "loss: 100.0% of packets lost over the last 1.0s (failed above 15%, 3x 5%)"
		`},
		{"loss counters reset", Thresholds{}, `
			frames 0s 10s 20ms 400
			srt 0s 1000 0 0 100ms
			srt 1s 2000 500 0 100ms
			expect 1s failed
			srt 2s 10 0 0 100ms         # a new connection's counters
			expect 2s healthy
		`},
		{"retransmissions", Thresholds{}, `
			frames 0s 10s 20ms 400
			srt 0s 0 0 0 100ms
			srt 1s 1000 0 200 100ms     # 20%: not above
			expect 1s healthy
			srt 2s 2000 0 402 100ms     # 20.1%
			expect 2s degraded "retransmissions: 20.1% of packets over the last 2.0s (threshold 20%)"
			srt 7s 7000 0 402 100ms     # window 2s..7s: 0
			expect 7s healthy
		`},
		{"rtt", Thresholds{}, `
			frames 0s 10s 20ms 400
			srt 0s 0 0 0 500ms          # 500 ms: not above
			expect 0s healthy
			srt 1s 1000 0 0 501ms
			expect 1s degraded "rtt: 501ms (threshold 500ms)"
			srt 2s 2000 0 0 80ms
			expect 2s healthy
		`},
		{"srt samples go stale", Thresholds{}, `
			frames 0s 20s 20ms 400
			srt 0s 0 0 0 900ms
			expect 5s degraded "rtt: 900ms (threshold 500ms)"
			expect 5.001s healthy
		`},
		{"silence", Thresholds{}, `
			frames 0s 10s 20ms 400
			levels-every 0s 1s 100ms -20 -22
			levels-every 1s 4s 100ms -60 -50  # -50 is not below -50
			expect 4s healthy
			levels-every 4s 7s 100ms -60 -50.1
			expect 5.999s healthy
			expect 6s failed "silence: every channel below -50 dBFS for 2.0s"
			since 6s
			expect 6.9s failed "silence: every channel below -50 dBFS for 2.9s"
			changed false
			levels-every 7s 10s 100ms -49 -200
			expect 7s healthy
		`},
		{"silence dated by the source's own measure", Thresholds{Stall: -1}, `
			frames 0s 10s 20ms 400
			levels 1s -20 -20
			levels 2s -20 -20
			# once-a-second reports: the first silent one says silent for 700 ms
			levels 3s -70 -70 silent=700ms
			expect 3s healthy
			deadline 3s 4.3s
			expect 4.299s healthy
			expect 4.3s failed "silence: every channel below -50 dBFS for 2.0s"
			since 4.3s
			deadline 4.3s none
		`},
		{"silence never dated before the last sound", Thresholds{}, `
			frames 0s 10s 20ms 400
			levels 1s -20 -20
			levels 1.5s -20 -20
			levels 2s -70 -70 silent=900ms  # the source counts from before 1.5s
			expect 3.499s healthy
			expect 3.5s failed ~"silence"
		`},
		{"deadlines of pending signals", Thresholds{ImbalanceFor: time.Second}, `
			connect 0s
			deadline 0s 0.5s                # the first frame's stall threshold
			frames 0s 1s 20ms 400
			deadline 0.98s 1.48s
			levels 0.5s -20 -45             # an imbalance, due at 1.5s
			deadline 0.98s 1.48s
			expect 1.48s failed ~"stall"
			deadline 1.48s 1.5s             # what is past was evaluated
			levels 1.49s -60 -60            # silence replaces the imbalance
			deadline 1.49s 3.49s
		`},
		{"a silence is not a bitrate drop", Thresholds{}, `
			# 160 kb/s of sound, then an encoder's small silent frames
			frames 0s 12s 20ms 400
			frames 12s 20s 20ms 10
			levels-every 0s 12s 100ms -20 -20
			levels-every 12s 15s 100ms -70 -70
			levels-every 15s 20s 100ms -20 -20
			expect 13s healthy              # a silent second: the silence signal judges it
			expect 13.999s healthy
			expect 14s failed ~"silence"
			expect 15s healthy              # the sound is back in the last second
			expect 16s degraded ~"bitrate: 4 kb/s"  # a loud second at a silent rate
		`},
		{"silence from -Inf levels", Thresholds{SilenceFor: time.Second}, `
			frames 0s 10s 20ms 400
			levels-every 0s 10s 500ms -Inf NaN
			expect 0.999s healthy
			expect 1s failed "silence: every channel below -50 dBFS for 1.0s"
		`},
		{"silence custom threshold", Thresholds{SilenceDBFS: -40, SilenceFor: 3 * time.Second}, `
			frames 0s 10s 20ms 400
			levels-every 0s 10s 100ms -45 -41
			expect 2.999s healthy
			expect 3s failed "silence: every channel below -40 dBFS for 3.0s"
		`},
		{"levels go stale", Thresholds{}, `
			frames 0s 20s 20ms 400
			levels-every 0s 2.5s 100ms -70 -70   # last report at 2.4s
			expect 7.4s failed ~"silence"
			expect 7.401s healthy
			levels 10s -70 -70                   # after the gap the silence starts again
			expect 11s healthy
			levels 11.5s -70 -70
			expect 12s failed "silence: every channel below -50 dBFS for 2.0s"
		`},
		{"imbalance", Thresholds{}, `
			frames 0s 20s 20ms 400
			levels-every 0s 1s 100ms -20 -40     # exactly 20 dB: not above
			levels-every 1s 8s 100ms -10 -35
			expect 5.999s healthy
			expect 6s degraded "imbalance: left and right 25.0 dB apart for 5.0s (threshold 20 dB)"
			since 6s
			levels-every 8s 10s 100ms -12 -14
			expect 8s healthy
		`},
		{"imbalance of a dead channel", Thresholds{ImbalanceFor: time.Second}, `
			frames 0s 20s 20ms 400
			levels-every 0s 5s 100ms -200 -18
			expect 1s degraded "imbalance: left and right 182.0 dB apart for 1.0s (threshold 20 dB)"
		`},
		{"no imbalance while both are silent", Thresholds{ImbalanceFor: time.Second, SilenceFor: -1}, `
			frames 0s 20s 20ms 400
			levels-every 0s 5s 100ms -60 -90
			expect 4s healthy
		`},
		{"mono has no imbalance", Thresholds{ImbalanceFor: time.Second}, `
			frames 0s 20s 20ms 400
			levels-every 0s 5s 100ms -20
			expect 4s healthy
		`},
		{"frozen video", Thresholds{}, `
			frames 0s 20s 20ms 400
			video-every 0s 1s 500ms ok
			video-every 1s 5s 500ms frozen
			expect 2.999s healthy
			expect 3s failed "video: frozen for 2.0s (threshold 2.0s)"
			since 3s
			video 5s ok
			expect 5s healthy
		`},
		{"video states dated by the source's own measure", Thresholds{Stall: -1}, `
			frames 0s 10s 20ms 400
			video 1s ok
			video 2s frozen for=700ms     # once-a-second reports: frozen since 1.3s
			deadline 2s 3.3s
			expect 3.299s healthy
			expect 3.3s failed "video: frozen for 2.0s (threshold 2.0s)"
			video 4s ok
			expect 4s healthy
			video 5s black for=3s         # not before the report of a picture at 4s
			expect 5.999s healthy
			expect 6s failed "video: black for 2.0s (threshold 2.0s)"
		`},
		{"black video", Thresholds{BlackVideoFor: time.Second}, `
			frames 0s 20s 20ms 400
			video-every 0s 5s 200ms black
			expect 0.999s healthy
			expect 1s failed "video: black for 1.0s (threshold 1.0s)"
			video-every 5s 6s 200ms frozen,black
			expect 5.5s failed "video: black for 5.5s (threshold 1.0s)"
			expect 7s failed "video: frozen for 2.0s (threshold 2.0s)" "video: black for 7.0s (threshold 1.0s)"
		`},
		{"several signals, failing first", Thresholds{}, `
			frames 0s 10s 20ms 400
			srt 0s 0 0 0 700ms
			levels-every 0s 10s 100ms -70 -70
			expect 1s degraded "rtt: 700ms (threshold 500ms)"
			since 0s
			expect 2s failed "silence: every channel below -50 dBFS for 2.0s" "rtt: 700ms (threshold 500ms)"
			since 2s
			changed true
			srt 3s 0 0 0 100ms
			expect 3s failed "silence: every channel below -50 dBFS for 3.0s"
			changed true                # the set of reasons changed
			since 2s
		`},
		{"reconnect forgets the old connection", Thresholds{}, `
			frames 0s 3s 20ms 400
			levels-every 0s 3s 100ms -70 -70
			expect 2.5s failed ~"silence"
			disconnect 3s
			connect 3.1s
			frames 3.1s 6s 20ms 400
			levels-every 3.1s 6s 100ms -70 -70
			expect 5.099s healthy
			expect 5.1s failed ~"silence"
		`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runScript(t, c.th, c.script) })
	}
}

func TestDefaults(t *testing.T) {
	d := DefaultThresholds()
	want := Thresholds{
		Stall: 500 * time.Millisecond, BitrateDropPercent: 50, LossPercent: 5, RetransPercent: 20,
		RTT: 500 * time.Millisecond, SilenceDBFS: -50, SilenceFor: 2 * time.Second,
		ImbalanceDB: 20, ImbalanceFor: 5 * time.Second, FrozenVideoFor: 2 * time.Second,
		BlackVideoFor: 2 * time.Second, Stale: 5 * time.Second,
	}
	if d != want {
		t.Fatalf("defaults %+v, want %+v", d, want)
	}
	if New(Thresholds{LossPercent: 2}).Thresholds().LossPercent != 2 {
		t.Fatal("explicit threshold replaced by the default")
	}
	for _, bad := range []Thresholds{{BitrateDropPercent: 100}, {SilenceDBFS: 3}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
	if err := (Thresholds{}).Validate(); err != nil {
		t.Errorf("zero thresholds: %v", err)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Healthy: "healthy", Degraded: "degraded", Failed: "failed", 7: "State(7)"} {
		if s.String() != want {
			t.Errorf("%d: %q", int(s), s.String())
		}
	}
	h := Health{State: Failed, Reasons: []string{"a", "b"}}
	if h.String() != "failed (a; b)" {
		t.Errorf("Health.String() = %q", h.String())
	}
}

func TestScore(t *testing.T) {
	healthyBad := Score(Health{State: Healthy}, 5000, 100)
	degradedGood := Score(Health{State: Degraded, Reasons: []string{"x", "y", "z"}}, 0, 0)
	failedGood := Score(Health{State: Failed, Reasons: []string{"x"}}, 0, 0)
	if !(healthyBad > degradedGood && degradedGood > failedGood) {
		t.Errorf("state must dominate: healthy %v, degraded %v, failed %v", healthyBad, degradedGood, failedGood)
	}
	h := Health{State: Healthy}
	if Score(h, 20, 0) <= Score(h, 200, 0) {
		t.Error("lower RTT must score higher")
	}
	if Score(h, 50, 0.1) <= Score(h, 50, 2) {
		t.Error("lower loss must score higher")
	}
	if got := Score(h, 0, 0); got != 200 {
		t.Errorf("perfect healthy input scores %v, want 200", got)
	}
	if got := Score(h, -5, -1); got != 200 {
		t.Errorf("negative inputs score %v, want 200", got)
	}
	nan := Score(h, 0, 0) - Score(h, 2000, 30)
	if got := Score(h, 0, 0) - Score(Health{State: Healthy}, fnan(), fnan()); got != nan {
		t.Errorf("NaN penalty %v, want the worst %v", got, nan)
	}
	d := Health{State: Degraded, Reasons: []string{"a"}}
	if Score(d, 100, 1) <= Score(Health{State: Degraded, Reasons: []string{"a", "b"}}, 100, 1) {
		t.Error("fewer reasons must score higher")
	}
}

func fnan() float64 {
	var z float64
	return z / z
}

// ExampleInput shows the usual loop: observations as they happen,
// Evaluate on a tick, act on changes.
func ExampleInput() {
	in := New(Thresholds{})
	now := t0
	in.Connected(now, true)
	for i := 0; i < 50; i++ {
		in.Frame(now, 400)
		now = now.Add(20 * time.Millisecond)
	}
	h, changed := in.Evaluate(now)
	fmt.Println(h, changed)
	h, changed = in.Evaluate(now.Add(time.Second))
	fmt.Println(h, changed)
	// Output:
	// healthy true
	// failed (stall: no frame for 1.0s (threshold 0.5s)) true
}
