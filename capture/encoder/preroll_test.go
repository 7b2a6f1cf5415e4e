package encoder_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os/exec"
	"testing"

	"tandem/capture/encoder"
	"tandem/scripts/testenv"
	"tandem/uplink/adts"
	"tandem/uplink/testpub"
)

// sinePCM is n stereo s16le samples of a 440 Hz sine at -12 dBFS.
func sinePCM(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		v := int16(math.Round(0.25 * 32767 * math.Sin(2*math.Pi*440*float64(i)/48000)))
		binary.Write(&b, binary.LittleEndian, [2]int16{v, v})
	}
	return b.Bytes()
}

// encodeADTS runs ffmpeg's AAC encoder over pcm and returns its ADTS
// frames; frame k (k ≥ 1) holds samples [(k-1)·1024, k·1024), frame 0 is
// the encoder's priming.
func encodeADTS(t *testing.T, ffmpeg string, pcm []byte, bitrate string) [][]byte {
	t.Helper()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "48000", "-ac", "2", "-i", "pipe:0",
		"-c:a", "aac", "-b:a", bitrate, "-f", "adts", "pipe:1")
	cmd.Stdin = bytes.NewReader(pcm)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	var frames [][]byte
	rd := adts.NewReader(bytes.NewReader(out))
	for {
		h, p, err := rd.ReadFrame()
		if err != nil {
			return frames
		}
		f, _ := adts.AppendFrame(nil, h.Config, p)
		frames = append(frames, f)
	}
}

// A restarted encoder is fed PrerollFrames of audio before its first sent
// frame. Spliced after the other feed's frames (what the switcher does
// while the restarted feed is preferred), the join must be as clean as
// the coding noise: with 2048 samples a splice in twelve jumped 0.38 rad
// (the encoder's transient detection still settling), which failed the
// lab acceptance intermittently.
func TestRestartPrerollSplicesCleanly(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	pcm := sinePCM(48000 * 20)
	other := encodeADTS(t, ffmpeg, pcm, "128k") // the feed that never stopped
	pre := encoder.PrerollFrames
	worst := 0.0
	for s := range 12 {
		join := (200 + s*37) * 1024 // a frame boundary, 4.3..13.5 s in
		launch := join - pre
		restarted := encodeADTS(t, ffmpeg, pcm[launch*4:(join+2*48000)*4], "64k")
		var stream []byte
		for k := 1; k <= join/1024; k++ {
			stream = append(stream, other[k]...)
		}
		for k := pre/1024 + 1; k < len(restarted); k++ {
			stream = append(stream, restarted[k]...)
		}
		mono, err := testpub.DecodeToMono(context.Background(), ffmpeg, stream, 48000)
		if err != nil {
			t.Fatal(err)
		}
		r := testpub.AnalyzeTone(mono, 48000, 440)
		worst = max(worst, r.MaxPhaseStep)
		if r.MaxPhaseStep > 0.15 {
			t.Errorf("join at sample %d: phase step %.3f rad with a %d-sample pre-roll, want the coding noise (< 0.15)", join, r.MaxPhaseStep, pre)
		}
	}
	t.Logf("12 joins with a %d-sample pre-roll: worst phase step %.3f rad", pre, worst)
}
