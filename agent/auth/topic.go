package auth

import "strings"

// covers reports whether every topic matched by filter is also matched by
// rule, both MQTT filters without $share. It decides whether an allow
// rule grants a subscription: "a/#" and "a/+/c" cover "a/+/c", "a/b/c"
// does not. For a filter without wildcards it is broker.Match(rule, filter).
func covers(rule, filter string) bool {
	if isDollar(filter) && startsWild(rule) {
		return false
	}
	for {
		rl, rrest, rmore := cutLevel(rule)
		if rl == "#" {
			return true
		}
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			// filter takes any number of levels, and rule has a
			// '+' or a literal here: some topic escapes it.
			return false
		}
		if rl != "+" && rl != fl {
			return false
		}
		switch {
		case !rmore:
			return !fmore
		case !fmore:
			// filter ends here; only a trailing "#" in rule also
			// matches the parent level ("a/#" matches "a").
			return rrest == "#"
		}
		rule, filter = rrest, frest
	}
}

// overlaps reports whether some topic is matched by both filters. It
// decides whether a deny rule refuses a subscription: a client must not
// receive through "a/+/c" what "deny a/b/c" forbids.
func overlaps(a, b string) bool {
	if isDollar(a) && startsWild(b) || isDollar(b) && startsWild(a) {
		return false
	}
	for {
		al, arest, amore := cutLevel(a)
		bl, brest, bmore := cutLevel(b)
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

func isDollar(s string) bool   { return s != "" && s[0] == '$' }
func startsWild(s string) bool { return s != "" && (s[0] == '+' || s[0] == '#') }

func cutLevel(s string) (level, rest string, more bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
