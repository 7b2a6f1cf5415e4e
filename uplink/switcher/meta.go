package switcher

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"tandem/uplink/icy"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher/merge"
)

// sourceInfo is what a source says about its programme (Icecast ice-*
// headers, RTMP onMetaData); listeners get it as icy-* response headers.
type sourceInfo struct {
	Name, Description, Genre, URL string
	Public                        bool
	BitrateKbps                   int
}

// iceSourceInfo reads an Icecast source's ice-* headers (and the older
// icy-* ones some clients send).
func iceSourceInfo(h http.Header) sourceInfo {
	get := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(h.Get(n)); v != "" {
				return v
			}
		}
		return ""
	}
	info := sourceInfo{
		Name:        get("Ice-Name", "Icy-Name"),
		Description: get("Ice-Description", "Icy-Description"),
		Genre:       get("Ice-Genre", "Icy-Genre"),
		URL:         get("Ice-Url", "Icy-Url"),
		Public:      get("Ice-Public", "Icy-Pub") == "1",
	}
	info.BitrateKbps, _ = strconv.Atoi(get("Ice-Bitrate", "Icy-Br"))
	// ice-audio-info: "bitrate=128;channels=2;samplerate=48000"
	for _, kv := range strings.Split(h.Get("Ice-Audio-Info"), ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, "bitrate") || strings.EqualFold(k, "ice-bitrate") {
			if n, err := strconv.Atoi(v); err == nil && info.BitrateKbps == 0 {
				info.BitrateKbps = n
			}
		}
	}
	return info
}

// streamMeta is a logical stream's title and source information. Each
// input role has its own; listeners get the active input's (or the
// other's when the active one has none), unless the API set a title more
// recently. A fallback's metadata is never a stream of its own.
type streamMeta struct {
	mu     sync.Mutex
	seq    uint64 // orders updates from every origin
	roles  [2]roleMeta
	api    titleEntry
	active merge.Role
	// current is what listeners read at every block, without the lock.
	current atomic.Pointer[icy.Metadata]
}

type roleMeta struct {
	owner *input // the input the info came with; nil if none
	info  sourceInfo
	title titleEntry
}

type titleEntry struct {
	text string
	seq  uint64 // 0: never set
}

// inputConnected records a new source's information; its title starts
// empty, as on Icecast.
func (m *streamMeta) inputConnected(in *input, info sourceInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.roles[in.role] = roleMeta{owner: in, info: info}
	m.updateLocked()
}

// inputGone forgets what in said, unless another input took its role.
func (m *streamMeta) inputGone(in *input) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.roles[in.role].owner == in {
		m.roles[in.role] = roleMeta{}
		m.updateLocked()
	}
}

// setRoleTitle is a title from an input's source.
func (m *streamMeta) setRoleTitle(r merge.Role, title string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.roles[r].title = titleEntry{text: title, seq: m.seq}
	m.updateLocked()
}

// setAPITitle is a title set by an operator.
func (m *streamMeta) setAPITitle(title string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.api = titleEntry{text: title, seq: m.seq}
	m.updateLocked()
}

// follow tells which input the output follows now.
func (m *streamMeta) follow(r merge.Role) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active != r {
		m.active = r
		m.updateLocked()
	}
}

func (m *streamMeta) updateLocked() {
	src := m.roles[m.active].title
	if src.seq == 0 {
		src = m.roles[m.active.Other()].title
	}
	title := src.text
	if m.api.seq > src.seq {
		title = m.api.text
	}
	cur := m.current.Load()
	if cur != nil && cur.Title == title {
		return
	}
	if cur == nil && title == "" {
		return // listeners send an empty title until there is one
	}
	v := uint64(1)
	if cur != nil {
		v = cur.Version + 1
	}
	m.current.Store(icy.NewMetadata(title, v))
}

// title is the current title ("" when none).
func (m *streamMeta) title() string {
	if c := m.current.Load(); c != nil {
		return c.Title
	}
	return ""
}

// info is the active input's source information, else the other's.
func (m *streamMeta) info() sourceInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.roles[m.active]; r.owner != nil {
		return r.info
	}
	return m.roles[m.active.Other()].info
}

// streamKeyOK checks a source's credentials for a stream the way
// publishing does: with streams configured, the stream must be one of
// them and the key must match.
func (s *Server) streamKeyOK(stream, key string) error {
	if len(s.cfg.Streams) == 0 {
		return nil
	}
	sc, ok := s.cfg.Streams[stream]
	if !ok {
		return fmt.Errorf("stream %s is not configured on this switcher", stream)
	}
	if sc.Key != "" && key != sc.Key {
		return fmt.Errorf("wrong key for stream %s", stream)
	}
	return nil
}

// handleAdminMetadata is Icecast's metadata update, which source clients
// (liquidsoap, butt, ices) call beside their source connection:
// GET /admin/metadata?mount=/<id>.aac&mode=updinfo&song=<title>, Basic auth
// with the stream's key. A fallback mount updates its stream's fallback
// input; listeners hear it while the output follows that input.
func (s *Server) handleAdminMetadata(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	iceReply := func(code int, ok bool, msg string) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(code)
		ret := 0
		if ok {
			ret = 1
		}
		fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n<iceresponse><message>%s</message><return>%d</return></iceresponse>\n", xmlEscape(msg), ret)
	}
	if mode := q.Get("mode"); mode != "updinfo" {
		iceReply(http.StatusBadRequest, false, fmt.Sprintf("mode %q is not supported: only mode=updinfo", mode))
		return
	}
	mount := strings.TrimPrefix(q.Get("mount"), "/")
	name, ok := strings.CutSuffix(mount, ".aac")
	if !ok || name == "" {
		iceReply(http.StatusBadRequest, false, fmt.Sprintf("mount %q: want /<id>.aac or /<app>/<id>.aac", q.Get("mount")))
		return
	}
	if !strings.Contains(name, "/") {
		name = s.cfg.IcecastApp + "/" + name
	}
	role := merge.Primary
	if base, ok := strings.CutSuffix(name, streamid.FallbackSuffix); ok {
		name, role = base, merge.Fallback
	}
	_, key, _ := r.BasicAuth()
	if err := s.streamKeyOK(name, key); err != nil {
		s.log.Warn("metadata update refused", "stream", name, "peer", r.RemoteAddr, "reason", err.Error())
		w.Header().Set("WWW-Authenticate", `Basic realm="tandem"`)
		iceReply(http.StatusUnauthorized, false, "Authentication Required: "+err.Error())
		return
	}
	st := s.lookup(name)
	if st == nil {
		iceReply(http.StatusNotFound, false, "Source does not exist: no stream "+name)
		return
	}
	title := q.Get("song")
	if title == "" {
		// Some clients send artist and title separately.
		title = strings.Trim(q.Get("artist")+" - "+q.Get("title"), " -")
	}
	st.meta.setRoleTitle(role, title)
	st.log.Info("metadata updated", "input", role.String(), "title", title, "from", r.RemoteAddr)
	iceReply(http.StatusOK, true, "Metadata update successful")
}

// handleMetadata is POST /api/v1/streams/{app}/{name}/metadata
// {"title": "..."}: the operator's title, until a source sends a newer one.
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("app") + "/" + r.PathValue("name")
	var req struct {
		Title *string `json:"title"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Title == nil {
		msg := `body must be {"title": "<text>"}`
		if err != nil {
			msg += ": " + err.Error()
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	if strings.HasSuffix(name, streamid.FallbackSuffix) {
		http.Error(w, "a fallback input is not a stream: set the title of "+strings.TrimSuffix(name, streamid.FallbackSuffix), http.StatusNotFound)
		return
	}
	st := s.lookup(name)
	if st == nil {
		http.Error(w, "no stream "+name, http.StatusNotFound)
		return
	}
	if len(*req.Title) > icy.MaxTitle {
		http.Error(w, fmt.Sprintf("title is %d bytes, at most %d fit in a metadata block", len(*req.Title), icy.MaxTitle), http.StatusBadRequest)
		return
	}
	st.meta.setAPITitle(*req.Title)
	s.log.Info("metadata set", "stream", name, "title", *req.Title, "from", r.RemoteAddr)
	writeJSON(w, map[string]string{"stream": name, "title": st.meta.title()})
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
