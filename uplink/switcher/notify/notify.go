// Package notify delivers the switcher's events to webhooks. It is never on
// the media path: Notify only queues, and each hook has its own goroutine
// that posts its queue in order, one request in flight, retrying the head
// with exponential backoff until it is delivered (or permanently refused).
// A receiver that was down therefore gets everything, in order, once it is
// back — as long as its queue did not overflow, in which case the oldest
// events are dropped and reported.
//
// Each request is signed: X-Tandem-Signature is
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)) with the
// timestamp sent in X-Tandem-Timestamp (Unix seconds). Receivers check it
// with Verify, and should also refuse timestamps far from their clock.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/uplink/switcher/eventlog"
)

// Hook is one webhook receiver.
type Hook struct {
	URL    string
	Secret string
	// Streams limits the hook to these streams; empty means all.
	Streams []string
	// Kinds limits the hook to these event kinds; empty means all.
	Kinds []string
}

func (h Hook) wants(e eventlog.Event) bool {
	return (len(h.Streams) == 0 || slices.Contains(h.Streams, e.Stream)) &&
		(len(h.Kinds) == 0 || slices.Contains(h.Kinds, e.Kind))
}

// Config configures a Notifier. Zero values take the defaults documented
// on each field.
type Config struct {
	Hooks []Hook
	// Queue is how many events wait per hook (besides the one being
	// delivered); a full queue drops its oldest. Default 1000.
	Queue int
	// MaxAttempts gives up on an event after this many failed attempts;
	// 0 retries forever while it is queued.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff with each failure. Defaults 1 s and 60 s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one attempt. Default 5 s.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Queue <= 0 {
		c.Queue = 1000
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return c
}

// Validate reports the first bad field, naming it.
func (c Config) Validate() error {
	for i, h := range c.Hooks {
		u, err := url.Parse(h.URL)
		if err != nil {
			return fmt.Errorf("notify: hooks[%d].url: %w", i, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("notify: hooks[%d].url %q: scheme must be http or https", i, h.URL)
		}
		if u.Host == "" {
			return fmt.Errorf("notify: hooks[%d].url %q: no host", i, h.URL)
		}
		if u.User != nil {
			return fmt.Errorf("notify: hooks[%d].url: credentials in the URL are not supported (use the secret)", i)
		}
	}
	if c.Queue < 0 {
		return fmt.Errorf("notify: queue %d: must not be negative", c.Queue)
	}
	if c.MaxAttempts < 0 {
		return fmt.Errorf("notify: max_attempts %d: must not be negative (0 retries forever)", c.MaxAttempts)
	}
	d := c.withDefaults()
	if d.MinBackoff > d.MaxBackoff {
		return fmt.Errorf("notify: min_backoff %v is above max_backoff %v", d.MinBackoff, d.MaxBackoff)
	}
	return nil
}

// Result reports one delivery attempt, or an event dropped unsent.
type Result struct {
	Hook    string // the hook's URL
	Event   uint64 // the event's Seq
	Attempt int    // 1 for the first attempt; for a drop, the attempts made before it (often 0)
	Status  int    // the HTTP status, 0 when there was no response
	Err     error  // why it was not delivered; nil when Delivered
	// Delivered is set when the receiver accepted the event (2xx).
	Delivered bool
}

// Errors a Result's Err wraps; branch with errors.Is.
var (
	// ErrDropped: the hook's queue was full and the event was dropped
	// unsent (or it was still queued when Run ended).
	ErrDropped = errors.New("notify: dropped")
	// ErrRefused: the receiver answered with a status that retrying will
	// not change (4xx other than 408/429, or 1xx/3xx); the event is given up.
	ErrRefused = errors.New("notify: refused by the receiver")
	// ErrGaveUp: MaxAttempts attempts failed; the event is given up.
	ErrGaveUp = errors.New("notify: gave up")
	// ErrBadSignature: Verify found the signature wrong or malformed.
	ErrBadSignature = errors.New("notify: bad signature")
)

// payload is the request body.
type payload struct {
	ID     uint64    `json:"id"`
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Kind   string    `json:"kind"`
	Input  string    `json:"input"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// Body is the JSON a hook receives for e.
func Body(e eventlog.Event) []byte {
	b, _ := json.Marshal(payload{ID: e.Seq, Time: e.Time, Stream: e.Stream, Kind: e.Kind, Input: e.Input, From: e.From, To: e.To, Reason: e.Reason})
	return b
}

// Sign returns the X-Tandem-Signature value for body sent at timestamp.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's X-Tandem-Signature against its
// X-Tandem-Timestamp and body. It does not judge the timestamp's age.
func Verify(secret string, timestamp string, body []byte, signature string) error {
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: %q does not start with sha256=", ErrBadSignature, signature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: it does not match the body and timestamp", ErrBadSignature)
	}
	return nil
}

// item is one queued delivery.
type item struct {
	delivery uint64 // X-Tandem-Delivery: the hook's own sequence
	event    eventlog.Event
	body     []byte
	attempts int
}

// hook is one receiver's queue. The worker owns the head while sending
// sets it in flight; Notify may drop anything else.
type hook struct {
	cfg  Hook
	mu   sync.Mutex
	q    []*item
	next uint64 // last delivery number handed out
	// sending is set while queue[0] is in an HTTP attempt: it is then not
	// dropped (its outcome is about to be known).
	sending bool
	wake    chan struct{}
}

// Notifier delivers events to the configured hooks.
type Notifier struct {
	cfg      Config
	hooks    []*hook
	onResult func(Result)
	log      *slog.Logger
	client   *http.Client
	tr       *http.Transport

	// Results go through a queue to one goroutine, so Notify never runs
	// the callback and a slow callback never holds a delivery.
	resMu   sync.Mutex
	results []Result
	resLost int
	resWake chan struct{}
	running sync.Mutex // held by Run
	randMu  sync.Mutex
	rnd     *rand.Rand
}

// maxPendingResults bounds the results waiting for the callback.
const maxPendingResults = 10000

// New checks cfg and makes a Notifier; Run delivers. onResult (may be nil)
// receives every attempt's outcome and every drop, from one goroutine, in
// order per hook; it should not block for long.
func New(cfg Config, onResult func(Result), log *slog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onResult == nil {
		onResult = func(Result) {}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	n := &Notifier{
		cfg:      cfg,
		onResult: onResult,
		log:      log,
		tr:       tr,
		client: &http.Client{
			Transport: tr,
			// A webhook that redirects is misconfigured; following it
			// would post the event somewhere nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		resWake: make(chan struct{}, 1),
		rnd:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x7a6e)),
	}
	for _, h := range cfg.Hooks {
		n.hooks = append(n.hooks, &hook{cfg: h, wake: make(chan struct{}, 1)})
	}
	return n, nil
}

// Notify queues e for every hook that wants it and returns at once. A
// full queue drops its oldest waiting event, reported as a Result wrapping
// ErrDropped.
func (n *Notifier) Notify(e eventlog.Event) {
	var body []byte
	for _, h := range n.hooks {
		if !h.cfg.wants(e) {
			continue
		}
		if body == nil {
			body = Body(e)
		}
		h.mu.Lock()
		h.next++
		it := &item{delivery: h.next, event: e, body: body}
		var dropped *item
		if len(h.q) >= n.cfg.Queue+btoi(h.sending) {
			// The one in flight is not dropped: its outcome is due.
			i := btoi(h.sending)
			dropped = h.q[i]
			h.q = slices.Delete(h.q, i, i+1)
		}
		h.q = append(h.q, it)
		h.mu.Unlock()
		if dropped != nil {
			n.result(Result{Hook: h.cfg.URL, Event: dropped.event.Seq, Attempt: dropped.attempts,
				Err: fmt.Errorf("%w: queue of %d full, dropped the oldest event %d (delivery %d) after %d attempts",
					ErrDropped, n.cfg.Queue, dropped.event.Seq, dropped.delivery, dropped.attempts)})
		}
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Queued is how many events wait for hook i (the one in flight included).
func (n *Notifier) Queued(i int) int {
	h := n.hooks[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.q)
}

func (n *Notifier) result(r Result) {
	n.resMu.Lock()
	if len(n.results) >= maxPendingResults {
		n.resLost++
	} else {
		n.results = append(n.results, r)
	}
	n.resMu.Unlock()
	select {
	case n.resWake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then returns nil once every goroutine it
// started has stopped. Events still queued then are reported as dropped.
// Run may be called again after it returns.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.TryLock() {
		return errors.New("notify: Run is already running")
	}
	defer n.running.Unlock()
	var wg sync.WaitGroup
	for _, h := range n.hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.deliver(ctx, h)
		}()
	}
	resDone := make(chan struct{})
	go func() {
		defer close(resDone)
		n.dispatch(ctx)
	}()
	wg.Wait()
	n.tr.CloseIdleConnections()
	for _, h := range n.hooks {
		h.mu.Lock()
		q := h.q
		h.q = nil
		h.mu.Unlock()
		for _, it := range q {
			n.result(Result{Hook: h.cfg.URL, Event: it.event.Seq, Attempt: it.attempts,
				Err: fmt.Errorf("%w: still queued when the notifier stopped", ErrDropped)})
		}
	}
	<-resDone
	n.flushResults()
	return nil
}

// dispatch hands results to the callback until ctx ends.
func (n *Notifier) dispatch(ctx context.Context) {
	for {
		n.flushResults()
		select {
		case <-ctx.Done():
			return
		case <-n.resWake:
		}
	}
}

func (n *Notifier) flushResults() {
	for {
		n.resMu.Lock()
		rs, lost := n.results, n.resLost
		n.results, n.resLost = nil, 0
		n.resMu.Unlock()
		if lost > 0 {
			n.log.Warn("webhook results lost: the result callback is too slow", "lost", lost)
		}
		if len(rs) == 0 {
			return
		}
		for _, r := range rs {
			n.onResult(r)
		}
	}
}

// deliver is one hook's worker: post the head, retry it until it is
// settled, move on.
func (n *Notifier) deliver(ctx context.Context, h *hook) {
	for {
		h.mu.Lock()
		if len(h.q) == 0 {
			h.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-h.wake:
				continue
			}
		}
		it := h.q[0]
		it.attempts++
		h.sending = true
		h.mu.Unlock()

		status, retryAfter, err := n.post(ctx, h, it)

		h.mu.Lock()
		h.sending = false
		r := Result{Hook: h.cfg.URL, Event: it.event.Seq, Attempt: it.attempts, Status: status}
		settled := true
		switch {
		case err == nil:
			r.Delivered = true
		case errors.Is(err, ErrRefused):
			r.Err = err
		case ctx.Err() != nil:
			// Stopping: the attempt was cut short, not failed. It stays
			// queued (and is reported as such by Run).
			it.attempts--
			h.mu.Unlock()
			return
		case n.cfg.MaxAttempts > 0 && it.attempts >= n.cfg.MaxAttempts:
			r.Err = fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, it.attempts, err)
		default:
			r.Err = err
			settled = false
		}
		if settled {
			// The head is still it: nothing removes an item in flight.
			h.q = slices.Delete(h.q, 0, 1)
		}
		h.mu.Unlock()
		n.result(r)
		if settled {
			continue
		}
		n.log.Debug("webhook attempt failed; will retry", "url", h.cfg.URL, "event", it.event.Seq, "attempt", it.attempts, "err", err)
		if !n.backoff(ctx, h, it, retryAfter) {
			return
		}
	}
}

// backoff waits before the next attempt at it, or less if it is dropped
// from the queue meanwhile. False when ctx ended.
func (n *Notifier) backoff(ctx context.Context, h *hook, it *item, retryAfter time.Duration) bool {
	d := n.cfg.MinBackoff
	for i := 1; i < it.attempts && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	// Jitter: between half and all of it, so hooks that failed together
	// do not retry together.
	n.randMu.Lock()
	d = d/2 + time.Duration(n.rnd.Int64N(int64(d/2)+1))
	n.randMu.Unlock()
	if retryAfter > d {
		d = min(retryAfter, n.cfg.MaxBackoff)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-h.wake:
			h.mu.Lock()
			dropped := len(h.q) == 0 || h.q[0] != it
			h.mu.Unlock()
			if dropped {
				return true
			}
		}
	}
}

// post makes one attempt. err is nil when delivered, wraps ErrRefused when
// retrying is pointless, and is anything else for a retry.
func (n *Notifier) post(ctx context.Context, h *hook, it *item) (status int, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.cfg.URL, bytes.NewReader(it.body))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem-switcher")
	req.Header.Set("X-Tandem-Event", it.event.Kind)
	req.Header.Set("X-Tandem-Delivery", strconv.FormatUint(it.delivery, 10))
	req.Header.Set("X-Tandem-Timestamp", ts)
	if h.cfg.Secret != "" {
		req.Header.Set("X-Tandem-Signature", Sign(h.cfg.Secret, ts, it.body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("notify: post event %d to %s: %w", it.event.Seq, redact(h.cfg.URL), err)
	}
	// Drain a little so the connection can be reused; never much.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	status = resp.StatusCode
	switch {
	case status >= 200 && status < 300:
		return status, 0, nil
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := strconv.Atoi(s); err == nil && secs > 0 {
				retryAfter = time.Duration(secs) * time.Second
			}
		}
		return status, retryAfter, fmt.Errorf("notify: post event %d to %s: %s", it.event.Seq, redact(h.cfg.URL), resp.Status)
	default:
		return status, 0, fmt.Errorf("%w: post event %d to %s: %s", ErrRefused, it.event.Seq, redact(h.cfg.URL), resp.Status)
	}
}

// redact drops the query from a URL for logs and errors: it may carry a
// token.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(bad url)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}
