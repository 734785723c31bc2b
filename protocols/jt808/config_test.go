package jt808_test

import (
	"os"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/jt808"
)

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		name, keys, auth, want string
	}{
		{"defaults", "", "allow_anonymous = true", ""},
		{"anonymous required", "", "registry = \"http://a/r\"\nauthentication = \"http://a/a\"", "proto.auth.allow_anonymous: is required (true or false)"},
		{"urls required", "", "allow_anonymous = false", "proto.auth: registry and authentication URLs are required when allow_anonymous = false"},
		{"both urls", "", "allow_anonymous = true\nregistry = \"http://a/r\"", "proto.auth: set both registry and authentication, or neither"},
		{"bad url", "", "allow_anonymous = false\nregistry = \"abc://abc\"\nauthentication = \"http://a/a\"", `proto.auth.registry: must be an http or https URL, got "abc://abc"`},
		{"encoding", `frame.string_encoding = "latin1"`, "allow_anonymous = true", `frame.string_encoding: must be utf8 or gbk, got "latin1"`},
		{"max_length", `frame.max_length = 10`, "allow_anonymous = true", "frame.max_length: must be 32..1048576, got 10"},
		{"keepalive", `proto.keepalive = "0s"`, "allow_anonymous = true", "proto.keepalive: must be at least 1s, got 0s"},
		{"inflight", `max_inflight = 0`, "allow_anonymous = true", "max_inflight: must be 1..1024, got 0"},
		{"queue", `message_queue_len = -1`, "allow_anonymous = true", "message_queue_len: must be 0..65536, got -1"},
		{"registrations file", "", "allow_anonymous = true\nregistrations_file = \"/var/lib/edgeway/jt808/\"", `proto.auth.registrations_file: must name a file, got "/var/lib/edgeway/jt808/"`},
		{"topic placeholder", `proto.up_topic = "jt808/${phon}/up"`, "allow_anonymous = true", "unknown placeholder ${phon}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(`
[gateway.jt808]
`+c.keys+`
[gateway.jt808.proto.auth]
`+c.auth+`
[gateway.jt808.listeners.tcp.default]
bind = "127.0.0.1:0"
`), "test.toml")
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant …%s", err, c.want)
			}
		})
	}
	d := jt808.DefaultConfig()
	if d.Frame.MaxLength != 8192 || d.RetryInterval.D().String() != "8s" || d.MaxRetryTimes != 3 || d.MessageQueueLen != 10 ||
		d.Proto.UpTopic.String() != "jt808/${clientid}/${phone}/up" || d.Proto.Keepalive.D().String() != "5m0s" {
		t.Fatalf("defaults %+v", d)
	}
}

// TestREADMEConfig parses the README's example configuration (up to the
// ssl listener, whose certificate files do not exist here).
func TestREADMEConfig(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```toml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no toml block in README.md")
	}
	block, _, _ = strings.Cut(block, "[gateway.jt808.listeners.ssl")
	if _, err := config.Parse([]byte(block), "README.md"); err != nil {
		t.Fatal(err)
	}
}
