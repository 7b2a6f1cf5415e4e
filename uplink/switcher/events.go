package switcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"tandem/uplink/switcher/eventlog"
	"tandem/uplink/switcher/notify"
)

// notifyKinds are the events webhooks hear about: the logical stream's
// publish and unpublish, failovers and recoveries, health changes, manual
// actions and refusals. Holes, holds and modes stay in the event log.
var notifyKinds = map[string]bool{
	"publish": true, "unpublish": true, "switch": true, "health": true,
	"manual": true, "input-refused": true, "publish-refused": true,
}

// startEvents opens the event log and starts the writer that persists
// events and hands them to webhooks. Appends fsync, so they never run on a
// stream's loop: streams only queue events.
func (s *Server) startEvents(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state_dir %s: %w", s.cfg.StateDir, err)
	}
	el, err := eventlog.Open(filepath.Join(s.cfg.StateDir, "events.db"), s.log.With("component", "eventlog"))
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	s.eventLog = el
	var hooks []notify.Hook
	for _, h := range s.cfg.Webhooks {
		hooks = append(hooks, notify.Hook{URL: h.URL, Secret: h.Secret, Streams: h.Streams, Kinds: h.Kinds})
	}
	if len(hooks) > 0 {
		n, err := notify.New(notify.Config{Hooks: hooks}, s.webhookResult, s.log.With("component", "webhooks"))
		if err != nil {
			el.Close()
			return fmt.Errorf("webhooks: %w", err)
		}
		s.notifier = n
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			n.Run(ctx)
		}()
	}
	s.eventsDone = make(chan struct{})
	go s.writeEvents()
	return nil
}

// emit queues an event for the log; it never blocks a stream.
func (s *Server) emit(e Event) {
	s.emitMu.RLock()
	defer s.emitMu.RUnlock()
	if s.eventsClosed {
		return
	}
	select {
	case s.eventq <- e:
	default:
		if n := s.lostEvts.Add(1); n == 1 || n%100 == 0 {
			s.log.Error("event log queue full: events lost", "lost", n)
		}
	}
}

func (s *Server) writeEvents() {
	defer close(s.eventsDone)
	for e := range s.eventq {
		if s.eventLog == nil {
			continue
		}
		stored, err := s.eventLog.Append(e)
		if err != nil {
			if !errors.Is(err, eventlog.ErrClosed) {
				s.log.Error("event log append failed", "err", err, "kind", e.Kind)
			}
			continue
		}
		if s.notifier != nil && notifyKinds[stored.Kind] {
			s.notifier.Notify(stored)
		}
	}
}

// webhookResult records each delivery outcome in the event log.
func (s *Server) webhookResult(r notify.Result) {
	e := Event{Time: time.Now(), Kind: "webhook", Reason: fmt.Sprintf("event %d to %s: delivered (attempt %d, HTTP %d)", r.Event, r.Hook, r.Attempt, r.Status)}
	if !r.Delivered {
		e.Reason = fmt.Sprintf("event %d to %s: attempt %d failed: %v", r.Event, r.Hook, r.Attempt, r.Err)
	}
	s.emit(e)
}

// stopEvents drains the queue into the log and closes it; called once the
// streams have stopped.
func (s *Server) stopEvents() {
	if s.eventsDone == nil {
		return
	}
	s.emitMu.Lock()
	s.eventsClosed = true
	close(s.eventq)
	s.emitMu.Unlock()
	<-s.eventsDone
	s.eventsDone = nil
	s.eventLog.Close()
}
