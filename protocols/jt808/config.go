package jt808

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.jt808]; those EMQX has are EMQX's.
const (
	DefaultMaxLength            = 8192
	DefaultReassemblyTimeout    = 30 * time.Second
	DefaultMaxReassembledLength = 2 << 20
	DefaultUpTopic              = "jt808/${clientid}/${phone}/up"
	DefaultDnTopic              = "jt808/${clientid}/${phone}/dn"
	DefaultKeepalive            = 300 * time.Second
	DefaultRetryInterval        = 8 * time.Second
	DefaultMaxRetryTimes        = 3
	DefaultMessageQueueLen      = 10
	DefaultMaxInflight          = 128
	DefaultAuthRetries          = 3
	DefaultAuthRetryInterval    = time.Second
	DefaultAuthTimeout          = 5 * time.Second
)

// Config is the kind's own part of [gateway.jt808].
type Config struct {
	Frame FrameConfig `toml:"frame"`
	Proto ProtoConfig `toml:"proto"`
	// RetryInterval is how long a downlink waits for its reply before it
	// is sent again.
	RetryInterval config.Duration `toml:"retry_interval"`
	// MaxRetryTimes is how often a downlink is sent again before it is
	// dropped (and counted).
	MaxRetryTimes int `toml:"max_retry_times"`
	// MessageQueueLen bounds the downlinks waiting for a free inflight
	// slot; beyond it they are dropped and counted.
	MessageQueueLen int `toml:"message_queue_len"`
	// MaxInflight is how many downlinks may await their replies at once.
	MaxInflight int `toml:"max_inflight"`
}

// FrameConfig is `frame.*`.
type FrameConfig struct {
	// MaxLength bounds a frame's escaped bytes between the delimiters.
	MaxLength int `toml:"max_length"`
	// ParseUnknownMessage forwards messages of unknown ids as base64.
	ParseUnknownMessage bool `toml:"parse_unknown_message"`
	// StringEncoding is "utf8" or "gbk": how STRING fields are on the wire.
	StringEncoding string `toml:"string_encoding"`
	// ReassemblyTimeout drops a sub-packaged message whose packages did
	// not all arrive in time (after asking once for the missing ones).
	ReassemblyTimeout config.Duration `toml:"reassembly_timeout"`
	// MaxReassembledLength bounds a reassembled message body.
	MaxReassembledLength config.ByteSize `toml:"max_reassembled_length"`
}

// ProtoConfig is `proto.*`.
type ProtoConfig struct {
	Auth AuthConfig `toml:"auth"`
	// UpTopic and DnTopic take ${clientid} and ${phone}.
	UpTopic                 config.Template `toml:"up_topic"`
	DnTopic                 config.Template `toml:"dn_topic"`
	IgnoreUnsupportedFrames bool            `toml:"ignore_unsupported_frames"`
	// Keepalive closes an authenticated connection silent this long
	// (EMQX fixes it at 300 s).
	Keepalive config.Duration `toml:"keepalive"`
}

// AuthConfig is `proto.auth.*`.
type AuthConfig struct {
	// AllowAnonymous must be set, as in EMQX: true registers any terminal
	// with a generated auth code when no registry is configured.
	AllowAnonymous *bool `toml:"allow_anonymous"`
	// Registry is the URL registrations are POSTed to.
	Registry string `toml:"registry"`
	// Authentication is the URL authentications are POSTed to.
	Authentication string `toml:"authentication"`
	// Retries, RetryInterval (doubling) and Timeout shape the HTTP calls.
	Retries       int             `toml:"retries"`
	RetryInterval config.Duration `toml:"retry_interval"`
	Timeout       config.Duration `toml:"timeout"`
	// RegistrationsFile keeps the phone → auth code registrations across
	// restarts (a JSON file, rewritten atomically on every new or changed
	// registration); empty means registrations.json in the gateway's data
	// directory (<agent.data_dir>/gateways/jt808). Changing it restarts the
	// gateway.
	RegistrationsFile string `toml:"registrations_file"`
}

// DefaultConfig returns the settings with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		Frame: FrameConfig{MaxLength: DefaultMaxLength, ParseUnknownMessage: true, StringEncoding: "utf8",
			ReassemblyTimeout: config.Duration(DefaultReassemblyTimeout), MaxReassembledLength: DefaultMaxReassembledLength},
		Proto: ProtoConfig{
			Auth: AuthConfig{Retries: DefaultAuthRetries, RetryInterval: config.Duration(DefaultAuthRetryInterval),
				Timeout: config.Duration(DefaultAuthTimeout)},
			UpTopic: config.MustTemplate(DefaultUpTopic), DnTopic: config.MustTemplate(DefaultDnTopic),
			IgnoreUnsupportedFrames: true, Keepalive: config.Duration(DefaultKeepalive),
		},
		RetryInterval:   config.Duration(DefaultRetryInterval),
		MaxRetryTimes:   DefaultMaxRetryTimes,
		MessageQueueLen: DefaultMessageQueueLen,
		MaxInflight:     DefaultMaxInflight,
	}
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	f := &c.Frame
	if f.MaxLength < 32 || f.MaxLength > 1<<20 {
		errs = append(errs, config.Field("frame.max_length", "must be 32..1048576, got %d", f.MaxLength))
	}
	if f.StringEncoding != "utf8" && f.StringEncoding != "gbk" {
		errs = append(errs, config.Field("frame.string_encoding", "must be utf8 or gbk, got %q", f.StringEncoding))
	}
	if f.ReassemblyTimeout.D() < 100*time.Millisecond {
		errs = append(errs, config.Field("frame.reassembly_timeout", "must be at least 100ms, got %s", f.ReassemblyTimeout))
	}
	if f.MaxReassembledLength < MaxBodyLen || f.MaxReassembledLength > 64<<20 {
		errs = append(errs, config.Field("frame.max_reassembled_length", "must be 1023..64MB, got %d", int64(f.MaxReassembledLength)))
	}
	a := &c.Proto.Auth
	if a.AllowAnonymous == nil {
		errs = append(errs, config.Field("proto.auth.allow_anonymous", "is required (true or false)"))
	} else if !*a.AllowAnonymous && (a.Registry == "" || a.Authentication == "") {
		errs = append(errs, config.Field("proto.auth", "registry and authentication URLs are required when allow_anonymous = false"))
	}
	if (a.Registry == "") != (a.Authentication == "") {
		errs = append(errs, config.Field("proto.auth", "set both registry and authentication, or neither"))
	}
	for _, u := range []struct{ key, v string }{{"proto.auth.registry", a.Registry}, {"proto.auth.authentication", a.Authentication}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, config.Field(u.key, "must be an http or https URL, got %q", u.v))
		}
	}
	if f := a.RegistrationsFile; f != "" && (strings.HasSuffix(f, "/") || filepath.Base(f) == "." || filepath.Base(f) == "..") {
		errs = append(errs, config.Field("proto.auth.registrations_file", "must name a file, got %q", f))
	}
	if a.Retries < 0 || a.Retries > 10 {
		errs = append(errs, config.Field("proto.auth.retries", "must be 0..10, got %d", a.Retries))
	}
	if c.Proto.UpTopic.IsZero() || c.Proto.DnTopic.IsZero() {
		errs = append(errs, config.Field("proto", "up_topic and dn_topic must not be empty"))
	}
	if c.Proto.Keepalive.D() < time.Second {
		errs = append(errs, config.Field("proto.keepalive", "must be at least 1s, got %s", c.Proto.Keepalive))
	}
	if c.RetryInterval.D() < 10*time.Millisecond {
		errs = append(errs, config.Field("retry_interval", "must be at least 10ms, got %s", c.RetryInterval))
	}
	if c.MaxRetryTimes < 0 || c.MaxRetryTimes > 100 {
		errs = append(errs, config.Field("max_retry_times", "must be 0..100, got %d", c.MaxRetryTimes))
	}
	if c.MessageQueueLen < 0 || c.MessageQueueLen > 1<<16 {
		errs = append(errs, config.Field("message_queue_len", "must be 0..65536, got %d", c.MessageQueueLen))
	}
	if c.MaxInflight < 1 || c.MaxInflight > 1024 {
		errs = append(errs, config.Field("max_inflight", "must be 1..1024, got %d", c.MaxInflight))
	}
	return errors.Join(errs...)
}

func (c *Config) charset() charset { return charset{gbk: c.Frame.StringEncoding == "gbk"} }
