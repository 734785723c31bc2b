package api

import (
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
)

// The [api] keys, checked by config: each snippet and the error it gets.
func TestAPIConfig(t *testing.T) {
	const hash = `"sha256$s$00"`
	for _, tc := range []struct{ src, want string }{
		{`listen = ""`, ""},
		{`listen = "0.0.0.0:8080"` + "\nmax_body_size = \"4MB\"", ""},
		{`listen = "8080"`, `x:4: api.listen: bad address "8080" (want host:port)`},
		{`max_body_size = "10B"`, "x:4: api.max_body_size: must be between 1KB and 64MB, got 10B"},
		{"[[api.users]]\nusername = \"a\"\npassword_hash = " + hash + "\nrole = \"viewer\"", ""},
		{"[[api.users]]\nusername = \"a\"\npassword_hash = " + hash + "\nrole = \"root\"", `x:6: api.users[0].role: must be "viewer" or "admin", got "root"`},
		{"[[api.users]]\nusername = \"a:b\"\npassword_hash = " + hash + "\nrole = \"admin\"", `x:4: api.users[0].username: must not contain ':' or blanks, got "a:b"`},
		{"[[api.users]]\nusername = \"a\"\npassword_hash = \"hunter2\"\nrole = \"admin\"", "x:5: api.users[0].password_hash: user \"a\": want a hash from `edgeway passwd` (pbkdf2-sha256$… or sha256$…)"},
		{"[[api.users]]\nusername = \"a\"\npassword_hash = " + hash + "\nrole = \"admin\"\n[[api.users]]\nusername = \"a\"\npassword_hash = " + hash + "\nrole = \"viewer\"", `x:8: api.users[1].username: duplicate user "a" (also users[0])`},
		{"[[api.users]]\npassword_hash = " + hash + "\nrole = \"admin\"", "x:3: api.users[0].username: must not be empty"},
		{"[[api.users]]\nusername = \"a\"\npasswd = \"x\"\npassword_hash = " + hash + "\nrole = \"admin\"", "x:5: api.users[0].passwd: unknown key"},
	} {
		src := "[agent]\ndata_dir = \"/tmp/x\"\n[api]\n" + tc.src + "\n"
		if strings.HasPrefix(tc.src, "[[") {
			src = "[agent]\ndata_dir = \"/tmp/x\"\n" + tc.src + "\n"
		}
		_, err := config.Parse([]byte(src), "x")
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.src, got, tc.want)
		}
	}
	// A hash that config lets through but cannot be used stops the API.
	if err := checkUsers([]config.APIUser{{Username: "a", PasswordHash: "sha256$only-two", Role: "admin"}}); err == nil || strings.Contains(err.Error(), "only-two") {
		t.Fatalf("checkUsers: %v", err)
	}
}
