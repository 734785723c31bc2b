package broker

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTopicLen is the longest topic name or filter accepted, in bytes. It is
// the limit of MQTT's 16-bit string length prefix, so anything the broker
// accepts can be forwarded to an MQTT peer unchanged.
const MaxTopicLen = 65535

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// ErrInvalidTopicName and ErrInvalidTopicFilter are wrapped by every
// validation error, so a protocol can map them to its own reason code with
// errors.Is and still log the precise cause.
var (
	ErrInvalidTopicName   = errors.New("broker: invalid topic name")
	ErrInvalidTopicFilter = errors.New("broker: invalid topic filter")
)

// The causes are built once so that rejecting a flood of bad publishes
// allocates nothing.
var (
	errNameEmpty    = fmt.Errorf("%w: empty", ErrInvalidTopicName)
	errNameTooLong  = fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopicName, MaxTopicLen)
	errNameNUL      = fmt.Errorf("%w: contains U+0000", ErrInvalidTopicName)
	errNameUTF8     = fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopicName)
	errNameControl  = fmt.Errorf("%w: control character or noncharacter", ErrInvalidTopicName)
	errNameWildcard = fmt.Errorf("%w: contains a wildcard", ErrInvalidTopicName)

	errFilterEmpty        = fmt.Errorf("%w: empty", ErrInvalidTopicFilter)
	errFilterTooLong      = fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopicFilter, MaxTopicLen)
	errFilterNUL          = fmt.Errorf("%w: contains U+0000", ErrInvalidTopicFilter)
	errFilterUTF8         = fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopicFilter)
	errFilterControl      = fmt.Errorf("%w: control character or noncharacter", ErrInvalidTopicFilter)
	errFilterHashNotAlone = fmt.Errorf("%w: '#' must be alone in its level", ErrInvalidTopicFilter)
	errFilterHashNotLast  = fmt.Errorf("%w: '#' must be the last level", ErrInvalidTopicFilter)
	errFilterPlusNotAlone = fmt.Errorf("%w: '+' must be alone in its level", ErrInvalidTopicFilter)
	errShareEmptyGroup    = fmt.Errorf("%w: empty $share group", ErrInvalidTopicFilter)
	errShareGroupWildcard = fmt.Errorf("%w: wildcard in $share group", ErrInvalidTopicFilter)
	errShareNoFilter      = fmt.Errorf("%w: $share without a filter", ErrInvalidTopicFilter)
)

// ValidTopicName reports whether s may be published to: non-empty, at most
// MaxTopicLen bytes, valid UTF-8, no U+0000 and no wildcard characters.
// Empty levels ("a//b", "/a", "a/") are valid. Topics starting with '$' are
// valid too; only filters treat them specially.
func ValidTopicName(s string) error {
	if s == "" {
		return errNameEmpty
	}
	if len(s) > MaxTopicLen {
		return errNameTooLong
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0:
			return errNameNUL
		case '+', '#':
			return errNameWildcard
		}
	}
	if !utf8.ValidString(s) {
		return errNameUTF8
	}
	if hasDiscouraged(s) {
		return errNameControl
	}
	return nil
}

// hasDiscouraged reports control characters (U+0001–U+001F, U+007F–U+009F)
// and Unicode noncharacters. MQTT says topics SHOULD NOT contain them and
// lets a receiver close the connection when they do; mosquitto does. A
// device's topic with one would then be a poison message for the uplink,
// resent and refused after every reconnect, so they are refused here.
func hasDiscouraged(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return true
		}
		if c < 0x80 {
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r <= 0x9f || (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return true
		}
		i += size - 1
	}
	return false
}

// ValidTopicFilter reports whether s may be subscribed to. On top of the
// rules for names, '+' must fill a whole level and '#' must fill the last
// level. A shared subscription $share/{group}/{filter} needs a non-empty
// group without wildcards and a valid, non-empty inner filter.
func ValidTopicFilter(s string) error {
	if s == "" {
		return errFilterEmpty
	}
	if len(s) > MaxTopicLen {
		return errFilterTooLong
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errFilterNUL
	}
	if !utf8.ValidString(s) {
		return errFilterUTF8
	}
	if hasDiscouraged(s) {
		return errFilterControl
	}
	if strings.HasPrefix(s, SharePrefix) {
		rest := s[len(SharePrefix):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return errShareNoFilter
		}
		group := rest[:i]
		if group == "" {
			return errShareEmptyGroup
		}
		if strings.ContainsAny(group, "+#") {
			return errShareGroupWildcard
		}
		s = rest[i+1:]
		if s == "" {
			return errShareNoFilter
		}
	}
	for {
		level, rest, more := cut(s)
		if strings.IndexByte(level, '#') >= 0 {
			if level != "#" {
				return errFilterHashNotAlone
			}
			if more {
				return errFilterHashNotLast
			}
		}
		if strings.IndexByte(level, '+') >= 0 && level != "+" {
			return errFilterPlusNotAlone
		}
		if !more {
			return nil
		}
		s = rest
	}
}

// SplitShared splits a shared subscription filter $share/{group}/{filter}
// into its group and inner filter. ok is false for any other filter. It
// does not validate; call ValidTopicFilter first.
func SplitShared(filter string) (group, inner string, ok bool) {
	if !strings.HasPrefix(filter, SharePrefix) {
		return "", "", false
	}
	rest := filter[len(SharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// Match reports whether topic name topic matches filter, following MQTT
// 3.1.1 §4.7: '+' matches exactly one level (possibly empty), '#' matches
// the rest including the parent level ("a/#" matches "a"), and a filter
// whose first level is a wildcard does not match a topic starting with '$'.
//
// Match is the plain reference matcher: the broker's trie is tested against
// it, and ACL code may use it directly. It does not interpret $share (strip
// it with SplitShared first). Its result for invalid input is unspecified,
// but it never panics.
func Match(filter, topic string) bool {
	if topic != "" && topic[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := cut(topic)
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			// "a/#" matches "a": the only filter left that can match
			// zero further levels is a lone '#'.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// cut splits off the first level of a topic or filter. more reports whether
// a separator followed it, which distinguishes "a" (one level) from "a/"
// (two levels, the second empty).
func cut(s string) (level, rest string, more bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
