package api

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// connectAs tries a CONNECT and returns the CONNACK line.
func connectAs(t *testing.T, addr, id, user, pass string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT " + id + " " + user + " " + pass + "\n")); err != nil {
		t.Fatal(err)
	}
	l, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(l)
}

type usersPage struct {
	Data []userJSON `json:"data"`
	Meta Meta       `json:"meta"`
}

func TestAuthenticationAndUsers(t *testing.T) {
	e := startEnv(t, strings.Replace(baseConfig, `security_profile = "legacy"`, `security_profile = "hardened"`, 1), Options{})
	addr := e.listenerAddr(t, "apitest", "apitest:tcp:a")
	if l := connectAs(t, addr, "d0", "u", "p"); !strings.HasPrefix(l, "CONNACK err") {
		t.Fatalf("hardened, no authenticator: %q", l)
	}
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/authentication", nil, nil)
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/authentication/users", nil, nil)
	e.must(t, http.StatusNotFound, "PUT", "/gateways/apitest/authentication", map[string]any{"type": "built_in"}, nil)

	// An authenticator with a user given a plain password: stored hashed.
	var an map[string]any
	e.must(t, http.StatusCreated, "POST", "/gateways/apitest/authentication",
		map[string]any{"type": "built_in", "users": []map[string]any{{"user_id": "alice", "password": "wonder"}}}, &an)
	if an["type"] != "built_in" {
		t.Fatalf("created: %v", an)
	}
	e.must(t, http.StatusConflict, "POST", "/gateways/apitest/authentication", map[string]any{"type": "built_in"}, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication", nil, &an)
	users := an["users"].([]any)
	if len(users) != 1 || users[0].(map[string]any)["password_hash"] != masked {
		t.Fatalf("secret not masked: %v", an)
	}
	if l := connectAs(t, addr, "d1", "alice", "wonder"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("alice: %q", l)
	}
	if strings.Contains(e.file(t), "wonder") || !strings.Contains(e.file(t), "pbkdf2-sha256$") {
		t.Fatalf("plain password in the file, or no hash:\n%s", e.file(t))
	}

	// Users CRUD, live and in the file.
	var u userJSON
	e.must(t, http.StatusCreated, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "bob", "password": "builder", "is_superuser": true}, &u)
	if u.UserID != "bob" || !u.IsSuperuser {
		t.Fatalf("added: %+v", u)
	}
	if l := connectAs(t, addr, "d2", "bob", "builder"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("bob: %q", l)
	}
	e.must(t, http.StatusConflict, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "bob", "password": "x"}, nil)
	var eb errBody
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "carol"}, &eb)
	if !strings.HasPrefix(eb.Message, "password") {
		t.Fatalf("no password: %+v", eb)
	}
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "carol", "password": "x", "role": "god"}, &eb)
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": 7, "password": "x"}, &eb)
	for i := 0; i < 3; i++ {
		e.must(t, http.StatusCreated, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "user" + string(rune('a'+i)), "password": "pw"}, nil)
	}
	var page usersPage
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication/users?limit=2&page=2", nil, &page)
	if page.Meta != (Meta{Page: 2, Limit: 2, Count: 5, HasNext: true}) || len(page.Data) != 2 || page.Data[0].UserID != "usera" {
		t.Fatalf("page: %+v", page)
	}
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication/users?like_user_id=user&is_superuser=false", nil, &page)
	if page.Meta.Count != 3 {
		t.Fatalf("filtered: %+v", page)
	}
	e.must(t, http.StatusBadRequest, "GET", "/gateways/apitest/authentication/users?limit=0", nil, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication/users/bob", nil, &u)
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/authentication/users/zed", nil, nil)

	e.must(t, http.StatusOK, "PUT", "/gateways/apitest/authentication/users/bob", map[string]any{"password": "rebuilt", "is_superuser": false}, &u)
	if u.IsSuperuser {
		t.Fatalf("updated: %+v", u)
	}
	if l := connectAs(t, addr, "d3", "bob", "builder"); !strings.HasPrefix(l, "CONNACK err") {
		t.Fatalf("old password still works: %q", l)
	}
	if l := connectAs(t, addr, "d4", "bob", "rebuilt"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("new password: %q", l)
	}
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apitest/authentication/users/bob", map[string]any{"user_id": "other"}, nil)
	e.must(t, http.StatusNotFound, "PUT", "/gateways/apitest/authentication/users/zed", map[string]any{"password": "x"}, nil)
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/authentication/users/usera", nil, nil)
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apitest/authentication/users/usera", nil, nil)

	// A viewer lists users but does not add them.
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication/users", nil, nil, req{user: "viewer", pass: viewerPass})
	e.must(t, http.StatusForbidden, "POST", "/gateways/apitest/authentication/users", map[string]any{"user_id": "v", "password": "v"}, nil, req{user: "viewer", pass: viewerPass})

	// A restart from the file keeps the users.
	f := e.file(t)
	if !strings.Contains(f, `user_id = "bob"`) || strings.Contains(f, `user_id = "usera"`) || !strings.Contains(f, "# the gateway the tests use") {
		t.Fatalf("file:\n%s", f)
	}
	e.stop()
	e.boot(t)
	addr = e.listenerAddr(t, "apitest", "apitest:tcp:a")
	if l := connectAs(t, addr, "d5", "bob", "rebuilt"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("bob after restart: %q", l)
	}

	// PUT replaces the authenticator; a masked hash sent back is kept.
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/authentication", nil, &an)
	an["user_id_type"] = "username"
	e.must(t, http.StatusOK, "PUT", "/gateways/apitest/authentication", an, nil)
	if l := connectAs(t, addr, "d6", "bob", "rebuilt"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("bob after a GET/PUT round trip: %q", l)
	}

	// Listener-level authenticator overrides the gateway's.
	lp := "/gateways/apitest/listeners/apitest:tcp:a/authentication"
	e.must(t, http.StatusNotFound, "GET", lp, nil, nil)
	e.must(t, http.StatusCreated, "POST", lp, map[string]any{"type": "built_in"}, nil)
	e.must(t, http.StatusCreated, "POST", lp+"/users", map[string]any{"user_id": "lis", "password": "only-here"}, nil)
	if l := connectAs(t, addr, "d7", "lis", "only-here"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("listener user: %q", l)
	}
	if l := connectAs(t, addr, "d8", "bob", "rebuilt"); !strings.HasPrefix(l, "CONNACK err") {
		t.Fatalf("gateway user on a listener with its own authenticator: %q", l)
	}
	e.must(t, http.StatusNoContent, "DELETE", lp, nil, nil)
	if l := connectAs(t, addr, "d9", "bob", "rebuilt"); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("gateway user after the listener's authenticator went: %q", l)
	}
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/authentication", nil, nil)
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apitest/authentication", nil, nil)
}
