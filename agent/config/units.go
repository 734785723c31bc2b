package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written as a string with a unit: "30s", "5m",
// "1h30m", "250ms", "2d". A bare number is refused: a config pushed to a
// hundred boxes should not depend on which unit a reader assumed.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration the way it is written in TOML.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as "30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalConfig implements Unmarshaler.
func (d *Duration) UnmarshalConfig(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a duration string such as \"30s\", got %s", describe(v))
	}
	p, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(p)
	return nil
}

// ParseDuration parses a Go duration and also accepts a "d" (24h) suffix.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if strings.HasSuffix(t, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(t, "d"), 64)
		if err != nil || n < 0 || n > 106000 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	p, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want a number with a unit: ms, s, m, h, d)", s)
	}
	if p < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return p, nil
}

// ByteSize is a size in bytes written as "512B", "256KB", "1MB", "2GB"
// (binary multiples, as EMQX reads them) or as a plain integer of bytes.
type ByteSize int64

// String formats the size with the largest exact unit.
func (b ByteSize) String() string {
	v := int64(b)
	switch {
	case v != 0 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GB"
	case v != 0 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MB"
	case v != 0 && v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KB"
	}
	return strconv.FormatInt(v, 10) + "B"
}

// MarshalText writes the size as "256KB".
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalConfig implements Unmarshaler.
func (b *ByteSize) UnmarshalConfig(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("negative size %d", x)
		}
		*b = ByteSize(x)
		return nil
	case string:
		n, err := ParseByteSize(x)
		if err != nil {
			return err
		}
		*b = n
		return nil
	}
	return fmt.Errorf("expected a size such as \"256KB\", got %s", describe(v))
}

// ParseByteSize parses "256KB", "1MB", "1.5GB", "100B", "1KiB", "64".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := float64(1)
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.m
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || n*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("bad size %q (want a number with a unit: B, KB, MB, GB)", s)
	}
	return ByteSize(n * mult), nil
}

// Limit is a non-negative count that may also be written "infinity"
// (EMQX's spelling for no limit). Unlimited is stored as -1.
type Limit int64

// Unlimited is the value of a Limit written as "infinity".
const Unlimited Limit = -1

// IsUnlimited reports whether the limit is "infinity".
func (l Limit) IsUnlimited() bool { return l < 0 }

// String formats the limit as written in TOML.
func (l Limit) String() string {
	if l < 0 {
		return "infinity"
	}
	return strconv.FormatInt(int64(l), 10)
}

// MarshalText writes "infinity" or the number.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalConfig implements Unmarshaler.
func (l *Limit) UnmarshalConfig(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("negative limit %d (use \"infinity\" for no limit)", x)
		}
		*l = Limit(x)
		return nil
	case string:
		if x == "infinity" {
			*l = Unlimited
			return nil
		}
	}
	return fmt.Errorf("expected a non-negative integer or \"infinity\", got %s", describe(v))
}

// Secret is a string that never appears in logs, API answers or errors.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "******"
}

// MarshalText hides the value, so a secret never leaves through JSON.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// UnmarshalConfig implements Unmarshaler.
func (s *Secret) UnmarshalConfig(v any) error {
	x, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a string, got %s", describe(v))
	}
	*s = Secret(x)
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return fmt.Sprintf("datetime %s", x.Format(time.RFC3339))
	}
	return fmt.Sprintf("%T", v)
}
