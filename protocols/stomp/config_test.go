package stomp_test

import (
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/stomp"
)

func parseStomp(t *testing.T, keys string) (*stomp.Config, error) {
	t.Helper()
	c, err := config.Parse([]byte("[gateway.stomp]\n"+keys+"\n"), "edgeway.toml")
	if err != nil {
		return nil, err
	}
	return c.Gateways["stomp"].Spec.(*stomp.Config), nil
}

func TestConfigDefaults(t *testing.T) {
	got, err := parseStomp(t, "")
	if err != nil {
		t.Fatal(err)
	}
	want := stomp.DefaultConfig()
	if got.Frame.MaxHeaders != 10 || got.Frame.MaxHeadersLength != 1024 || got.Frame.MaxBodyLength != 65536 ||
		got.MaxInflight != 100 || got.MaxMqueueLen != 1000 || got.TransactionTimeout.D().String() != "1m0s" ||
		got.SessionExpiryInterval != 0 || *got != *want {
		t.Fatalf("defaults %+v", got)
	}
}

func TestConfigValues(t *testing.T) {
	got, err := parseStomp(t, `
frame.max_headers = 20
frame.max_header_length = 2048
frame.max_body_length = "1MB"
max_inflight = 8
max_mqueue_len = 50
transaction_timeout = "5s"
session_expiry_interval = "2h"`)
	if err != nil {
		t.Fatal(err)
	}
	if got.Frame.MaxHeaders != 20 || got.Frame.MaxHeadersLength != 2048 || got.Frame.MaxBodyLength != 1<<20 ||
		got.MaxInflight != 8 || got.MaxMqueueLen != 50 || got.TransactionTimeout.D().Seconds() != 5 ||
		got.SessionExpiryInterval.D().Hours() != 2 {
		t.Fatalf("parsed %+v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ keys, err string }{
		{"frame.max_headers = 0", "edgeway.toml:2: gateway.stomp.frame.max_headers: must be 1..1000, got 0"},
		{"frame.max_headers_length = 10", "edgeway.toml:2: gateway.stomp.frame.max_headers_length: must be 64..1048576 bytes, got 10"},
		{"frame.max_headers_length = 2048\nframe.max_header_length = 4096", "edgeway.toml:3: gateway.stomp.frame.max_header_length: is another spelling of max_headers_length; set only one (got 4096 and 2048)"},
		{"frame.max_body_length = \"1GB\"", "edgeway.toml:2: gateway.stomp.frame.max_body_length: must be 1..67108864 bytes, got 1073741824"},
		{"frame.max_body = 1", "edgeway.toml:2: gateway.stomp.frame.max_body: unknown key"},
		{"max_inflight = 0", "edgeway.toml:2: gateway.stomp.max_inflight: must be 1..65535, got 0"},
		{"max_mqueue_len = -1", "edgeway.toml:2: gateway.stomp.max_mqueue_len: must be 1..1048576, got -1"},
		{"transaction_timeout = \"10ms\"", "edgeway.toml:2: gateway.stomp.transaction_timeout: must be at least 100ms, got 10ms"},
		{"transaction_timeout = 60", "edgeway.toml:2: gateway.stomp.transaction_timeout: expected a duration string such as \"30s\", got integer 60"},
		{"max_unacked = 10", "edgeway.toml:2: gateway.stomp.max_unacked: unknown key"},
	} {
		_, err := parseStomp(t, tc.keys)
		if err == nil || err.Error() != tc.err {
			t.Errorf("%s:\n got %v\nwant %s", strings.ReplaceAll(tc.keys, "\n", "; "), err, tc.err)
		}
	}
}

func TestConfigListenerTypes(t *testing.T) {
	_, err := config.Parse([]byte("[gateway.stomp.listeners.udp.default]\nbind = \"61613\"\n"), "edgeway.toml")
	if err == nil || !strings.Contains(err.Error(), `listener type "udp" is not available for gateway stomp (allowed: tcp, tls)`) {
		t.Fatalf("udp listener: %v", err)
	}
}
