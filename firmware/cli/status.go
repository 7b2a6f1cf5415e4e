package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"tandem/firmware/api"
	"tandem/firmware/config"
	"tandem/firmware/state"
)

// notRunning explains a failed connection to the daemon's socket.
func notRunning(sock string, err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("tandem daemon not running (no socket at %s)", sock)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("tandem daemon not running (socket %s refuses connections: left by a crashed run?)", sock)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Sprintf("permission denied on %s (run as root or as a member of the socket's group)", sock)
	}
	return fmt.Sprintf("cannot reach the tandem daemon at %s: %v", sock, err)
}

// fetch GETs an API path into v; the string is a message for the user.
func fetch(sock, path string, v any) (raw []byte, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.BaseURL+path, nil)
	if err != nil {
		return nil, err.Error()
	}
	resp, err := api.Client(sock).Do(req)
	if err != nil {
		return nil, notRunning(sock, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Sprintf("reading the daemon's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Sprintf("the daemon says: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Sprintf("the daemon answered HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Sprintf("the daemon's answer does not read: %v", err)
	}
	return raw, ""
}

// socket is -socket, else TANDEM_API_SOCKET, else the default.
func (p Program) socket(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if s := p.getenv("TANDEM_API_SOCKET"); s != "" {
		return s
	}
	return config.DefaultSocket
}

func (p Program) status(args []string) int {
	fs := p.flags("status")
	sockFlag := fs.String("socket", "", "the daemon's API socket (default $TANDEM_API_SOCKET or "+config.DefaultSocket+")")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	sock := p.socket(*sockFlag)
	var st api.Status
	raw, msg := fetch(sock, "/api/v1/status", &st)
	if msg != "" {
		fmt.Fprintln(p.Stderr, msg)
		return ExitError
	}
	if *asJSON {
		p.Stdout.Write(raw)
		return ExitOK
	}
	p.printStatus(st)
	return ExitOK
}

func (p Program) events(args []string) int {
	fs := p.flags("events")
	sockFlag := fs.String("socket", "", "the daemon's API socket (default $TANDEM_API_SOCKET or "+config.DefaultSocket+")")
	since := fs.Int64("since", -1, "show events after this sequence number (default: the newest)")
	n := fs.Int("n", api.DefaultEventLimit, fmt.Sprintf("how many events (1-%d)", api.MaxEventLimit))
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *n < 1 || *n > api.MaxEventLimit {
		fmt.Fprintf(p.Stderr, "tandem events: -n %d must be 1 to %d\n", *n, api.MaxEventLimit)
		return ExitUsage
	}
	q := url.Values{"limit": {strconv.Itoa(*n)}}
	if *since >= 0 {
		q.Set("since", strconv.FormatInt(*since, 10))
	}
	var r api.EventsResponse
	raw, msg := fetch(p.socket(*sockFlag), "/api/v1/events?"+q.Encode(), &r)
	if msg != "" {
		fmt.Fprintln(p.Stderr, msg)
		return ExitError
	}
	if *asJSON {
		p.Stdout.Write(raw)
		return ExitOK
	}
	if len(r.Events) == 0 {
		fmt.Fprintln(p.Stdout, "no events")
		return ExitOK
	}
	tw := tabwriter.NewWriter(p.Stdout, 0, 0, 2, ' ', 0)
	for _, e := range r.Events {
		printEvent(tw, e)
	}
	tw.Flush()
	return ExitOK
}

func printEvent(w io.Writer, e state.Event) {
	// The daemon's local time, as its log shows it.
	fmt.Fprintf(w, "  #%d\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("2006-01-02 15:04:05"), e.Kind, dash(e.Subject), e.Reason)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p Program) printStatus(st api.Status) {
	w := p.Stdout
	now := p.Now()
	head := "tandem  device " + dash(st.DeviceID)
	if st.SessionID != "" {
		head += "  session " + st.SessionID
	}
	if !st.Started.IsZero() {
		head += "  up " + human(time.Duration(st.UptimeSeconds*float64(time.Second)))
	}
	if st.Version != "" {
		head += "  version " + st.Version
	}
	fmt.Fprintln(w, head)

	fmt.Fprintln(w, "\nLINKS")
	if len(st.Links) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range st.Links {
		up := "not watched"
		if l.Up != nil {
			up = "up"
			if !*l.Up {
				up = "DOWN"
			}
		}
		routing := "not routed"
		if l.Routed {
			routing = "routed"
		}
		table := "-"
		if l.Table != 0 {
			table = strconv.Itoa(l.Table)
		}
		fmt.Fprintf(tw, "  %s\t%s\tiface %s\taddr %s\tgw %s\ttable %s\t%s\n", l.Name, up, dash(l.Interface), dash(l.Address), dash(l.Gateway), table, routing)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nFEEDS")
	if len(st.Feeds) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, f := range st.Feeds {
		fmt.Fprintf(w, "  %-8s  %-12s  %4.0f kbit/s  link %s  %s\n", f.Role, upper(f.State), f.BitrateKbps, dash(f.Link), dash(f.Dest))
		rtt := "-"
		if f.SRT.RTTms > 0 {
			rtt = fmt.Sprintf("%.1f ms", f.SRT.RTTms)
		}
		enc := fmt.Sprintf("encoder %s", dash(f.Encoder.State))
		if f.Encoder.PID != 0 {
			enc += fmt.Sprintf(" pid %d", f.Encoder.PID)
		}
		enc += fmt.Sprintf(", %d restart%s", f.Encoder.Restarts, plural(f.Encoder.Restarts))
		fmt.Fprintf(w, "            rtt %s  loss %d  retrans %d  reconnects %d  sent %d  dropped %d  %s\n",
			rtt, f.SRT.SendLoss, f.SRT.Retrans, f.Reconnects, f.Sent, f.Dropped, enc)
		if !f.ConnectedSince.IsZero() {
			fmt.Fprintf(w, "            connected %s ago (since %s)\n", human(now.Sub(f.ConnectedSince)), f.ConnectedSince.Format("2006-01-02 15:04:05"))
		}
		if f.Error != "" {
			fmt.Fprintf(w, "            last error: %s\n", f.Error)
		}
	}

	src := st.Source
	fmt.Fprintf(w, "\nINPUT  %s %s  %s\n", dash(src.Type), src.Name, upper(src.State))
	if len(src.Levels) == 0 {
		fmt.Fprintln(w, "  no levels")
	}
	for i, l := range src.Levels {
		fmt.Fprintf(w, "  %-3s peak %s  rms %s  %s\n", channelName(i, len(src.Levels)), dbfs(l.PeakDBFS), dbfs(l.RMSDBFS), bar(l.RMSDBFS, l.PeakDBFS))
	}
	if src.SilentMs > 0 {
		fmt.Fprintf(w, "  SILENT for %s\n", human(time.Duration(src.SilentMs)*time.Millisecond))
	}

	fmt.Fprintf(w, "\nEVENTS (last %d)\n", api.StatusEvents)
	if len(st.Events) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range st.Events {
		printEvent(tw, e)
	}
	tw.Flush()
}

// upper shouts states that need attention, so they stand out in a list.
func upper(s string) string {
	switch s {
	case api.StateFailed, api.StateReconnecting, api.StateRestarting, api.StateStopped:
		return strings.ToUpper(s)
	}
	return dash(s)
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func channelName(i, n int) string {
	if n == 2 {
		return [2]string{"L", "R"}[i]
	}
	return strconv.Itoa(i + 1)
}

// Level display range: a bar spans -60..0 dBFS.
const (
	barFloor = -60.0
	barWidth = 30
)

func dbfs(v float64) string {
	if v <= -199 || math.IsInf(v, -1) || math.IsNaN(v) {
		return " -inf dBFS"
	}
	return fmt.Sprintf("%5.1f dBFS", v)
}

// bar draws rms as '#' and the peak as '|' on a -60..0 dBFS scale.
func bar(rms, peak float64) string {
	pos := func(v float64) int {
		if math.IsNaN(v) || v <= barFloor {
			return 0
		}
		return int(math.Round(min(1, (v-barFloor)/-barFloor) * barWidth))
	}
	b := []byte(strings.Repeat("-", barWidth))
	for i := range pos(rms) {
		b[i] = '#'
	}
	if n := pos(peak); n > 0 {
		b[n-1] = '|'
	}
	return "[" + string(b) + "]"
}

// human writes a duration for people: 45s, 12m03s, 2h03m, 3d04h.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}
