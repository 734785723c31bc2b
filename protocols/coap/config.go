package coap

import (
	"errors"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.coap]: EMQX's, except notify_queue_len (EMQX has a
// fixed 100) and the RFC 7252 transmission parameters, which EMQX does
// not expose.
const (
	DefaultHeartbeat      = 30 * time.Second
	DefaultNotifyQueueLen = 100
	DefaultMaxBlockSize   = 1024
	DefaultMaxBodySize    = 4 << 20
	DefaultExchange       = 247 * time.Second
	DefaultAckTimeout     = 2 * time.Second
	DefaultMaxRetransmit  = 4
	DefaultRequestTimeout = 10 * time.Second
)

// QoS mapping values of publish_qos and subscribe_qos.
const (
	QoS0    = "qos0"
	QoS1    = "qos1"
	QoS2    = "qos2"
	QoSCoAP = "coap"
)

// Config is the kind's own part of [gateway.coap].
type Config struct {
	// Heartbeat is the keepalive of a connection-mode client: one that
	// sends nothing (a PUT heartbeat or any request) for 1.5× this long
	// is disconnected.
	Heartbeat config.Duration `toml:"heartbeat"`
	// ConnectionRequired makes every /ps request carry clientid and the
	// token from POST /mqtt/connection.
	ConnectionRequired bool `toml:"connection_required"`
	// NotifyType is non, con or qos (QoS 0 → NON, QoS 1/2 → CON).
	NotifyType string `toml:"notify_type"`
	// SubscribeQoS and PublishQoS are qos0|qos1|qos2|coap (NON → 0, CON → 1).
	SubscribeQoS string `toml:"subscribe_qos"`
	PublishQoS   string `toml:"publish_qos"`
	// NotifyQueueLen bounds the CON notifications waiting behind the one
	// in flight, per observe relation; when full the oldest is dropped and
	// counted as delivery.dropped.queue_full.
	NotifyQueueLen int `toml:"notify_queue_len"`
	// AckTimeout and MaxRetransmit are RFC 7252's ACK_TIMEOUT and
	// MAX_RETRANSMIT for what the gateway sends as CON.
	AckTimeout    config.Duration `toml:"ack_timeout"`
	MaxRetransmit int             `toml:"max_retransmit"`
	// RequestTimeout bounds a request the HTTP API sends to a device when
	// the API call names none.
	RequestTimeout config.Duration `toml:"request_timeout"`
	Blockwise      Blockwise       `toml:"blockwise"`
}

// Blockwise is `blockwise.*` (RFC 7959).
type Blockwise struct {
	Enable           bool            `toml:"enable"`
	MaxBlockSize     int             `toml:"max_block_size"`
	MaxBodySize      config.ByteSize `toml:"max_body_size"`
	ExchangeLifetime config.Duration `toml:"exchange_lifetime"`
}

// DefaultConfig returns the settings with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		Heartbeat:      config.Duration(DefaultHeartbeat),
		NotifyType:     "qos",
		SubscribeQoS:   QoSCoAP,
		PublishQoS:     QoSCoAP,
		NotifyQueueLen: DefaultNotifyQueueLen,
		AckTimeout:     config.Duration(DefaultAckTimeout),
		MaxRetransmit:  DefaultMaxRetransmit,
		RequestTimeout: config.Duration(DefaultRequestTimeout),
		Blockwise: Blockwise{
			Enable:           true,
			MaxBlockSize:     DefaultMaxBlockSize,
			MaxBodySize:      DefaultMaxBodySize,
			ExchangeLifetime: config.Duration(DefaultExchange),
		},
	}
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.Heartbeat.D() < time.Second {
		errs = append(errs, config.Field("heartbeat", "must be at least 1s, got %s", c.Heartbeat))
	}
	switch c.NotifyType {
	case "non", "con", "qos":
	default:
		errs = append(errs, config.Field("notify_type", "must be non, con or qos, got %q", c.NotifyType))
	}
	for _, q := range []struct{ key, v string }{{"subscribe_qos", c.SubscribeQoS}, {"publish_qos", c.PublishQoS}} {
		switch q.v {
		case QoS0, QoS1, QoS2, QoSCoAP:
		default:
			errs = append(errs, config.Field(q.key, "must be qos0, qos1, qos2 or coap, got %q", q.v))
		}
	}
	if c.NotifyQueueLen < 0 || c.NotifyQueueLen > 1<<16 {
		errs = append(errs, config.Field("notify_queue_len", "must be 0..65536, got %d", c.NotifyQueueLen))
	}
	if c.AckTimeout.D() < 10*time.Millisecond || c.AckTimeout.D() > time.Minute {
		errs = append(errs, config.Field("ack_timeout", "must be 10ms..1m, got %s", c.AckTimeout))
	}
	if c.MaxRetransmit < 0 || c.MaxRetransmit > 20 {
		errs = append(errs, config.Field("max_retransmit", "must be 0..20, got %d", c.MaxRetransmit))
	}
	if c.RequestTimeout.D() <= 0 {
		errs = append(errs, config.Field("request_timeout", "must be positive, got %s", c.RequestTimeout))
	}
	b := &c.Blockwise
	if b.MaxBlockSize < 16 || b.MaxBlockSize > 1024 || b.MaxBlockSize&(b.MaxBlockSize-1) != 0 {
		errs = append(errs, config.Field("blockwise.max_block_size", "must be a power of two in 16..1024, got %d", b.MaxBlockSize))
	}
	if b.MaxBodySize < 16 || b.MaxBodySize > 64<<20 {
		errs = append(errs, config.Field("blockwise.max_body_size", "must be 16B..64MB, got %d", int64(b.MaxBodySize)))
	}
	if b.ExchangeLifetime.D() < time.Second {
		errs = append(errs, config.Field("blockwise.exchange_lifetime", "must be at least 1s, got %s", b.ExchangeLifetime))
	}
	return errors.Join(errs...)
}

func mapQoS(setting string, typ uint8) byte {
	switch setting {
	case QoS0:
		return 0
	case QoS1:
		return 1
	case QoS2:
		return 2
	}
	if typ == CON {
		return 1
	}
	return 0
}
