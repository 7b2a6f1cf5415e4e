// Package daemon runs the appliance: `tandem run` calls Run. Run opens
// the state store (moving a corrupt one aside), records start, config and
// stop events, and runs the supervisor (capture clock, one encoder and
// sender per feed, policy routing, in-band telemetry) behind the local API
// until ctx ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"tandem/firmware/api"
	"tandem/firmware/config"
	"tandem/firmware/state"
	"tandem/firmware/version"
)

// Run runs the daemon until ctx ends.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log = orDiscard(log)
	st, recovered, err := OpenState(cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()

	record(st, log, state.Event{Kind: state.KindStart, Subject: "daemon", Reason: StartReason(st, recovered)})
	RecordConfig(st, cfg, log)

	sup, err := newSupervisor(ctx, cfg, st, log)
	if err != nil {
		record(st, log, state.Event{Kind: state.KindStop, Subject: "daemon", Reason: "refused to start: " + err.Error()})
		return fmt.Errorf("daemon: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.API.Debug != "" {
		wait, err := serveProfiler(ctx, cfg.API.Debug, log.With("component", "debug"))
		if err != nil {
			record(st, log, state.Event{Kind: state.KindStop, Subject: "daemon", Reason: "refused to start: " + err.Error()})
			return fmt.Errorf("daemon: %w", err)
		}
		defer wait()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sup.run(ctx)
	}()
	err = api.Serve(ctx, cfg.API.Socket, cfg.API.HTTP, sup, st, log.With("component", "api"))
	cancel()
	<-done
	stop := "shutdown requested"
	if err != nil {
		stop = err.Error()
	}
	record(st, log, state.Event{Kind: state.KindStop, Subject: "daemon", Reason: stop})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	return nil
}

// OpenState opens <state_dir>/tandem.db. A corrupt database is moved
// aside (logged, and its new name returned) and a fresh one opened, so
// the appliance always comes up; a locked one (another daemon) is an
// error.
func OpenState(cfg config.Config, log *slog.Logger) (st *state.Store, movedTo string, err error) {
	log = orDiscard(log)
	path := filepath.Join(cfg.StateDir, config.DBFile)
	st, err = state.Open(path)
	if errors.Is(err, state.ErrCorrupt) {
		moved, rerr := state.Recover(path)
		if rerr != nil {
			return nil, "", fmt.Errorf("daemon: %w (moving it aside failed too: %v)", err, rerr)
		}
		log.Error("state database is corrupt: moved it aside and started a new one; its events are lost", "err", err, "moved_to", moved)
		st, err = state.Open(path)
		movedTo = moved
	}
	if err != nil {
		return nil, "", fmt.Errorf("daemon: %w", err)
	}
	return st, movedTo, nil
}

// StartReason describes a start: the version, a state database that had
// to be moved aside, and a previous run that ended without a stop event
// (killed, crashed, or power lost).
func StartReason(st *state.Store, recovered string) string {
	reason := "tandem " + version.String()
	if recovered != "" {
		reason += "; the state database was corrupt and was moved to " + recovered
	}
	if last, err := st.Events(0, -1); err == nil && len(last) == 1 && last[0].Kind != state.KindStop {
		reason += fmt.Sprintf("; the previous run ended without stopping (killed, crashed or power lost) after event #%d at %s",
			last[0].Seq, last[0].Time.Format("2006-01-02 15:04:05"))
	}
	return reason
}

// RecordConfig saves cfg as the last good config and, if it differs from
// the one saved before, records a config event naming the keys that
// changed.
func RecordConfig(st *state.Store, cfg config.Config, log *slog.Logger) {
	log = orDiscard(log)
	prev, err := st.LoadConfig()
	switch {
	case errors.Is(err, state.ErrNoConfig):
		record(st, log, state.Event{Kind: state.KindConfig, Reason: "first run with this state directory"})
	case err != nil:
		log.Warn("reading the last good config failed", "err", err)
	default:
		old, perr := config.Parse(prev)
		if perr != nil {
			record(st, log, state.Event{Kind: state.KindConfig, Reason: "config changed (the saved one no longer reads)"})
			break
		}
		if changed := config.Diff(old, cfg); len(changed) > 0 {
			record(st, log, state.Event{Kind: state.KindConfig, Reason: "changed since the last run: " + summarize(changed, 8)})
		}
	}
	if err := st.SaveConfig(cfg.JSON()); err != nil {
		log.Warn("saving the config failed", "err", err)
	}
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

func summarize(keys []string, n int) string {
	if len(keys) <= n {
		return strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(keys[:n], ", "), len(keys)-n)
}

func record(st *state.Store, log *slog.Logger, e state.Event) {
	if _, err := st.Append(e); err != nil {
		log.Warn("recording an event failed", "kind", e.Kind, "err", err)
	}
}

// stubProvider shows the configuration with nothing started.
type stubProvider struct {
	cfg     config.Config
	started time.Time
}

func (p *stubProvider) Status() api.Status {
	return StaticStatus(p.cfg, p.started)
}

// StaticStatus is the status of a daemon that has started nothing: the
// configured source, feeds and links, all "not started".
func StaticStatus(cfg config.Config, started time.Time) api.Status {
	st := api.Status{
		DeviceID: cfg.DeviceID,
		Version:  version.Version,
		Started:  started,
		Source:   api.SourceStatus{Type: cfg.Source.Type, State: api.StateNotStarted},
	}
	switch cfg.Source.Type {
	case config.SourceTone:
		st.Source.Name = fmt.Sprintf("%g Hz at %g dBFS", cfg.Source.Tone.Frequency, cfg.Source.Tone.LevelDBFS)
	case config.SourceDevice:
		st.Source.Name = cfg.Source.Device.Backend + ":" + cfg.Source.Device.Name
	}
	for _, role := range []string{config.RolePrimary, config.RoleFallback} {
		f, _ := cfg.Feed(role)
		st.Feeds = append(st.Feeds, api.FeedStatus{
			Role:        role,
			State:       api.StateNotStarted,
			Encoder:     api.EncoderStatus{State: api.StateNotStarted},
			BitrateKbps: float64(f.Bitrate) / 1000,
			Dest:        config.RedactURL(f.Dest),
			Link:        f.Link,
		})
	}
	for _, name := range cfg.LinkNames() {
		l := cfg.Links[name]
		st.Links = append(st.Links, api.LinkStatus{Name: name, Interface: l.Interface, Address: l.Address, Gateway: l.Gateway, Table: l.Table})
	}
	return st
}
