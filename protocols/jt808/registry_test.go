package jt808_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
)

// TestRegistrationsSurviveRestart: a terminal registered before the
// gateway stopped authenticates with its code after it starts again, and
// the code stays bound to its phone.
func TestRegistrationsSurviveRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "jt808", "registrations.json")
	cfg := conf("", "allow_anonymous = true\nregistrations_file = \""+file+"\"")
	var code13, code19 string
	t.Run("before", func(t *testing.T) {
		e := newEnv(t, cfg)
		var res byte
		if res, code13 = e.terminal(phone13).register(); res != 0 {
			t.Fatalf("register: %d", res)
		}
		tm := e.terminal(phone19)
		tm.v19 = true
		if res, code19 = tm.register(); res != 0 {
			t.Fatalf("register 2019: %d", res)
		}
		// Registering again hands out the same code and costs no write.
		st, _ := os.Stat(file)
		if res, again := e.terminal(phone13).register(); res != 0 || again != code13 {
			t.Fatalf("registering again: %d %q, want the code %q", res, again, code13)
		}
		if st2, _ := os.Stat(file); st == nil || !st2.ModTime().Equal(st.ModTime()) {
			t.Fatal("an unchanged registration rewrote the file")
		}
	}) // the gateway and its broker are closed here

	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("registrations file mode %v, want 0600 (it holds auth codes)", st.Mode().Perm())
	}
	var f struct {
		Version       int `json:"version"`
		Registrations map[string]struct {
			Code, Manufacturer string
			TerminalID         string `json:"terminal_id"`
		} `json:"registrations"`
	}
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		t.Fatalf("registrations file %s: %v", b, err)
	}
	if r := f.Registrations[phone13]; r.Code != code13 || r.Manufacturer != "examp" || r.TerminalID != "123456" {
		t.Fatalf("file holds %+v for %s", r, phone13)
	}
	if r := f.Registrations[phone19]; r.Code != code19 || r.Manufacturer != "MANUF000001" {
		t.Fatalf("file holds %+v for %s", r, phone19)
	}

	e := newEnv(t, cfg)
	if r := e.terminal("000999999999").auth(code13); r != 1 {
		t.Fatalf("another phone with the restored code: result %d, want 1", r)
	}
	if r := e.terminal(phone13).auth(code19); r != 1 {
		t.Fatalf("the 2019 terminal's code from the 2013 phone: result %d, want 1", r)
	}
	tm := e.terminal(phone13)
	if r := tm.auth(code13); r != 0 {
		t.Fatalf("auth with the code from before the restart: result %d", r)
	}
	c, ok := e.gw().Client(phone13)
	if !ok || c.Info().Fields["manufacturer"] != "examp" || c.Info().Fields["terminal_id"] != "123456" {
		t.Fatalf("restored client fields %v", c.Info().Fields)
	}
	tm19 := e.terminal(phone19)
	tm19.v19 = true
	if r := tm19.auth(code19); r != 0 {
		t.Fatalf("2019 auth after the restart: result %d", r)
	}
	if res, again := e.terminal(phone13).register(); res != 0 || again != code13 {
		t.Fatalf("registering after the restart: %d %q, want the code %q", res, again, code13)
	}
}

// TestRegistrationsDefaultInDataDir: without registrations_file the
// registrations live in the gateway's data directory, so a gateway flashed
// with the example config keeps its terminals across a restart.
func TestRegistrationsDefaultInDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := conf("", "allow_anonymous = true")
	var code string
	t.Run("before", func(t *testing.T) {
		e := newEnvDir(t, cfg, dir)
		var res byte
		if res, code = e.terminal(phone13).register(); res != 0 {
			t.Fatalf("register: %d", res)
		}
	})
	b, err := os.ReadFile(filepath.Join(dir, "gateways", "jt808", "registrations.json"))
	if err != nil || !strings.Contains(string(b), code) {
		t.Fatalf("registrations file: %q %v", b, err)
	}
	e := newEnvDir(t, cfg, dir)
	if r := e.terminal(phone13).auth(code); r != 0 {
		t.Fatalf("auth with the code from before the restart: result %d", r)
	}
	if r := e.terminal("000999999999").auth(code); r != 1 {
		t.Fatalf("another phone with that code: result %d, want 1", r)
	}
}

// TestRegistrationsFileCorrupt: a file that is not a registry is moved
// aside and the gateway starts empty rather than not at all.
func TestRegistrationsFileCorrupt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registrations.json")
	if err := os.WriteFile(file, []byte(`{"version":1,"registrations":`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, conf("", "allow_anonymous = true\nregistrations_file = \""+file+"\""))
	tm := e.terminal(phone13)
	tm.login()
	if b, err := os.ReadFile(file + ".corrupt"); err != nil || string(b) != `{"version":1,"registrations":` {
		t.Fatalf("corrupt file not kept aside: %q %v", b, err)
	}
	if b, err := os.ReadFile(file); err != nil || !json.Valid(b) {
		t.Fatalf("new registrations file %q %v", b, err)
	}
}

// TestRegistrationsFileReload: another registrations file is a restart of
// the gateway, which then knows the registrations of that file only.
func TestRegistrationsFileReload(t *testing.T) {
	dir := t.TempDir()
	cfgFor := func(name string) string {
		return conf("", "allow_anonymous = true\nregistrations_file = \""+filepath.Join(dir, name)+"\"")
	}
	e := newEnv(t, cfgFor("a.json"))
	_, code := e.terminal(phone13).register()
	c, err := config.Parse([]byte(cfgFor("b.json")), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Apply(context.Background(), c.Gateways); err != nil {
		t.Fatal(err)
	}
	if r := e.terminal(phone13).auth(code); r != 1 {
		t.Fatalf("auth against the new, empty file: result %d, want 1", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.json")); err == nil {
		t.Fatal("b.json written without a registration")
	}
}
