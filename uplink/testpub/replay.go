package testpub

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/rtmp"
	"tandem/uplink/srt"
)

// Recording is an A/V clip held in memory for publishers that replay it
// in real time, looped on one continuous timeline: loop k of frame f is
// stamped f's time + k × Loop, so publishers that share a start time send
// identical timestamps (aligned feeds), and GOPs stay aligned across loops
// when Loop is a whole number of GOPs.
type Recording struct {
	Audio    media.AudioConfig
	Video    media.VideoConfig
	HasVideo bool
	// Frames are in DTS order (audio and video interleaved), with
	// timestamps from 0 at the clip's first keyframe.
	Frames []media.Frame
	// Loop is the clip's length in 90 kHz ticks.
	Loop int64
}

// LoadTS reads the first AAC and first H.264 track of an MPEG-TS file and
// keeps the frames whose time falls within the first loop of the clip. loop
// should be a multiple of both the audio and the video frame duration (8 s
// is, for 48 kHz AAC and 25 fps) and no longer than the file.
func LoadTS(path string, loop time.Duration) (*Recording, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load recording: %w", err)
	}
	rec := &Recording{Loop: int64(loop) * media.ClockRate / int64(time.Second)}
	audioPID, videoPID := -1, -1
	dmx := mpegts.NewDemuxer(mpegts.Handler{
		OnTrack: func(t mpegts.TrackInfo) {
			switch {
			case t.Kind == media.KindAudio && audioPID < 0:
				audioPID, rec.Audio = int(t.PID), t.Audio
			case t.Kind == media.KindVideo && (videoPID < 0 || int(t.PID) == videoPID):
				videoPID, rec.Video, rec.HasVideo = int(t.PID), t.Video, true
			}
		},
		OnFrame: func(pid uint16, f media.Frame) {
			if int(pid) == audioPID || int(pid) == videoPID {
				if f.Kind == media.KindAudio {
					f.DTS = f.PTS
				}
				rec.Frames = append(rec.Frames, f)
			}
		},
	})
	if err := dmx.Feed(data); err != nil {
		return nil, fmt.Errorf("load recording %s: %w", path, err)
	}
	if err := dmx.Flush(); err != nil {
		return nil, fmt.Errorf("load recording %s: %w", path, err)
	}
	if audioPID < 0 || len(rec.Frames) == 0 {
		return nil, fmt.Errorf("load recording %s: no AAC track", path)
	}
	// Time zero is the first video keyframe once the audio has started
	// (or the first audio frame): every loop then starts with a keyframe
	// and has its audio from the start.
	firstAudio := int64(-1)
	for _, f := range rec.Frames {
		if f.Kind == media.KindAudio {
			firstAudio = f.PTS
			break
		}
	}
	zero := firstAudio
	for _, f := range rec.Frames {
		if f.Kind == media.KindVideo && f.Key && f.DTS >= firstAudio {
			zero = f.DTS
			break
		}
	}
	kept := rec.Frames[:0]
	audioFrames := int64(0)
	for _, f := range rec.Frames {
		f.PTS -= zero
		f.DTS -= zero
		if f.DTS < 0 || f.DTS >= rec.Loop {
			continue
		}
		kept = append(kept, f)
		if f.Kind == media.KindAudio {
			audioFrames++
		}
	}
	// A live encoder hands frames out in time order; muxers interleave
	// tracks loosely (ffmpeg's mpegts puts audio up to 0.7 s away from the
	// video of its time), and replaying file order would send some frames
	// late.
	slices.SortStableFunc(kept, func(a, b media.Frame) int { return cmp.Compare(a.DTS, b.DTS) })
	rec.Frames = kept
	// A loop must hold every audio frame of its length, or each loop
	// boundary would be a hole.
	if want := rec.Loop * int64(rec.Audio.SampleRate) / (int64(rec.Audio.FrameSamples()) * media.ClockRate); audioFrames < want {
		return nil, fmt.Errorf("load recording %s: %d audio frames from the first keyframe, want %d for a %v loop (clip too short, or loop not a whole number of frames)", path, audioFrames, want, loop)
	}
	return rec, nil
}

// Replay hands the recording's frames to send in real time from start, loop
// after loop, stamped base + their time on the looped timeline, until ctx
// ends or send fails. Frames due together are sent together, at most every
// 10 ms, so that many publishers do not cost a timer wake-up per frame.
func (r *Recording) Replay(ctx context.Context, start time.Time, base int64, send func(media.Frame) error) error {
	const tick = 10 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for loop := int64(0); ; loop++ {
		off := base + loop*r.Loop
		for _, f := range r.Frames {
			due := start.Add(time.Duration((loop*r.Loop + f.DTS) * int64(time.Second) / media.ClockRate))
			if wait := time.Until(due); wait > 0 {
				timer.Reset(max(wait, tick))
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
			}
			f.PTS += off
			f.DTS += off
			if err := send(f); err != nil {
				return err
			}
		}
	}
}

// SRTSender is an MPEG-TS over SRT publisher of a recording's tracks.
type SRTSender struct {
	Conn *srt.Conn
	mux  *mpegts.Muxer
}

// DialSRT connects to a switcher as an SRT publisher with the given stream
// id (options as for srt.Dial) and prepares a muxer for rec's tracks.
func DialSRT(ctx context.Context, addr string, opt srt.Options, rec *Recording) (*SRTSender, error) {
	c, err := srt.Dial(ctx, addr, opt)
	if err != nil {
		return nil, err
	}
	tracks := []mpegts.Track{{PID: 0x100, Kind: media.KindAudio, Audio: rec.Audio}}
	if rec.HasVideo {
		tracks = append(tracks, mpegts.Track{PID: 0x101, Kind: media.KindVideo, Video: rec.Video})
	}
	return &SRTSender{Conn: c, mux: mpegts.NewMuxer(tracks, c.WriteMessage)}, nil
}

// Send muxes and sends one frame.
func (s *SRTSender) Send(f media.Frame) error {
	pid := uint16(0x100)
	if f.Kind == media.KindVideo {
		pid = 0x101
	}
	return s.mux.WriteFrame(pid, f)
}

// Close closes the connection.
func (s *SRTSender) Close() error { return s.Conn.Close() }

// DialRTMP connects to a switcher as an RTMP publisher of rec's tracks.
func DialRTMP(ctx context.Context, url string, rec *Recording) (*rtmp.Client, error) {
	cfg := rtmp.ClientConfig{URL: url, Audio: &rec.Audio}
	if rec.HasVideo {
		cfg.Video = &rec.Video
	}
	return rtmp.Dial(ctx, cfg)
}
