package api

import (
	"time"

	"tandem/firmware/state"
)

// Status is the daemon's state as GET /api/v1/status returns it. The
// supervisor fills everything but Events, which Serve adds from the event
// log. Times are RFC 3339; levels are dBFS with -200 for silence (-inf).
type Status struct {
	DeviceID string `json:"device_id"`
	// SessionID is the capture session (a new one whenever the capture
	// timeline restarts); empty before capture starts.
	SessionID string `json:"session_id"`
	// SessionStarted is the wall time of sample 0 of the session's
	// timeline (zero before capture starts): sample k was captured at
	// SessionStarted + k/sample_rate, so a frame stamped PTS p (90 kHz) holds
	// the audio captured from SessionStarted + p/90000 s on. It ties what
	// the switcher outputs to when it was captured.
	SessionStarted time.Time `json:"session_started,omitzero"`
	Version        string    `json:"version,omitempty"`
	// Started is when the daemon started; UptimeSeconds is now - Started.
	Started       time.Time    `json:"started"`
	UptimeSeconds float64      `json:"uptime_s"`
	Source        SourceStatus `json:"source"`
	Feeds         []FeedStatus `json:"feeds"`
	Links         []LinkStatus `json:"links"`
	// Events are the newest events, oldest first (filled by Serve).
	Events []state.Event `json:"events"`
}

// SourceStatus is the audio input.
type SourceStatus struct {
	Type string `json:"type"` // "tone" or "device"
	// SampleRate and Channels are the capture format.
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
	Name       string `json:"name"`  // device name, or e.g. "440 Hz -12 dBFS"
	State      string `json:"state"` // see the State constants
	// Levels are per channel over the last second.
	Levels []Level `json:"levels"`
	// SilentMs is how long every channel has been below the silence
	// threshold; 0 while there is sound.
	SilentMs int64 `json:"silent_ms"`
}

// Level is one channel's level.
type Level struct {
	PeakDBFS float64 `json:"peak_dbfs"`
	RMSDBFS  float64 `json:"rms_dbfs"`
}

// FeedStatus is one feed: its encoder and its connection.
type FeedStatus struct {
	Role        string        `json:"role"`  // "primary" or "fallback"
	State       string        `json:"state"` // see the State constants
	Encoder     EncoderStatus `json:"encoder"`
	BitrateKbps float64       `json:"bitrate_kbps"`
	// Dest is the destination URL with any password redacted.
	Dest string `json:"dest"`
	// Link is the name of the link the feed is sent over.
	Link string    `json:"link"`
	SRT  SRTStatus `json:"srt"`
	// Sent and Dropped count media frames handed to the network and
	// dropped before it (queue full, not connected).
	Sent    int64 `json:"sent"`
	Dropped int64 `json:"dropped"`
	// Reconnects since the daemon started.
	Reconnects int64 `json:"reconnects"`
	// ConnectedSince is when the current connection was made; zero (and
	// absent) while not connected.
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	// Error is the last failure, while the feed is not running.
	Error string `json:"error,omitempty"`
}

// EncoderStatus is a feed's encoder process.
type EncoderStatus struct {
	State    string `json:"state"` // see the State constants
	Restarts int64  `json:"restarts"`
	PID      int    `json:"pid,omitempty"`
}

// SRTStatus is what libsrt reports about a feed's connection.
type SRTStatus struct {
	RTTms float64 `json:"rtt_ms"`
	// SendLoss and Retrans are packets since the connection was made.
	SendLoss int64 `json:"send_loss"`
	Retrans  int64 `json:"retrans"`
	// Messages is the SRT messages sent since the daemon started:
	// sent/messages is how many frames max_pack_delay packs per message.
	Messages int64 `json:"messages"`
}

// LinkStatus is one uplink.
type LinkStatus struct {
	Name      string `json:"name"`
	Interface string `json:"interface,omitempty"`
	// Up is whether the link is usable (carrier and address); nil when
	// nothing watches it.
	Up      *bool  `json:"up"`
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Table   int    `json:"table,omitempty"`
	// Routed is whether the link's policy routing (rule, table, routes)
	// is in place.
	Routed bool `json:"routed"`
}

// States shared by the source, feeds and encoders. Others are allowed;
// these are the words the CLI and web UI know.
const (
	StateNotStarted   = "not started"
	StateStarting     = "starting"
	StateRunning      = "running"
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StateRestarting   = "restarting"
	StateFailed       = "failed"
	StateStopped      = "stopped"
)

// Provider supplies the daemon's status; the supervisor implements it. It
// is called from HTTP handlers, so it must be safe for concurrent use and
// not block for long.
type Provider interface {
	Status() Status
}

// EventSource reads the event log (*state.Store implements it; see
// state.Store.Events for since and limit).
type EventSource interface {
	Events(since uint64, limit int) ([]state.Event, error)
}

var _ EventSource = (*state.Store)(nil)
