// Command tandem-switcher is Tandem's cloud service: it ingests both feeds
// of every stream over SRT, merges them so the output never has a hole, and
// serves listeners and the API over HTTP.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"tandem/uplink/srt"
	"tandem/uplink/switcher"
)

func main() {
	configPath := flag.String("config", "", "JSON config file (defaults are used for anything it does not set)")
	verbose := flag.Bool("v", false, "debug logging, including libsrt's own log")
	printConfig := flag.Bool("print-config", false, "print the effective configuration and exit")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srt.SetLogger(log.With("component", "libsrt"), slog.LevelWarn)
	if *verbose {
		srt.SetLogger(log.With("component", "libsrt"), slog.LevelDebug)
	}

	cfg, err := switcher.LoadConfig(*configPath, os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-switcher:", err)
		os.Exit(2)
	}
	if *printConfig {
		fmt.Printf("%+v\nplayout delay: %v\n", cfg, cfg.EffectivePlayoutDelay())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := switcher.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-switcher:", err)
		os.Exit(2)
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-switcher:", err)
		os.Exit(1)
	}
	<-ctx.Done()
	log.Info("shutting down")
	srv.Close()
}
