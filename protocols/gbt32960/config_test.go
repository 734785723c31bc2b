package gbt32960_test

import (
	"os"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/gbt32960"
)

func parseGBT(keys string) (*config.Gateway, error) {
	c, err := config.Parse([]byte("[gateway.gbt32960]\n"+keys+"\n"), "edgeway.toml")
	if err != nil {
		return nil, err
	}
	return c.Gateways["gbt32960"], nil
}

func TestConfigDefaults(t *testing.T) {
	g, err := parseGBT("")
	if err != nil {
		t.Fatal(err)
	}
	got := g.Spec.(*gbt32960.Config)
	if *got != *gbt32960.DefaultConfig() || got.RetryInterval.D().String() != "8s" || got.MaxRetryTimes != 3 ||
		got.MessageQueueLen != 10 || got.Frame.MaxLength != 16<<10 {
		t.Fatalf("defaults %+v", got)
	}
	if mp := g.EffectiveMountpoint(nil); !strings.Contains(mp.String(), "gbt32960/${clientid}/") {
		t.Fatalf("default mountpoint %q", mp.String())
	}
}

func TestConfigValues(t *testing.T) {
	g, err := parseGBT(`retry_interval = "2s"
max_retry_times = 0
message_queue_len = 50
frame.max_length = "4KB"`)
	if err != nil {
		t.Fatal(err)
	}
	got := g.Spec.(*gbt32960.Config)
	if got.RetryInterval.D().Seconds() != 2 || got.MaxRetryTimes != 0 || got.MessageQueueLen != 50 || got.Frame.MaxLength != 4096 {
		t.Fatalf("parsed %+v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ keys, want string }{
		{`retry_interval = "10ms"`, "retry_interval: must be at least 100ms, got 10ms"},
		{`max_retry_times = -1`, "max_retry_times: must be 0..100, got -1"},
		{`message_queue_len = 0`, "message_queue_len: must be 1..10000, got 0"},
		{`frame.max_length = 10`, "max_length: must be 25..65560 bytes, got 10"},
		{`frame.max_length = "1MB"`, "max_length: must be 25..65560 bytes, got 1048576"},
		{`retry_times = 3`, "retry_times"},
	} {
		_, err := parseGBT(tc.keys)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.keys, err, tc.want)
		}
	}
}

// TestREADMEConfig: the README's example config parses, and its defaults
// are the code's.
func TestREADMEConfig(t *testing.T) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	i := strings.Index(s, "```toml\n")
	j := strings.Index(s[i+8:], "```")
	block := s[i+8 : i+8+j]
	// The tls listener needs real certificate files; keep the rest.
	block = block[:strings.Index(block, "[gateway.gbt32960.listeners.ssl.default]")]
	c, err := config.Parse([]byte(block), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Gateways["gbt32960"].Spec.(*gbt32960.Config)
	if *got != *gbt32960.DefaultConfig() {
		t.Fatalf("README shows %+v, defaults are %+v", got, gbt32960.DefaultConfig())
	}
}
