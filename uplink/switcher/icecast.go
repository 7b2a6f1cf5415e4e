package switcher

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/streamid"
)

// Icecast source clients (ffmpeg, butt, liquidsoap) push ADTS with HTTP PUT
// or the legacy SOURCE method to /<id>.aac (stream <icecast_app>/<id>) or
// /<app>/<id>.aac; /<id>_fallback.aac is that stream's fallback input. The
// password (Basic auth, any user) is the stream's key. ADTS carries no
// timestamps: frames are stamped from a sample counter, and the input is
// spliced, unless the source declares a Tandem capture session and the
// index of its first frame (Tandem-Session, Tandem-First-Frame headers).

// maxIcecastHeaders bounds a source's request headers.
const maxIcecastHeaders = 16 << 10

func (s *Server) handleSource(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	name, ok := strings.CutSuffix(path, ".aac")
	if !ok {
		http.Error(w, "mount must end in .aac (ADTS AAC)", http.StatusUnsupportedMediaType)
		return
	}
	if !strings.Contains(name, "/") {
		name = s.cfg.IcecastApp + "/" + name
	}
	_, key, _ := r.BasicAuth()
	sid := "#!::r=" + name + ",m=publish"
	if key != "" && !strings.ContainsAny(key, ",") {
		sid += ",k=" + key
	}
	session := r.Header.Get("Tandem-Session")
	if session != "" {
		sid += ",s=" + session
	}
	peer, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	if _, err := s.authorize(sid, peer); err != nil {
		code := http.StatusUnauthorized
		if strings.Contains(err.Error(), "malformed") || strings.Contains(err.Error(), "bad request") {
			code = http.StatusBadRequest
		} else if strings.Contains(err.Error(), "not configured") {
			code = http.StatusForbidden
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="tandem"`)
		http.Error(w, err.Error(), code)
		return
	}
	id, err := streamid.Parse(sid)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first, _ := strconv.ParseInt(r.Header.Get("Tandem-First-Frame"), 10, 64)

	// The body of a source has no length: take the connection over and
	// read the ADTS until the client goes, like Icecast does.
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "sources need HTTP/1", http.StatusHTTPVersionNotSupported)
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	var body io.Reader = bw.Reader
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
	} else {
		io.WriteString(conn, "HTTP/1.0 200 OK\r\nServer: tandem-switcher\r\n\r\n")
	}
	if len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked" {
		body = newChunkedReader(bw.Reader)
	}
	s.serveSource(s.ctx, conn, body, id, first, iceSourceInfo(r.Header))
}

// serveSource feeds one source's ADTS into its stream until it ends.
func (s *Server) serveSource(ctx context.Context, conn net.Conn, body io.Reader, id streamid.ID, first int64, info sourceInfo) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := &input{id: id, proto: "icecast", remote: conn.RemoteAddr().String(), connectedAt: time.Now(),
		refuse: func(string) { cancel(); conn.Close() }}
	st, err := s.attach(ctx, in)
	if err != nil {
		s.refused(id.Stream(), conn.RemoteAddr(), err.Error())
		return
	}
	defer s.detached(st)
	st.meta.inputConnected(in, info)
	defer st.meta.inputGone(in)
	send := func(m message) bool {
		select {
		case st.inbox <- m:
			return true
		case <-ctx.Done():
		case <-st.done:
		}
		return false
	}
	rd := adts.NewReader(body)
	var cfg media.AudioConfig
	reason := "source disconnected"
	for n := first; ; n++ {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, payload, err := rd.ReadFrame()
		if err != nil {
			if err != io.EOF && ctx.Err() == nil {
				reason = "source stream ended: " + err.Error()
			}
			break
		}
		if h.Config != cfg {
			cfg = h.Config
			if !send(message{kind: msgTrack, in: in, audio: cfg}) {
				break
			}
		}
		pts := cfg.FramePTS(n) & (1<<33 - 1)
		f := media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: append([]byte(nil), payload...)}
		if !send(message{kind: msgFrame, in: in, frame: f}) {
			break
		}
	}
	select {
	case st.inbox <- message{kind: msgDetach, in: in, reason: reason}:
	case <-st.done:
	}
}

// chunkedReader decodes an HTTP/1.1 chunked body read after a hijack.
type chunkedReader struct {
	r    *bufio.Reader
	left int64
	err  error
}

func newChunkedReader(r *bufio.Reader) *chunkedReader { return &chunkedReader{r: r} }

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.err = err
			return 0, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if i := strings.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(line, 16, 64)
		if err != nil || n < 0 {
			c.err = fmt.Errorf("bad chunk size %q", line)
			return 0, c.err
		}
		if n == 0 {
			c.err = io.EOF
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
