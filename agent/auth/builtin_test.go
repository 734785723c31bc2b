package auth

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

// Hashes of "passwd" and "password" from knownHashes.
const (
	hashPasswd   = "pbkdf2-sha256$1$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLxJypzM8Xm2RZkWZLOdd+8xfHG4RbHjC9UJESBB06GXgw"
	hashPassword = "sha256$salt$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322"
)

func client(clientid, username, password string) *gateway.ClientInfo {
	return &gateway.ClientInfo{Gateway: testKind, ClientID: clientid, Username: username, Password: []byte(password)}
}

func TestBuiltinAuthenticate(t *testing.T) {
	snippet := `
[gateway.authtest]
[[gateway.authtest.authentication]]
type = "built_in"
users = [
  { user_id = "dev1", password_hash = "` + hashPasswd + `" },
  { user_id = "admin", password_hash = "` + hashPassword + `", is_superuser = true },
]
[[gateway.authtest.authentication]]
type = "built_in"
user_id_type = "clientid"
users = [ { user_id = "meter-7", password_hash = "` + hashPassword + `" } ]
`
	chain := parseChain(t, snippet)
	byName, err := NewBuiltin(chain[0].Spec.(*BuiltinSpec))
	if err != nil {
		t.Fatal(err)
	}
	byClient, err := NewBuiltin(chain[1].Spec.(*BuiltinSpec))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		a         *Builtin
		ci        *gateway.ClientInfo
		want      gateway.Decision
		superuser bool
	}{
		{"pbkdf2 right", byName, client("c1", "dev1", "passwd"), gateway.Allow, false},
		{"pbkdf2 wrong", byName, client("c1", "dev1", "password"), gateway.Deny, false},
		{"empty password", byName, client("c1", "dev1", ""), gateway.Deny, false},
		{"sha256 right superuser", byName, client("c2", "admin", "password"), gateway.Allow, true},
		{"sha256 wrong", byName, client("c2", "admin", "passwd"), gateway.Deny, false},
		{"unknown user", byName, client("c3", "nobody", "passwd"), gateway.Ignore, false},
		{"no username", byName, client("dev1", "", "passwd"), gateway.Ignore, false},
		{"user ids are case sensitive", byName, client("c1", "DEV1", "passwd"), gateway.Ignore, false},
		{"clientid right", byClient, client("meter-7", "whoever", "password"), gateway.Allow, false},
		{"clientid wrong", byClient, client("meter-7", "whoever", "passwd"), gateway.Deny, false},
		{"clientid ignores username", byClient, client("meter-8", "meter-7", "password"), gateway.Ignore, false},
	} {
		r := c.a.Authenticate(context.Background(), c.ci)
		if r.Decision != c.want || r.IsSuperuser != c.superuser {
			t.Errorf("%s: got %v superuser=%v; want %v superuser=%v", c.name, r.Decision, r.IsSuperuser, c.want, c.superuser)
		}
		if r.Decision == gateway.Deny && r.Reason == "" {
			t.Errorf("%s: deny without a reason", c.name)
		}
	}
}

func TestBuiltinRuntimeUsers(t *testing.T) {
	b, err := NewBuiltin(&BuiltinSpec{UserIDType: "username", Users: []UserSpec{{UserID: "dev1", PasswordHash: hashPasswd}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := HashPassword("n3w", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Authenticate(ctx, client("c", "dev2", "n3w")).Decision; got != gateway.Ignore {
		t.Fatalf("dev2 before AddUser: %v", got)
	}
	if err := b.AddUser(UserSpec{UserID: "dev2", PasswordHash: config.Secret(h), IsSuperuser: true}); err != nil {
		t.Fatal(err)
	}
	if r := b.Authenticate(ctx, client("c", "dev2", "n3w")); r.Decision != gateway.Allow || !r.IsSuperuser {
		t.Fatalf("dev2 after AddUser: %+v", r)
	}
	if err := b.AddUser(UserSpec{UserID: "dev2", PasswordHash: config.Secret(h)}); !errors.Is(err, ErrUserExists) {
		t.Fatalf("AddUser twice: %v; want ErrUserExists", err)
	}
	if err := b.AddUser(UserSpec{UserID: "dev3", PasswordHash: "n3w"}); err == nil || !errors.Is(err, errHashFormat) || strings.Contains(err.Error(), "n3w") {
		t.Fatalf("AddUser with a plaintext hash: %v; want a format error without the secret", err)
	}
	if err := b.AddUser(UserSpec{PasswordHash: config.Secret(h)}); err == nil {
		t.Fatal("AddUser with an empty id succeeded")
	}
	want := []User{{UserID: "dev1"}, {UserID: "dev2", IsSuperuser: true}}
	if got := b.Users(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Users() = %+v; want %+v", got, want)
	}

	// Update the flag alone: the password stays.
	if err := b.UpdateUser(UserSpec{UserID: "dev2"}); err != nil {
		t.Fatal(err)
	}
	if r := b.Authenticate(ctx, client("c", "dev2", "n3w")); r.Decision != gateway.Allow || r.IsSuperuser {
		t.Fatalf("dev2 after UpdateUser(flag): %+v", r)
	}
	// Update the password.
	if err := b.UpdateUser(UserSpec{UserID: "dev2", PasswordHash: hashPassword}); err != nil {
		t.Fatal(err)
	}
	if got := b.Authenticate(ctx, client("c", "dev2", "n3w")).Decision; got != gateway.Deny {
		t.Fatalf("old password after UpdateUser: %v", got)
	}
	if got := b.Authenticate(ctx, client("c", "dev2", "password")).Decision; got != gateway.Allow {
		t.Fatalf("new password after UpdateUser: %v", got)
	}
	if err := b.UpdateUser(UserSpec{UserID: "ghost"}); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("UpdateUser(ghost): %v", err)
	}

	if err := b.DeleteUser("dev2"); err != nil {
		t.Fatal(err)
	}
	if got := b.Authenticate(ctx, client("c", "dev2", "password")).Decision; got != gateway.Ignore {
		t.Fatalf("dev2 after DeleteUser: %v", got)
	}
	if err := b.DeleteUser("dev2"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("DeleteUser twice: %v", err)
	}
	if got := b.Users(); !reflect.DeepEqual(got, []User{{UserID: "dev1"}}) {
		t.Fatalf("Users() after delete = %+v", got)
	}
}

// TestBuiltinConcurrent runs logins against user changes; -race checks it.
func TestBuiltinConcurrent(t *testing.T) {
	b, err := NewBuiltin(&BuiltinSpec{UserIDType: "username", Users: []UserSpec{{UserID: "stable", PasswordHash: hashPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if got := b.Authenticate(context.Background(), client("c", "stable", "password")).Decision; got != gateway.Allow {
					errs <- fmt.Sprintf("stable user got %v", got)
					return
				}
				b.Authenticate(context.Background(), client("c", fmt.Sprint("u", i%10), "password"))
				_ = b.Users()
			}
		}()
	}
	for i := 0; i < 200; i++ {
		id := fmt.Sprint("u", i%10)
		if err := b.AddUser(UserSpec{UserID: id, PasswordHash: hashPassword}); err != nil {
			_ = b.DeleteUser(id)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestBuiltinConfigErrors(t *testing.T) {
	head := "[gateway.authtest]\n[[gateway.authtest.authentication]]\ntype = \"built_in\"\n"
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"user_id_type", `user_id_type = "email"`,
			[]string{`test.toml:4: gateway.authtest.authentication[0].user_id_type: must be "username" or "clientid", got "email"`}},
		{"plaintext in password_hash", `users = [ { user_id = "dev1", password_hash = "hunter2" } ]`,
			[]string{`test.toml:4: gateway.authtest.authentication[0].users[0].password_hash: user "dev1": malformed password hash: want pbkdf2-sha256$<iterations>$<salt>$<key> or sha256$<salt>$<hex>`}},
		{"bad hash names the user and index", "users = [\n { user_id = \"a\", password_hash = \"" + hashPassword + "\" },\n { user_id = \"b\", password_hash = \"" + hashPassword + "\" },\n { user_id = \"dev3\", password_hash = \"pbkdf2-sha256$1000$c2FsdA$c2hvcnQ\" },\n]",
			[]string{`test.toml:4: gateway.authtest.authentication[0].users[2].password_hash: user "dev3": malformed password hash: pbkdf2-sha256 key is 5 bytes, want 16..64`}},
		{"duplicate", "users = [\n { user_id = \"dev1\", password_hash = \"" + hashPassword + "\" },\n { user_id = \"dev1\", password_hash = \"" + hashPasswd + "\" },\n]",
			[]string{`test.toml:4: gateway.authtest.authentication[0].users[1].user_id: duplicate user "dev1" (also users[0])`}},
		{"empty id", `users = [ { password_hash = "` + hashPassword + `" } ]`,
			[]string{`test.toml:4: gateway.authtest.authentication[0].users[0].user_id: must not be empty`}},
		{"unknown key", `users = [ { user_id = "dev1", password = "x", password_hash = "` + hashPassword + `" } ]`,
			[]string{`gateway.authtest.authentication[0].users[0].password: unknown key`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(head+c.body+"\n"), "test.toml")
			if err == nil {
				t.Fatal("config.Parse succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats the secret: %v", err)
			}
		})
	}
}
