package coap_test

import (
	"os"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/coap"
)

func TestConfigDefaults(t *testing.T) {
	c, err := config.Parse([]byte("[gateway.coap]\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	spec := c.Gateways["coap"].Spec.(*coap.Config)
	if spec.Heartbeat.D().String() != "30s" || spec.ConnectionRequired || spec.NotifyType != "qos" ||
		spec.SubscribeQoS != "coap" || spec.PublishQoS != "coap" || spec.NotifyQueueLen != 100 ||
		!spec.Blockwise.Enable || spec.Blockwise.MaxBlockSize != 1024 || spec.Blockwise.MaxBodySize != 4<<20 ||
		spec.Blockwise.ExchangeLifetime.D().String() != "4m7s" {
		t.Fatalf("defaults %+v", spec)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ keys, want string }{
		{`notify_type = "maybe"`, `notify_type: must be non, con or qos, got "maybe"`},
		{`publish_qos = "qos3"`, `publish_qos: must be qos0, qos1, qos2 or coap, got "qos3"`},
		{`subscribe_qos = "NON"`, `subscribe_qos: must be qos0, qos1, qos2 or coap, got "NON"`},
		{`heartbeat = "10ms"`, `heartbeat: must be at least 1s`},
		{`notify_queue_len = -1`, `notify_queue_len: must be 0..65536, got -1`},
		{`max_retransmit = 50`, `max_retransmit: must be 0..20, got 50`},
		{"[gateway.coap.blockwise]\nmax_block_size = 1000", `max_block_size: must be a power of two in 16..1024, got 1000`},
		{"[gateway.coap.blockwise]\nmax_block_size = 2048", `max_block_size: must be a power of two in 16..1024, got 2048`},
		{"[gateway.coap.blockwise]\nmax_body_size = \"1GB\"", `max_body_size: must be 16B..64MB`},
		{`unknown_key = 1`, `unknown_key`},
	}
	for _, c := range cases {
		_, err := config.Parse([]byte("[gateway.coap]\n"+c.keys+"\n"), "t.toml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.keys, err, c.want)
		}
	}
}

// TestReadmeExample parses the README's example config, so it stays true.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "```toml\n")
	end := strings.Index(s[start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no toml block in README.md")
	}
	hash, err := auth.HashPassword("x", auth.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(s[start+8:start+8+end], `"pbkdf2-sha256$…"`, `"`+hash+`"`, 1)
	c, err := config.Parse([]byte(src), "README.md")
	if err != nil {
		t.Fatalf("README example:\n%v", err)
	}
	if _, ok := c.Gateways["coap"]; !ok {
		t.Fatal("no [gateway.coap] in the example")
	}
}
