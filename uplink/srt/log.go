package srt

/*
#include "csrt.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// libsrt log levels (syslog numbers).
const (
	sysCrit    = 2
	sysErr     = 3
	sysWarning = 4
	sysNotice  = 5
	sysInfo    = 6
	sysDebug   = 7
)

const (
	logRate  = 20.0 // lines per second, sustained
	logBurst = 100.0
)

var logState struct {
	mu      sync.Mutex
	logger  *slog.Logger
	level   slog.Level
	tokens  float64
	last    time.Time
	dropped int
}

// SetLogger routes libsrt's own log lines (srt_setloghandler) at or above
// level into l, attributed with "area" (libsrt's functional area) and
// rate-limited (20 lines/s, bursts of 100; a summary reports suppressed
// lines). nil restores the default: discard. libsrt never writes to stderr
// itself. Lines arrive from libsrt's threads; slog handlers must be safe for
// concurrent use (the standard ones are).
func SetLogger(l *slog.Logger, level slog.Level) {
	logState.mu.Lock()
	logState.logger = l
	logState.level = level
	logState.tokens = logBurst
	logState.dropped = 0
	logState.mu.Unlock()
	applyLogConfig()
}

// applyLogConfig pushes the current choice into libsrt. libsrt's log config
// is a static object: safe before srt_startup.
func applyLogConfig() {
	logState.mu.Lock()
	on, level := logState.logger != nil, logState.level
	logState.mu.Unlock()
	if !on {
		C.tsrt_log_config(0, sysCrit)
		return
	}
	var sys int
	switch {
	case level <= slog.LevelDebug:
		sys = sysDebug
	case level <= slog.LevelInfo:
		sys = sysNotice
	case level <= slog.LevelWarn:
		sys = sysWarning
	default:
		sys = sysErr
	}
	C.tsrt_log_config(1, C.int(sys))
}

func slogLevel(sys int) slog.Level {
	switch {
	case sys <= sysErr:
		return slog.LevelError
	case sys == sysWarning:
		return slog.LevelWarn
	case sys == sysNotice || sys == sysInfo:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

//export goSrtLog
func goSrtLog(level C.int, file *C.char, line C.int, area *C.char, msg *C.char) {
	lv := slogLevel(int(level))
	logState.mu.Lock()
	l := logState.logger
	min := logState.level
	logState.mu.Unlock()
	if l == nil || lv < min {
		return
	}
	areaS, text := C.GoString(area), strings.TrimSpace(C.GoString(msg))
	if noise(areaS, text) {
		return
	}
	allow, dropped := rateLimit(time.Now())
	if !allow {
		return
	}
	ctx := context.Background()
	if dropped > 0 {
		l.Log(ctx, slog.LevelWarn, "srt: libsrt log lines suppressed", "count", dropped)
	}
	attrs := []any{"area", areaS}
	// libsrt prefixes "/<thread name>: " (e.g. "/SRT:RcvQ:w1: ").
	if strings.HasPrefix(text, "/") {
		if i := strings.Index(text, ": "); i > 0 {
			attrs = append(attrs, "thread", text[1:i])
			text = text[i+2:]
		}
	}
	l.Log(ctx, lv, text, attrs...)
}

// rateLimit is a token bucket (logRate per second, logBurst deep). It
// returns whether a line may pass and, if so, how many were dropped before.
func rateLimit(now time.Time) (allow bool, dropped int) {
	logState.mu.Lock()
	defer logState.mu.Unlock()
	if !logState.last.IsZero() {
		logState.tokens += now.Sub(logState.last).Seconds() * logRate
		if logState.tokens > logBurst {
			logState.tokens = logBurst
		}
	}
	logState.last = now
	if logState.tokens < 1 {
		logState.dropped++
		return false, 0
	}
	logState.tokens--
	dropped = logState.dropped
	logState.dropped = 0
	return true, dropped
}

// noise reports libsrt lines that libsrt 1.5.1 logs as errors during this
// package's normal operation:
//   - a non-blocking srt_accept with nothing pending;
//   - srt_epoll_remove_usock: libsrt drops the subscription, then posts an
//     event to that epoll id before forgetting it ("IPE: update struck E1
//     which is NOT SUBSCRIBED"), harmless.
func noise(area, msg string) bool {
	switch area {
	case "accept":
		return strings.Contains(msg, "no pending connection")
	case "update_events":
		return strings.Contains(msg, "NOT SUBSCRIBED")
	}
	return false
}
