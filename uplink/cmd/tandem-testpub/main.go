// Command tandem-testpub publishes a test tone as a stream's matched,
// aligned primary and fallback feeds, the way the appliance does. Run both
// feeds in one process, or one feed per process with a shared -session and
// -epoch (so one of them can be killed in a test).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"tandem/uplink/media"
	"time"

	"tandem/uplink/streamid"
	"tandem/uplink/testpub"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "switcher SRT address")
	stream := flag.String("stream", "live/test", "<app>/<name>")
	key := flag.String("key", "", "stream key")
	passphrase := flag.String("passphrase", "", "SRT passphrase")
	session := flag.String("session", "", "capture session id (default random)")
	epoch := flag.Int64("epoch", 0, "capture epoch, Unix nanoseconds (default now)")
	role := flag.String("role", "both", "primary, fallback or both")
	bitrate := flag.Int("bitrate", 128000, "primary bitrate, bit/s")
	fbBitrate := flag.Int("fallback-bitrate", 64000, "fallback bitrate, bit/s")
	freq := flag.Float64("freq", 440, "tone frequency, Hz")
	level := flag.Float64("level", -12, "tone peak level, dBFS")
	rate := flag.Int("rate", 48000, "sample rate")
	channels := flag.Int("channels", 2, "channels")
	localA := flag.String("local-primary", "", "source address for the primary feed")
	localB := flag.String("local-fallback", "", "source address for the fallback feed")
	latency := flag.Duration("latency", 120*time.Millisecond, "SRT latency")
	sendLog := flag.String("sendlog", "", "append one line per sent frame to this file: role, payload hash, send time (Unix ns); for latency measurements")
	flag.Parse()

	app, name, ok := strings.Cut(*stream, "/")
	if !ok {
		fmt.Fprintln(os.Stderr, "tandem-testpub: -stream must be <app>/<name>")
		os.Exit(2)
	}
	var feeds []testpub.Feed
	if *role == "both" || *role == "primary" {
		feeds = append(feeds, testpub.Feed{Role: streamid.RolePrimary, Bitrate: *bitrate, LocalAddr: *localA})
	}
	if *role == "both" || *role == "fallback" {
		feeds = append(feeds, testpub.Feed{Role: streamid.RoleFallback, Bitrate: *fbBitrate, LocalAddr: *localB})
	}
	if len(feeds) == 0 {
		fmt.Fprintln(os.Stderr, "tandem-testpub: -role must be primary, fallback or both")
		os.Exit(2)
	}
	var ep time.Time
	if *epoch != 0 {
		ep = time.Unix(0, *epoch)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "testpub")
	var onSend func(streamid.Role, media.Frame, time.Time)
	if *sendLog != "" {
		f, err := os.OpenFile(*sendLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tandem-testpub:", err)
			os.Exit(2)
		}
		defer f.Close()
		var mu sync.Mutex
		w := bufio.NewWriter(f)
		defer w.Flush()
		onSend = func(r streamid.Role, fr media.Frame, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(w, "%s %s %d\n", r, testpub.FrameHash(fr.Data), at.UnixNano())
			w.Flush()
		}
	}
	p, err := testpub.New(testpub.Config{OnSend: onSend, Addr: *addr, App: app, Name: name, Key: *key, Passphrase: *passphrase,
		Session: *session, Epoch: ep, Frequency: *freq, LevelDBFS: *level, SampleRate: *rate, Channels: *channels,
		Latency: *latency, Feeds: feeds, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-testpub:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("publishing", "stream", *stream, "session", p.Session(), "feeds", *role)
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-testpub:", err)
		os.Exit(1)
	}
}
