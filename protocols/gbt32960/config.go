package gbt32960

import (
	"errors"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.gbt32960]; the first three are EMQX's.
const (
	DefaultRetryInterval   = 8 * time.Second
	DefaultMaxRetryTimes   = 3
	DefaultMessageQueueLen = 10
	// DefaultMaxLength bounds one frame: far above a report with several
	// 200-cell battery packs, far below what a bad length field could make
	// the gateway buffer (64 KiB per connection).
	DefaultMaxLength = 16 << 10
	// DefaultMountpoint is EMQX's.
	DefaultMountpoint = "gbt32960/${clientid}/"
)

// Config is the kind's own part of [gateway.gbt32960].
type Config struct {
	// RetryInterval resends an unanswered downlink command this often.
	RetryInterval config.Duration `toml:"retry_interval"`
	// MaxRetryTimes resends a command at most this many times before it
	// is dropped (and counted) and the next queued one goes out.
	MaxRetryTimes int `toml:"max_retry_times"`
	// MessageQueueLen bounds the downlink commands waiting behind the one
	// in flight; more are dropped and counted.
	MessageQueueLen int         `toml:"message_queue_len"`
	Frame           FrameConfig `toml:"frame"`
}

// FrameConfig is `frame.*`.
type FrameConfig struct {
	// MaxLength is the largest frame accepted, start bytes to BCC; a
	// terminal that declares more is disconnected (EMQX has no limit).
	MaxLength config.ByteSize `toml:"max_length"`
}

// DefaultConfig returns the settings with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		RetryInterval:   config.Duration(DefaultRetryInterval),
		MaxRetryTimes:   DefaultMaxRetryTimes,
		MessageQueueLen: DefaultMessageQueueLen,
		Frame:           FrameConfig{MaxLength: DefaultMaxLength},
	}
}

const (
	minRetryInterval = 100 * time.Millisecond
	maxRetryTimesCap = 100
	maxQueueLenCap   = 10000
	minMaxLength     = headerLen + 1
	maxMaxLength     = headerLen + MaxDataLength + 1
)

// Validate implements config.Validator.
func (f *FrameConfig) Validate() error {
	if f.MaxLength < minMaxLength || f.MaxLength > maxMaxLength {
		return config.Field("max_length", "must be %d..%d bytes, got %d", minMaxLength, maxMaxLength, int64(f.MaxLength))
	}
	return nil
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.RetryInterval.D() < minRetryInterval {
		errs = append(errs, config.Field("retry_interval", "must be at least %s, got %s", minRetryInterval, c.RetryInterval))
	}
	if c.MaxRetryTimes < 0 || c.MaxRetryTimes > maxRetryTimesCap {
		errs = append(errs, config.Field("max_retry_times", "must be 0..%d, got %d", maxRetryTimesCap, c.MaxRetryTimes))
	}
	if c.MessageQueueLen < 1 || c.MessageQueueLen > maxQueueLenCap {
		errs = append(errs, config.Field("message_queue_len", "must be 1..%d, got %d", maxQueueLenCap, c.MessageQueueLen))
	}
	return errors.Join(errs...)
}

// maxData is the data-unit limit the Reader takes.
func (c *Config) maxData() int { return int(c.Frame.MaxLength) - headerLen - 1 }
