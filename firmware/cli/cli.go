// Package cli is the tandem command line: the daemon (`tandem run`) and the
// maintenance commands an engineer uses over SSH.
//
//	tandem run [-config F] [-v]          run the daemon
//	tandem status [-json]                links, feeds, input levels, last events
//	tandem events [-since N] [-n 50]     the event log
//	tandem config check [-config F]      validate a config (exit 2 if invalid)
//	tandem config env                    the TANDEM_* environment variables
//	tandem version
//
// status and events talk to the daemon over its unix socket: -socket, else
// TANDEM_API_SOCKET, else /run/tandem/api.sock.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tandem/firmware/config"
	"tandem/firmware/version"
)

// RunFunc runs the daemon until ctx ends (daemon.Run, or the supervisor's).
type RunFunc func(ctx context.Context, cfg config.Config, log *slog.Logger) error

// Program is the tandem command with its surroundings, so tests can run it
// in-process.
type Program struct {
	// Run is what `tandem run` calls with the loaded config.
	Run RunFunc
	// Environ is the environment (os.Environ()).
	Environ        []string
	Stdout, Stderr io.Writer
	// Now is the clock for "ago" and uptimes (time.Now if nil).
	Now func() time.Time
}

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed (daemon not running, API error)
	ExitUsage = 2 // bad usage or an invalid config
)

const usage = `usage: tandem <command> [flags]

commands:
  run [-config F] [-v]            run the daemon (defaults, then F, then TANDEM_* variables)
  status [-json]                  links, feeds, input levels and the last events
  events [-since N] [-n 50]       the event log (newest n, or n after seq N)
  config check [-config F]        validate the config; exit 2 if invalid
  config env                      list the TANDEM_* environment variables
  version                         print the version

status and events reach the daemon on -socket PATH, else $TANDEM_API_SOCKET,
else ` + config.DefaultSocket + `.
`

// Main runs the command in args (without the program name) and returns the
// exit code.
func (p Program) Main(args []string) int {
	if p.Stdout == nil {
		p.Stdout = io.Discard
	}
	if p.Stderr == nil {
		p.Stderr = io.Discard
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if len(args) == 0 {
		fmt.Fprint(p.Stderr, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return p.run(rest)
	case "status":
		return p.status(rest)
	case "events":
		return p.events(rest)
	case "config":
		return p.config(rest)
	case "version", "-version", "--version":
		fmt.Fprintln(p.Stdout, "tandem", version.String())
		return ExitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(p.Stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(p.Stderr, "tandem: unknown command %q\n\n%s", cmd, usage)
	return ExitUsage
}

// flags makes a FlagSet that reports to stderr and does not exit.
func (p Program) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tandem "+name, flag.ContinueOnError)
	fs.SetOutput(p.Stderr)
	return fs
}

// parse parses flags and refuses stray arguments; ok false means: return
// code.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return ExitUsage, false
	}
	return 0, true
}

func (p Program) getenv(name string) string {
	for _, kv := range p.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

func (p Program) run(args []string) int {
	fs := p.flags("run")
	path := fs.String("config", "", "JSON config file (defaults are used for anything it does not set)")
	verbose := fs.Bool("v", false, "debug logging")
	jsonLog := fs.Bool("log-json", false, "log as JSON lines instead of text")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path, p.Environ)
	if err != nil {
		p.printConfigErrors(*path, err)
		return ExitUsage
	}
	if p.Run == nil {
		fmt.Fprintln(p.Stderr, "tandem: this build has no daemon")
		return ExitError
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(p.Stderr, opts)
	if *jsonLog {
		h = slog.NewJSONHandler(p.Stderr, opts)
	}
	log := slog.New(h)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutdown has begun, a second signal kills as usual.
	context.AfterFunc(ctx, stop)
	log.Info("tandem starting", "version", version.String(), "device_id", cfg.DeviceID, "config", *path)
	if err := p.Run(ctx, cfg, log); err != nil {
		log.Error("tandem stopped", "err", err)
		return ExitError
	}
	log.Info("tandem stopped")
	return ExitOK
}

func (p Program) printConfigErrors(path string, err error) {
	where := "the config (defaults and environment)"
	if path != "" {
		where = path
	}
	fmt.Fprintf(p.Stderr, "tandem: %s is invalid:\n", where)
	for _, line := range config.Errors(err) {
		fmt.Fprintf(p.Stderr, "  %s\n", line)
	}
}

func (p Program) config(args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(p.Stderr, "tandem config: say check or env\n\n%s", usage)
		return ExitUsage
	}
	switch args[0] {
	case "check":
		fs := p.flags("config check")
		path := fs.String("config", "", "JSON config file to check (with defaults and TANDEM_* variables applied)")
		show := fs.Bool("print", false, "print the effective config (secrets hidden)")
		if code, ok := parse(fs, args[1:]); !ok {
			return code
		}
		cfg, err := config.Load(*path, p.Environ)
		if err != nil {
			p.printConfigErrors(*path, err)
			return ExitUsage
		}
		where := *path
		if where == "" {
			where = "defaults and environment"
		}
		fmt.Fprintf(p.Stdout, "config OK (%s)\n", where)
		p.summary(cfg)
		if *show {
			fmt.Fprintf(p.Stdout, "%s\n", cfg.Redacted().JSON())
		}
		return ExitOK
	case "env":
		fs := p.flags("config env")
		if code, ok := parse(fs, args[1:]); !ok {
			return code
		}
		for _, v := range config.EnvVars() {
			fmt.Fprintf(p.Stdout, "%-40s %s\n", v.Name, v.Key)
		}
		return ExitOK
	}
	fmt.Fprintf(p.Stderr, "tandem config: unknown command %q\n\n%s", args[0], usage)
	return ExitUsage
}

// summary says in a few lines what a valid config will do.
func (p Program) summary(c config.Config) {
	w := p.Stdout
	fmt.Fprintf(w, "  stream   %s/%s (fallback %s)\n", c.App, c.DeviceID, c.StreamName(config.RoleFallback))
	switch c.Source.Type {
	case config.SourceTone:
		fmt.Fprintf(w, "  source   test tone %g Hz at %g dBFS\n", c.Source.Tone.Frequency, c.Source.Tone.LevelDBFS)
	case config.SourceDevice:
		d := c.Source.Device
		fmt.Fprintf(w, "  source   %s device %q, %d Hz, %d ch\n", d.Backend, d.Name, d.SampleRate, d.Channels)
	}
	for _, role := range []string{config.RolePrimary, config.RoleFallback} {
		f, _ := c.Feed(role)
		l := c.Links[f.Link]
		via := l.Address
		if l.Interface != "" {
			via = l.Interface
			if l.Address != "" {
				via += " " + l.Address
			}
		}
		fmt.Fprintf(w, "  %-8s %s %d kbit/s %d Hz %d ch -> %s over link %s (%s)\n", role, f.Codec, f.Bitrate/1000, f.SampleRate, f.Channels, config.RedactURL(f.Dest), f.Link, via)
	}
	pr := "off"
	if c.PolicyRoutingEnabled() {
		pr = "on"
	}
	fmt.Fprintf(w, "  routing  policy routing %s\n", pr)
	fmt.Fprintf(w, "  api      %s", c.API.Socket)
	if c.API.HTTP != "" {
		fmt.Fprintf(w, ", http://%s", c.API.HTTP)
	}
	fmt.Fprintf(w, "\n  state    %s\n", c.StateDir)
}
