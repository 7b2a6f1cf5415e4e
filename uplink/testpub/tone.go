package testpub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os/exec"
)

// ToneReport describes decoded audio that should be one continuous sine.
type ToneReport struct {
	Samples int
	// Blocks is the number of analysis blocks (10 ms each).
	Blocks int
	// SilentBlocks are blocks below -60 dBFS RMS (filled holes).
	SilentBlocks int
	// FirstSound is the index of the first non-silent block.
	FirstSound int
	// PhaseJumps counts block boundaries where the sine's phase moved by
	// more than the tolerance: a lost, doubled or misplaced frame.
	PhaseJumps int
	// JumpBlocks are the block indexes where jumps happened (first 10).
	JumpBlocks []int
	// MaxPhaseStep is the largest phase change between consecutive
	// non-silent blocks, in radians.
	MaxPhaseStep float64
	// FrequencyHz is the frequency measured from the phase slope.
	FrequencyHz float64
	// LevelDBFS is the mean peak level of the non-silent blocks.
	LevelDBFS float64
}

// SilentAfterStart is the number of silent blocks after the first sound:
// holes, as opposed to a stream that starts with silence.
func (r ToneReport) SilentAfterStart() int { return r.SilentBlocks - r.FirstSound }

func (r ToneReport) String() string {
	return fmt.Sprintf("%d samples, %d blocks, %d silent, %d phase jumps at blocks %v (max step %.3f rad), %.2f Hz at %.2f dBFS",
		r.Samples, r.Blocks, r.SilentBlocks, r.PhaseJumps, r.JumpBlocks, r.MaxPhaseStep, r.FrequencyHz, r.LevelDBFS)
}

// PhaseTolerance is the phase step between 10 ms blocks counted as a jump.
// A lost or repeated 1024-sample frame of a 440 Hz tone moves the phase by
// 2.4 rad; AAC coding noise at 64 kbit/s moves it by well under 0.05.
const PhaseTolerance = 0.25

// AnalyzeTone measures mono PCM that should hold a sine of about freq Hz.
// Each 10 ms block is demodulated at freq: a continuous sine gives the same
// phase in every block (or one advancing linearly if freq is slightly off).
func AnalyzeTone(pcm []float64, sampleRate int, freq float64) ToneReport {
	n := sampleRate / 100
	r := ToneReport{Samples: len(pcm)}
	w := 2 * math.Pi * freq / float64(sampleRate)
	type block struct {
		silent bool
		phase  float64
		level  float64
	}
	var blocks []block
	for b := 0; (b+1)*n <= len(pcm); b++ {
		var i, q, energy float64
		for k := 0; k < n; k++ {
			idx := b*n + k
			x := pcm[idx]
			// Reduce the reference phase modulo whole periods of the
			// sample index so precision does not decay over long files.
			arg := w * float64(idx%(sampleRate*100))
			i += x * math.Cos(arg)
			q += x * math.Sin(arg)
			energy += x * x
		}
		rms := math.Sqrt(energy / float64(n))
		bl := block{silent: rms < math.Pow(10, -60.0/20), phase: math.Atan2(q, i)}
		if !bl.silent {
			bl.level = 20 * math.Log10(rms*math.Sqrt2)
		}
		blocks = append(blocks, bl)
	}
	r.Blocks = len(blocks)
	// A block is clean when it has sound, is past the decoder's first two
	// AAC frames (no overlap history yet), and is not within two AAC frames
	// of a silent block (the overlap into or out of a filled hole is not a
	// sine).
	clean := func(b int) bool {
		if blocks[b].silent || b*n < 2048 {
			return false
		}
		for d := -5; d <= 5; d++ {
			if j := b + d; j >= 0 && j < len(blocks) && blocks[j].silent {
				return false
			}
		}
		return true
	}
	var levelSum float64
	var levelN int
	prev := -1
	var unwrapped []float64
	var idx []int
	first := true
	for b, bl := range blocks {
		if bl.silent {
			r.SilentBlocks++
			continue
		}
		if first {
			r.FirstSound, first = b, false
		}
		levelSum += bl.level
		levelN++
		if !clean(b) {
			continue
		}
		if prev >= 0 {
			// Across a hole too: the timeline kept time through it, so
			// the tone comes back in phase.
			d := wrapPi(bl.phase - blocks[prev].phase)
			r.MaxPhaseStep = math.Max(r.MaxPhaseStep, math.Abs(d))
			if math.Abs(d) > PhaseTolerance {
				r.PhaseJumps++
				if len(r.JumpBlocks) < 10 {
					r.JumpBlocks = append(r.JumpBlocks, b)
				}
			}
			unwrapped = append(unwrapped, unwrapped[len(unwrapped)-1]+d)
		} else {
			unwrapped = append(unwrapped, bl.phase)
		}
		idx = append(idx, b)
		prev = b
	}
	if levelN > 0 {
		r.LevelDBFS = levelSum / float64(levelN)
	}
	// The phase slope (rad per block) corrects the nominal frequency.
	if len(unwrapped) > 1 {
		var sx, sy, sxx, sxy float64
		for k, y := range unwrapped {
			x := float64(idx[k])
			sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		}
		m := float64(len(unwrapped))
		slope := (m*sxy - sx*sy) / (m*sxx - sx*sx)
		// Demodulating at w, a tone at w+dw advances its phase by -dw*n per
		// block (the q term is sin, so the sign is inverted).
		r.FrequencyHz = freq - slope*float64(sampleRate)/(2*math.Pi*float64(n))
	}
	return r
}

func wrapPi(x float64) float64 {
	for x > math.Pi {
		x -= 2 * math.Pi
	}
	for x < -math.Pi {
		x += 2 * math.Pi
	}
	return x
}

// DecodeToMono decodes compressed audio (ADTS, TS, ...) with ffmpeg into
// mono float samples at the given rate. ffmpeg's own complaints are
// returned as an error: a clean stream decodes with none.
func DecodeToMono(ctx context.Context, ffmpeg string, data []byte, sampleRate int) ([]float64, error) {
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "pipe:0",
		"-ac", "1", "-ar", fmt.Sprint(sampleRate), "-f", "s16le", "pipe:1")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decode with ffmpeg: %v: %s", err, stderr.String())
	}
	raw := out.Bytes()
	pcm := make([]float64, len(raw)/2)
	for i := range pcm {
		pcm[i] = float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / 32768
	}
	if stderr.Len() > 0 {
		return pcm, fmt.Errorf("ffmpeg reported decode errors: %s", stderr.String())
	}
	return pcm, nil
}

// FrameHash names an AAC payload, so a frame sent by a publisher can be
// recognised at a listener (the switcher passes payloads through unchanged).
func FrameHash(payload []byte) string {
	h := sha256.Sum256(payload)
	return hex.EncodeToString(h[:8])
}
