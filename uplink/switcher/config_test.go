package switcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "switcher.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaultsFileThenEnvironment(t *testing.T) {
	c, err := LoadConfig("", nil)
	if err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if c.SRTAddr != ":9000" || c.SRTUDPBuffer != 16<<20 {
		t.Errorf("defaults: srt_addr %q, srt_udp_buffer %d", c.SRTAddr, c.SRTUDPBuffer)
	}
	p := writeConfig(t, `{"srt_addr": ":9100", "latency": "200ms", "srt_udp_buffer": 4194304}`)
	c, err = LoadConfig(p, []string{EnvPrefix + "SRT_UDP_BUFFER=8388608", "OTHER_VAR=1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SRTAddr != ":9100" || time.Duration(c.Latency) != 200*time.Millisecond {
		t.Errorf("the file was not applied: srt_addr %q latency %v", c.SRTAddr, time.Duration(c.Latency))
	}
	c, err = LoadConfig(p, []string{EnvPrefix + "SRT_EXTRA_ADDRS=:9001, :9002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SRTExtraAddrs) != 2 || c.SRTExtraAddrs[1] != ":9002" {
		t.Errorf("srt_extra_addrs from the environment: %q", c.SRTExtraAddrs)
	}
	c, _ = LoadConfig(p, []string{EnvPrefix + "SRT_UDP_BUFFER=8388608"})
	if c.SRTUDPBuffer != 8<<20 {
		t.Errorf("srt_udp_buffer %d, want the environment's 8388608 over the file's", c.SRTUDPBuffer)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"unknown file key", `{"srt_adr": ":9000"}`, nil, `"srt_adr"`},
		{"unknown env key", `{}`, []string{EnvPrefix + "SRT_ADR=:1"}, EnvPrefix + "SRT_ADR"},
		{"bad duration", `{"latency": 120}`, nil, "duration"},
		{"latency out of range", `{"latency": "5ms"}`, nil, "config latency"},
		{"buffer too small", `{"srt_udp_buffer": 1000}`, nil, "config srt_udp_buffer"},
		{"buffer not a number", `{}`, []string{EnvPrefix + "SRT_UDP_BUFFER=lots"}, EnvPrefix + "SRT_UDP_BUFFER"},
		{"unknown policy", `{"policy": "fastest"}`, nil, "fastest"},
		{"trailing data", `{} {}`, nil, "trailing data"},
		{"extra port repeats the main one", `{"srt_addr": ":9000", "srt_extra_addrs": [":9000"]}`, nil, "config srt_extra_addrs"},
		{"extra port given twice", `{}`, []string{EnvPrefix + "SRT_EXTRA_ADDRS=:9001, :9001"}, "config srt_extra_addrs"},
	}
	for _, tc := range cases {
		_, err := LoadConfig(writeConfig(t, tc.file), tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json"), nil); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("a missing file gave %v, want an error naming it", err)
	}
}
