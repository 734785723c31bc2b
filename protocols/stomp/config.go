package stomp

import (
	"errors"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.stomp]. Frame limits are EMQX's.
const (
	DefaultMaxHeaders         = 10
	DefaultMaxHeadersLength   = 1024
	DefaultMaxBodyLength      = 65536
	DefaultMaxInflight        = 100
	DefaultMaxMqueueLen       = 1000
	DefaultTransactionTimeout = 60 * time.Second
)

// Config is the kind's own part of [gateway.stomp].
type Config struct {
	Frame FrameConfig `toml:"frame"`
	// MaxInflight is the window of MESSAGE frames a client or
	// client-individual subscription may hold unacknowledged; more wait
	// in the gateway until an ACK or NACK opens the window.
	MaxInflight int `toml:"max_inflight"`
	// MaxMqueueLen bounds the messages waiting for one connection (in the
	// broker while the client's windows are full, and QoS 0 messages
	// waiting for the socket); the oldest is dropped when full.
	MaxMqueueLen int `toml:"max_mqueue_len"`
	// TransactionTimeout discards a transaction neither committed nor
	// aborted within this time.
	TransactionTimeout config.Duration `toml:"transaction_timeout"`
	// SessionExpiryInterval keeps a client's broker session (its
	// subscriptions and unacknowledged messages) after it disconnects, so
	// a reconnect with the same clientid gets them back. It applies only
	// when clientinfo_override.clientid gives clients a stable id; 0, the
	// default, ends the session with the connection, as EMQX does.
	SessionExpiryInterval config.Duration `toml:"session_expiry_interval"`
}

// FrameConfig is `frame.*`, EMQX's frame limits.
type FrameConfig struct {
	MaxHeaders int `toml:"max_headers"`
	// MaxHeadersLength bounds one header line (EMQX's key name).
	MaxHeadersLength config.ByteSize `toml:"max_headers_length"`
	// MaxHeaderLength is the same limit under the singular spelling;
	// setting both to different values is an error.
	MaxHeaderLength *config.ByteSize `toml:"max_header_length"`
	MaxBodyLength   config.ByteSize  `toml:"max_body_length"`
}

// DefaultConfig returns the settings with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		Frame: FrameConfig{
			MaxHeaders:       DefaultMaxHeaders,
			MaxHeadersLength: DefaultMaxHeadersLength,
			MaxBodyLength:    DefaultMaxBodyLength,
		},
		MaxInflight:        DefaultMaxInflight,
		MaxMqueueLen:       DefaultMaxMqueueLen,
		TransactionTimeout: config.Duration(DefaultTransactionTimeout),
	}
}

// Bounds of the settings: beyond them a typo, not a choice.
const (
	maxHeadersCap       = 1000
	minHeaderLength     = 64
	maxHeaderLengthCap  = 1 << 20
	maxBodyLengthCap    = 64 << 20
	maxInflightCap      = 65535
	maxMqueueLenCap     = 1 << 20
	minTransactionLimit = 100 * time.Millisecond
)

// Validate implements config.Validator.
func (f *FrameConfig) Validate() error {
	var errs []error
	if f.MaxHeaders < 1 || f.MaxHeaders > maxHeadersCap {
		errs = append(errs, config.Field("max_headers", "must be 1..%d, got %d", maxHeadersCap, f.MaxHeaders))
	}
	if f.MaxHeadersLength < minHeaderLength || f.MaxHeadersLength > maxHeaderLengthCap {
		errs = append(errs, config.Field("max_headers_length", "must be %d..%d bytes, got %d", minHeaderLength, maxHeaderLengthCap, int64(f.MaxHeadersLength)))
	}
	if f.MaxHeaderLength != nil {
		switch {
		case *f.MaxHeaderLength == f.MaxHeadersLength:
		case f.MaxHeadersLength != DefaultMaxHeadersLength:
			errs = append(errs, config.Field("max_header_length", "is another spelling of max_headers_length; set only one (got %d and %d)", int64(*f.MaxHeaderLength), int64(f.MaxHeadersLength)))
		case *f.MaxHeaderLength < minHeaderLength || *f.MaxHeaderLength > maxHeaderLengthCap:
			errs = append(errs, config.Field("max_header_length", "must be %d..%d bytes, got %d", minHeaderLength, maxHeaderLengthCap, int64(*f.MaxHeaderLength)))
		default:
			f.MaxHeadersLength = *f.MaxHeaderLength
		}
		f.MaxHeaderLength = nil
	}
	if f.MaxBodyLength < 1 || f.MaxBodyLength > maxBodyLengthCap {
		errs = append(errs, config.Field("max_body_length", "must be 1..%d bytes, got %d", maxBodyLengthCap, int64(f.MaxBodyLength)))
	}
	return errors.Join(errs...)
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxInflight < 1 || c.MaxInflight > maxInflightCap {
		errs = append(errs, config.Field("max_inflight", "must be 1..%d, got %d", maxInflightCap, c.MaxInflight))
	}
	if c.MaxMqueueLen < 1 || c.MaxMqueueLen > maxMqueueLenCap {
		errs = append(errs, config.Field("max_mqueue_len", "must be 1..%d, got %d", maxMqueueLenCap, c.MaxMqueueLen))
	}
	if c.TransactionTimeout.D() < minTransactionLimit {
		errs = append(errs, config.Field("transaction_timeout", "must be at least %s, got %s", minTransactionLimit, c.TransactionTimeout))
	}
	return errors.Join(errs...)
}

// limits are the frame limits as the Reader takes them.
func (c *Config) limits() Limits {
	return Limits{
		MaxHeaders:      c.Frame.MaxHeaders,
		MaxHeaderLength: int(c.Frame.MaxHeadersLength),
		MaxBodyLength:   int(c.Frame.MaxBodyLength),
	}
}

// sessionInflight is the broker's window for one connection: room for a
// few subscriptions' windows, so one stalled subscription does not hold
// back the others until it has hoarded this many.
func (c *Config) sessionInflight() int { return min(4*c.MaxInflight, maxInflightCap) }
