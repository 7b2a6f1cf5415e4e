package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValidAndRunTheDemo(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	// Load with no file and no environment is the defaults.
	l, err := Load("", nil)
	if err != nil || !reflect.DeepEqual(l, c) {
		t.Fatalf("Load(\"\", nil) = %+v, %v; want the defaults", l, err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"device_id", c.DeviceID, "tandem"},
		{"app", c.App, "live"},
		{"source", c.Source.Type, SourceTone},
		{"tone", c.Source.Tone, Tone{Frequency: 440, LevelDBFS: -12}},
		{"block_frames", c.Source.BlockFrames, 4096},
		{"primary", c.Feeds.Primary, Feed{Codec: "aac", Bitrate: 128000, SampleRate: 48000, Channels: 2, Dest: "srt://127.0.0.1:9000", Link: "a"}},
		{"fallback", c.Feeds.Fallback, Feed{Codec: "aac", Bitrate: 64000, SampleRate: 48000, Channels: 2, Dest: "srt://127.0.0.1:9000", Link: "b"}},
		{"links", c.Links, map[string]Link{"a": {Address: "127.0.0.1"}, "b": {Address: "127.0.0.2"}}},
		{"latency", c.Latency.D(), 120 * time.Millisecond},
		{"state_dir", c.StateDir, "/var/lib/tandem"},
		{"api", c.API, API{Socket: "/run/tandem/api.sock", HTTP: "127.0.0.1:8080"}},
		{"ffmpeg", c.FFmpeg, "ffmpeg"},
		{"policy routing", c.PolicyRoutingEnabled(), false},
		{"fallback name", c.StreamName(RoleFallback), "tandem_fallback"},
		{"icecast mount", c.Mount(RoleFallback), "/tandem_fallback.aac"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %+v, want %+v", ch.what, ch.got, ch.want)
		}
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tandem.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileOverDefaults(t *testing.T) {
	path := writeFile(t, `{
		"device_id": "studio1",
		"source": {"type": "device", "device": {"name": "hw:1"}},
		"feeds": {"primary": {"dest": "srt://switcher.example:9000"}, "fallback": {"bitrate": 48000}},
		"links": {
			"fibre": {"interface": "wana", "gateway": "10.201.1.1", "table": 101},
			"lte": {"interface": "wanb", "gateway": "10.201.2.1", "table": 102}
		},
		"key": "k3y", "passphrase": "0123456789abc", "latency": "250ms", "max_pack_delay": "25ms"
	}`)
	t.Setenv("IGNORED", "x") // Load reads only the environ it is given
	c, err := Load(path, []string{"TANDEM_FEEDS_PRIMARY_LINK=fibre", "TANDEM_FEEDS_FALLBACK_LINK=lte", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "studio1" || c.Source.Device.Name != "hw:1" || c.Source.Device.Backend != "alsa" || c.Source.Device.SampleRate != 48000 {
		t.Errorf("file did not merge over the defaults: %+v", c)
	}
	if c.Feeds.Primary.Bitrate != 128000 || c.Feeds.Primary.Dest != "srt://switcher.example:9000" || c.Feeds.Fallback.Bitrate != 48000 {
		t.Errorf("feeds: %+v", c.Feeds)
	}
	// A file's links replace the default loopback links as a whole.
	if got := c.LinkNames(); !slices.Equal(got, []string{"fibre", "lte"}) {
		t.Errorf("links %v, want exactly the file's", got)
	}
	if !c.PolicyRoutingEnabled() {
		t.Error("policy routing is off although links name interfaces")
	}
	if c.Latency.D() != 250*time.Millisecond {
		t.Errorf("latency %v", c.Latency)
	}
	if c.MaxPackDelay.D() != 25*time.Millisecond {
		t.Errorf("max_pack_delay %v, want the file's 25ms", c.MaxPackDelay)
	}
}

func TestUnknownKeyInFileIsNamedWithTheFile(t *testing.T) {
	path := writeFile(t, `{"device_id": "x", "feeds": {"primary": {"bitrat": 96000}}, "Links": {}}`)
	_, err := Load(path, nil)
	if err == nil {
		t.Fatal("unknown keys accepted")
	}
	msg := err.Error()
	for _, want := range []string{path, "unknown key feeds.primary.bitrat", "did you mean bitrate", "unknown key Links", "did you mean links"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	// Each problem is on its own line and names the file.
	for _, line := range Errors(err) {
		if !strings.HasPrefix(line, "config "+path+": ") {
			t.Errorf("line %q does not start with the file", line)
		}
	}
}

func TestFileTypeAndSyntaxErrorsNameTheKeyOrLine(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"feeds": {"fallback": {"bitrate": "64k"}}}`, "feeds.fallback.bitrate: must be an integer, not a string"},
		{`{"latency": 120}`, `latency: must be a duration string like "120ms", not a number`},
		{`{"latency": "soon"}`, `latency: "soon" is not a duration`},
		{"{\n  \"app\": \"live\",\n  \"device_id\": \n}", "line 4, column 1"},
		{`[1, 2]`, "must be a JSON object"},
		{`{"app": "x"} {"app": "y"}`, "trailing data"},
		{``, "empty"},
		{`{"policy_routing": "yes"}`, "policy_routing: must be true or false, not a string"},
	} {
		path := writeFile(t, tc.body)
		_, err := Load(path, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("file %q: error %v, want it to name %s and say %q", tc.body, err, path, tc.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestUnknownEnvironmentVariableIsNamed(t *testing.T) {
	_, err := Load("", []string{"TANDEM_FEEDS_PRIMARY_BITRATEE=1", "TANDEM_DEVICE_ID=ok"})
	if err == nil || !strings.Contains(err.Error(), "TANDEM_FEEDS_PRIMARY_BITRATEE") || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown variable: %v", err)
	}
	// Other programs' variables are not the appliance's business.
	if _, err := Load("", []string{"TANDEM_SWITCHER_SRT_ADDR=:9000", "TANDEM_LAB=x", "TANDEM_TEST_LOG=1", "TANDEM_DEMO_SRT_PORT=1", "PATH=/bin"}); err != nil {
		t.Fatalf("foreign variables rejected: %v", err)
	}
	_, err = Load("", []string{"TANDEM_FEEDS_PRIMARY_BITRATE=fast"})
	if err == nil || !strings.Contains(err.Error(), "TANDEM_FEEDS_PRIMARY_BITRATE") || !strings.Contains(err.Error(), "feeds.primary.bitrate") {
		t.Fatalf("bad value: %v", err)
	}
}

func TestEnvironmentMapping(t *testing.T) {
	env := []string{
		"TANDEM_DEVICE_ID=studio2",
		"TANDEM_APP=radio",
		"TANDEM_KEY=secret",
		"TANDEM_PASSPHRASE=0123456789",
		"TANDEM_LATENCY=300ms",
		"TANDEM_STATE_DIR=/data/tandem",
		"TANDEM_API_SOCKET=/tmp/t.sock",
		"TANDEM_API_HTTP=",
		"TANDEM_FFMPEG=/usr/local/bin/ffmpeg",
		"TANDEM_ALLOW_SHARED_LINK=true",
		"TANDEM_SOURCE_TYPE=device",
		"TANDEM_SOURCE_TONE_FREQUENCY=1000",
		"TANDEM_SOURCE_TONE_LEVEL_DBFS=-20.5",
		"TANDEM_SOURCE_DEVICE_BACKEND=pulse",
		"TANDEM_SOURCE_DEVICE_NAME=s.monitor",
		"TANDEM_SOURCE_DEVICE_SAMPLE_RATE=44100",
		"TANDEM_SOURCE_DEVICE_CHANNELS=1",
		"TANDEM_SOURCE_BLOCK_FRAMES=1024",
		"TANDEM_FEEDS_PRIMARY_CODEC=aac",
		"TANDEM_FEEDS_PRIMARY_BITRATE=96000",
		"TANDEM_FEEDS_PRIMARY_SAMPLE_RATE=44100",
		"TANDEM_FEEDS_PRIMARY_CHANNELS=1",
		"TANDEM_FEEDS_PRIMARY_DEST=srt://10.201.0.1:9000",
		"TANDEM_FEEDS_PRIMARY_LINK=fibre",
		"TANDEM_FEEDS_FALLBACK_BITRATE=32000",
		"TANDEM_FEEDS_FALLBACK_SAMPLE_RATE=44100",
		"TANDEM_FEEDS_FALLBACK_CHANNELS=1",
		"TANDEM_FEEDS_FALLBACK_DEST=icecast://source:pw@10.201.0.1:8000/x.aac",
		"TANDEM_FEEDS_FALLBACK_LINK=fibre",
		"TANDEM_LINKS_FIBRE_INTERFACE=wana",
		"TANDEM_LINKS_FIBRE_GATEWAY=10.201.1.1",
		"TANDEM_LINKS_FIBRE_TABLE=101",
		"TANDEM_LINKS_FIBRE_ADDRESS=10.201.1.2",
		"TANDEM_LINKS_A_ADDRESS=127.0.0.3",
		"TANDEM_POLICY_ROUTING=false",
	}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DeviceID, want.App, want.Key, want.Passphrase = "studio2", "radio", "secret", "0123456789"
	want.Latency = Duration(300 * time.Millisecond)
	want.StateDir = "/data/tandem"
	want.API = API{Socket: "/tmp/t.sock"}
	want.FFmpeg = "/usr/local/bin/ffmpeg"
	want.AllowSharedLink = true
	want.Source = Source{Type: "device", Tone: Tone{1000, -20.5}, Device: Device{"pulse", "s.monitor", 44100, 1}, BlockFrames: 1024}
	want.Feeds.Primary = Feed{"aac", 96000, 44100, 1, "srt://10.201.0.1:9000", "fibre"}
	want.Feeds.Fallback = Feed{"aac", 32000, 44100, 1, "icecast://source:pw@10.201.0.1:8000/x.aac", "fibre"}
	want.Links = map[string]Link{
		"a":     {Address: "127.0.0.3"},
		"b":     {Address: "127.0.0.2"},
		"fibre": {Interface: "wana", Gateway: "10.201.1.1", Table: 101, Address: "10.201.1.2"},
	}
	f := false
	want.PolicyRouting = &f
	if !reflect.DeepEqual(c, want) {
		t.Errorf("environment gave\n%s\nwant\n%s", c.JSON(), want.JSON())
	}
	// Empty means automatic.
	c, err = Load("", []string{"TANDEM_POLICY_ROUTING="})
	if err != nil || c.PolicyRouting != nil {
		t.Errorf("TANDEM_POLICY_ROUTING= gave %v, %v; want nil (automatic)", c.PolicyRouting, err)
	}
}

// Every key of the JSON schema has exactly one variable, named by the rule.
func TestEnvVarsCoverEveryKey(t *testing.T) {
	var keys []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			keys = append(keys, path)
			return
		}
		for k, e := range m {
			p := k
			if path != "" {
				p = path + "." + k
			}
			walk(p, e)
		}
	}
	c := Default()
	c.Links = map[string]Link{"x": {}}
	var tree map[string]any
	if err := json.Unmarshal(c.JSON(), &tree); err != nil {
		t.Fatal(err)
	}
	walk("", tree)
	byKey := map[string]string{}
	names := map[string]bool{}
	for _, v := range EnvVars() {
		if names[v.Name] {
			t.Errorf("variable %s appears twice", v.Name)
		}
		names[v.Name] = true
		byKey[v.Key] = v.Name
	}
	for _, k := range keys {
		k = strings.Replace(k, "links.x.", "links.<name>.", 1)
		name, ok := byKey[k]
		if !ok {
			t.Errorf("key %s has no environment variable", k)
			continue
		}
		want := "TANDEM_" + strings.ToUpper(strings.NewReplacer(".", "_", "<name>", "<NAME>").Replace(k))
		if name != want {
			t.Errorf("key %s is %s, want %s", k, name, want)
		}
	}
	if len(keys) != len(byKey) {
		t.Errorf("%d keys, %d variables", len(keys), len(byKey))
	}
}

func TestMismatchedFeedsNameBothKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"sample rate", func(c *Config) { c.Feeds.Fallback.SampleRate = 44100 },
			"config feeds.fallback.sample_rate (44100) must equal feeds.primary.sample_rate (48000)"},
		{"channels", func(c *Config) { c.Feeds.Primary.Channels = 1 },
			"config feeds.fallback.channels (2) must equal feeds.primary.channels (1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if n := len(Fields(err)); n != 1 {
				t.Errorf("%d errors, want just the mismatch: %v", n, err)
			}
		})
	}
}

func TestDifferentBitrateIsAccepted(t *testing.T) {
	c := Default()
	c.Feeds.Primary.Bitrate = 256000
	c.Feeds.Fallback.Bitrate = 24000
	if err := c.Validate(); err != nil {
		t.Fatalf("a lower-rate fallback was refused: %v", err)
	}
}

func TestSharedLink(t *testing.T) {
	c := Default()
	c.Feeds.Fallback.Link = "a"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "feeds.fallback.link") || !strings.Contains(err.Error(), "allow_shared_link") {
		t.Fatalf("both feeds on one link: %v", err)
	}
	c.AllowSharedLink = true
	if err := c.Validate(); err != nil {
		t.Fatalf("allow_shared_link: %v", err)
	}
}

// Each broken setting fails with an error that names its key, and only
// that key.
func TestEveryValidateErrorNamesItsKey(t *testing.T) {
	policy := func(c *Config) {
		c.Links = map[string]Link{
			"a": {Interface: "wana", Gateway: "10.201.1.1", Table: 101},
			"b": {Interface: "wanb", Gateway: "10.201.2.1", Table: 102},
		}
	}
	yes := true
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"device_id", func(c *Config) { c.DeviceID = "" }},
		{"device_id", func(c *Config) { c.DeviceID = "a/b" }},
		{"device_id", func(c *Config) { c.DeviceID = "x_fallback" }},
		{"app", func(c *Config) { c.App = "live app" }},
		{"key", func(c *Config) { c.Key = "a,b" }},
		{"passphrase", func(c *Config) { c.Passphrase = "short" }},
		{"latency", func(c *Config) { c.Latency = Duration(5 * time.Millisecond) }},
		{"max_pack_delay", func(c *Config) { c.MaxPackDelay = Duration(-time.Millisecond) }},
		{"max_pack_delay", func(c *Config) { c.MaxPackDelay = Duration(101 * time.Millisecond) }},
		{"state_dir", func(c *Config) { c.StateDir = "" }},
		{"api.socket", func(c *Config) { c.API.Socket = "" }},
		{"api.socket", func(c *Config) { c.API.Socket = "/" + strings.Repeat("x", 120) }},
		{"api.http", func(c *Config) { c.API.HTTP = "8080" }},
		{"api.debug", func(c *Config) { c.API.Debug = "localhost" }},
		{"ffmpeg", func(c *Config) { c.FFmpeg = " " }},
		{"source.type", func(c *Config) { c.Source.Type = "mic" }},
		{"source.block_frames", func(c *Config) { c.Source.BlockFrames = 0 }},
		{"source.block_frames", func(c *Config) { c.Source.BlockFrames = 1536 }},
		{"source.block_frames", func(c *Config) { c.Source.BlockFrames = 5120 }},
		{"source.tone.frequency", func(c *Config) { c.Source.Tone.Frequency = 30000 }},
		{"source.tone.level_dbfs", func(c *Config) { c.Source.Tone.LevelDBFS = 3 }},
		{"source.device.backend", func(c *Config) { c.Source.Type = "device"; c.Source.Device.Backend = "jack" }},
		{"source.device.sample_rate", func(c *Config) { c.Source.Type = "device"; c.Source.Device.SampleRate = 0 }},
		{"source.device.channels", func(c *Config) { c.Source.Type = "device"; c.Source.Device.Channels = 0 }},
		{"feeds.primary.codec", func(c *Config) { c.Feeds.Primary.Codec = "mp3" }},
		{"feeds.fallback.codec", func(c *Config) { c.Feeds.Fallback.Codec = "" }},
		{"feeds.primary.bitrate", func(c *Config) { c.Feeds.Primary.Bitrate = 7999 }},
		{"feeds.fallback.bitrate", func(c *Config) { c.Feeds.Fallback.Bitrate = 512001 }},
		{"feeds.primary.sample_rate", func(c *Config) { c.Feeds.Primary.SampleRate = 96000 }},
		{"feeds.fallback.channels", func(c *Config) { c.Feeds.Fallback.Channels = 6 }},
		{"feeds.primary.dest", func(c *Config) { c.Feeds.Primary.Dest = "rtmp://x:1935/live" }},
		{"feeds.primary.dest", func(c *Config) { c.Feeds.Primary.Dest = "srt://:9000" }},
		{"feeds.primary.dest", func(c *Config) { c.Feeds.Primary.Dest = "srt://h" }},
		{"feeds.primary.dest", func(c *Config) { c.Feeds.Primary.Dest = "srt://h:99999" }},
		{"feeds.primary.dest", func(c *Config) { c.Feeds.Primary.Dest = "srt://h:9000?streamid=x" }},
		{"feeds.fallback.dest", func(c *Config) { c.Feeds.Fallback.Dest = "icecast://h:8000/x.aac" }},
		{"feeds.fallback.dest", func(c *Config) { c.Feeds.Fallback.Dest = "" }},
		{"feeds.fallback.link", func(c *Config) { c.Feeds.Fallback.Link = "c" }},
		{"feeds.primary.link", func(c *Config) { c.Feeds.Primary.Link = "" }},
		{"links", func(c *Config) { c.Links = nil; c.Feeds.Primary.Link = ""; c.Feeds.Fallback.Link = "" }},
		{"links.B", func(c *Config) { c.Links["B"] = Link{Address: "127.0.0.9"} }},
		{"links.b.address", func(c *Config) { c.Links["b"] = Link{Address: "not-an-ip"} }},
		{"links.b.address", func(c *Config) { c.Links["b"] = Link{Address: "127.0.0.1"} }},
		{"links.b.address", func(c *Config) { c.Links["b"] = Link{} }},
		{"links.b.interface", func(c *Config) { c.Links["b"] = Link{Interface: "way/too/long/name", Address: "127.0.0.2"} }},
		{"links.b.gateway", func(c *Config) { c.Links["b"] = Link{Gateway: "10.0.0.1", Address: "127.0.0.2"} }},
		{"links.b.gateway", func(c *Config) { policy(c); l := c.Links["b"]; l.Gateway = "gw"; c.Links["b"] = l }},
		{"links.b.table", func(c *Config) { policy(c); l := c.Links["b"]; l.Table = 0; c.Links["b"] = l }},
		{"links.b.table", func(c *Config) { policy(c); l := c.Links["b"]; l.Table = 254; c.Links["b"] = l }},
		{"links.b.table", func(c *Config) { policy(c); l := c.Links["b"]; l.Table = 101; c.Links["b"] = l }},
		{"links.b.interface", func(c *Config) { policy(c); c.Links["b"] = Link{Address: "10.201.2.2"} }},
		{"policy_routing", func(c *Config) { c.PolicyRouting = &yes }},
		{"feeds.fallback.link", func(c *Config) { c.Feeds.Fallback.Link = "a" }},
		{"feeds.fallback.sample_rate", func(c *Config) { c.Feeds.Fallback.SampleRate = 44100 }},
	} {
		c := Default()
		tc.mod(&c)
		err := c.Validate()
		fields := Fields(err)
		if len(fields) == 0 {
			t.Errorf("%s: accepted, want an error (%+v)", tc.key, c)
			continue
		}
		found := false
		for _, f := range fields {
			if !strings.Contains(f.Error(), f.Key) {
				t.Errorf("%s: error %q does not name its key %s", tc.key, f.Error(), f.Key)
			}
			found = found || f.Key == tc.key
		}
		if !found {
			t.Errorf("%s: errors name other keys: %v", tc.key, err)
		}
		if got := len(Errors(err)); got != len(fields) {
			t.Errorf("%s: %d lines, %d field errors: %v", tc.key, got, len(fields), err)
		}
	}
}

func TestPolicyRoutingConfig(t *testing.T) {
	c := Default()
	c.Links = map[string]Link{
		"a": {Interface: "wana", Gateway: "10.201.1.1", Table: 101},
		"b": {Interface: "wwan0", Table: 102}, // point to point: no gateway, no address
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a policy-routed pair: %v", err)
	}
	if !c.PolicyRoutingEnabled() {
		t.Fatal("policy routing should default to on with interfaces")
	}
	no := false
	c.PolicyRouting = &no
	c.Links = map[string]Link{"a": {Interface: "wana"}, "b": {Address: "192.0.2.7"}}
	if err := c.Validate(); err != nil || c.PolicyRoutingEnabled() {
		t.Fatalf("policy routing off: %v", err)
	}
}

func TestParseDest(t *testing.T) {
	d, err := ParseDest("icecast://source:hackme@10.201.0.1:8000/studio.aac")
	if err != nil || d != (Dest{Scheme: "icecast", Host: "10.201.0.1", Port: 8000, User: "source", Password: "hackme", Mount: "/studio.aac"}) {
		t.Errorf("icecast dest: %+v, %v", d, err)
	}
	d, err = ParseDest("srt://[::1]:9000")
	if err != nil || d.Addr() != "[::1]:9000" || d.Scheme != "srt" {
		t.Errorf("srt dest: %+v, %v", d, err)
	}
	_, err = ParseDest("icecast://source:hackme@h/x.aac")
	if err == nil || strings.Contains(err.Error(), "hackme") {
		t.Errorf("an error must not show the password: %v", err)
	}
	c := Default()
	c.Feeds.Primary.Dest = "icecast://source:hackme@h:8000"
	if c.Mount(RolePrimary) != "/tandem.aac" {
		t.Errorf("default mount %q", c.Mount(RolePrimary))
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	c := Default()
	c.Key, c.Passphrase = "the-key", "the-passphrase"
	c.Feeds.Fallback.Dest = "icecast://source:the-password@h:8000/x.aac"
	s := string(c.Redacted().JSON())
	for _, secret := range []string{"the-key", "the-passphrase", "the-password"} {
		if strings.Contains(s, secret) {
			t.Errorf("Redacted shows %q:\n%s", secret, s)
		}
	}
	if c.Key != "the-key" || !strings.Contains(c.Feeds.Fallback.Dest, "the-password") {
		t.Error("Redacted changed the original")
	}
	// A redacted copy's links are its own.
	r := c.Redacted()
	r.Links["z"] = Link{}
	if _, ok := c.Links["z"]; ok {
		t.Error("Redacted shares the links map")
	}
}

func TestParseRoundTripAndDiff(t *testing.T) {
	c := Default()
	c.Key = "k"
	c.Feeds.Primary.Bitrate = 96000
	c.Links["c"] = Link{Address: "127.0.0.3"}
	back, err := Parse(c.JSON())
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("Parse(JSON()) = %+v, %v", back, err)
	}
	got := Diff(Default(), c)
	want := []string{"feeds.primary.bitrate", "key", "links.c.address", "links.c.gateway", "links.c.interface", "links.c.table"}
	if !slices.Equal(got, want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
	if d := Diff(c, c); len(d) != 0 {
		t.Errorf("Diff of equal configs = %v", d)
	}
}

func TestMaxPackDelayFromEnvironment(t *testing.T) {
	c, err := Load("", []string{"TANDEM_MAX_PACK_DELAY=25ms"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxPackDelay.D() != 25*time.Millisecond {
		t.Errorf("TANDEM_MAX_PACK_DELAY=25ms gave max_pack_delay %v", c.MaxPackDelay)
	}
	if _, err := Load("", []string{"TANDEM_MAX_PACK_DELAY=1s"}); err == nil || !strings.Contains(err.Error(), "max_pack_delay") {
		t.Errorf("TANDEM_MAX_PACK_DELAY=1s: err %v, want one naming max_pack_delay", err)
	}
}
