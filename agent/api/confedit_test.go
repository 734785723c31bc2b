package api

import (
	"strings"
	"testing"
)

const editBase = `# edgeway on the boiler-room box
[agent]
data_dir = "/var/lib/edgeway" # keep on the SD card

# devices on the shop floor
[gateway.line]
enable = true
mountpoint = "line/"

# the main port
[gateway.line.listeners.tcp.a]
bind = "0.0.0.0:7000"

[[gateway.line.authentication]]
type = "built_in"
[[gateway.line.authentication.users]]
user_id = "u1"
password_hash = "sha256$s$aa"

# uplink comes last
[uplink]
server = "mqtt://cloud:1883"
password = 'p@ss"word'
`

// TestTextEdits checks that an edit changes only its table or key and
// keeps the comments and order of everything else.
func TestTextEdits(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(tree map[string]any) textEdit
		want string // the text after the edit
	}{
		{
			name: "set key",
			edit: func(tree map[string]any) textEdit {
				g, _ := table(tree, []string{"gateway", "line"}, false)
				g["enable"] = false
				return setKey([]string{"gateway", "line"}, "enable", false)
			},
			want: strings.Replace(editBase, "enable = true", "enable = false", 1),
		},
		{
			name: "add key",
			edit: func(tree map[string]any) textEdit {
				g, _ := table(tree, []string{"gateway", "line"}, false)
				g["idle_timeout"] = "10s"
				return setKey([]string{"gateway", "line"}, "idle_timeout", "10s")
			},
			want: strings.Replace(editBase, "[gateway.line]\n", "[gateway.line]\nidle_timeout = \"10s\"\n", 1),
		},
		{
			name: "replace listener",
			edit: func(tree map[string]any) textEdit {
				v := map[string]any{"bind": "127.0.0.1:7001", "max_connections": int64(10)}
				setTable(tree, []string{"gateway", "line", "listeners", "tcp", "a"}, v)
				return replaceTable([]string{"gateway", "line", "listeners", "tcp", "a"}, v)
			},
			want: strings.Replace(editBase, "# the main port\n[gateway.line.listeners.tcp.a]\nbind = \"0.0.0.0:7000\"\n",
				"[gateway.line.listeners.tcp.a]\nbind = \"127.0.0.1:7001\"\nmax_connections = 10\n", 1),
		},
		{
			name: "add listener",
			edit: func(tree map[string]any) textEdit {
				v := map[string]any{"bind": "127.0.0.1:7002"}
				setTable(tree, []string{"gateway", "line", "listeners", "tcp", "b"}, v)
				return replaceTable([]string{"gateway", "line", "listeners", "tcp", "b"}, v)
			},
			want: strings.Replace(editBase, "bind = \"0.0.0.0:7000\"\n\n",
				"bind = \"0.0.0.0:7000\"\n\n[gateway.line.listeners.tcp.b]\nbind = \"127.0.0.1:7002\"\n\n", 1),
		},
		{
			name: "remove gateway",
			edit: func(tree map[string]any) textEdit {
				setTable(tree, []string{"gateway", "line"}, nil)
				return replaceTable([]string{"gateway", "line"}, nil)
			},
			want: "# edgeway on the boiler-room box\n[agent]\ndata_dir = \"/var/lib/edgeway\" # keep on the SD card\n\n" +
				"# uplink comes last\n[uplink]\nserver = \"mqtt://cloud:1883\"\npassword = 'p@ss\"word'\n",
		},
		{
			name: "replace array of tables",
			edit: func(tree map[string]any) textEdit {
				v := []map[string]any{{"type": "built_in", "users": []map[string]any{{"user_id": "u2", "password_hash": "sha256$s$bb"}}}}
				setTable(tree, []string{"gateway", "line", "authentication"}, v)
				return replaceTable([]string{"gateway", "line", "authentication"}, v)
			},
			want: strings.Replace(editBase, "type = \"built_in\"\n[[gateway.line.authentication.users]]\nuser_id = \"u1\"\npassword_hash = \"sha256$s$aa\"",
				"type = \"built_in\"\n\n[[gateway.line.authentication.users]]\npassword_hash = \"sha256$s$bb\"\nuser_id = \"u2\"", 1),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := decodeTree([]byte(editBase))
			if err != nil {
				t.Fatal(err)
			}
			e := tc.edit(tree)
			got := string(applyEdits([]byte(editBase), tree, e))
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// An edit the text form cannot express (dotted keys at the top) falls
// back to encoding the tree, and says so.
func TestTextEditFallback(t *testing.T) {
	src := "gateway.line.enable = true\n[agent]\ndata_dir = \"x\"\n"
	tree, _ := decodeTree([]byte(src))
	g, _ := table(tree, []string{"gateway", "line"}, false)
	g["enable"] = false
	got := applyEdits([]byte(src), tree, setKey([]string{"gateway", "line"}, "enable", false), replaceTable([]string{"gateway", "line"}, g))
	if !strings.HasPrefix(string(got), rewrittenNote) {
		t.Fatalf("no fallback:\n%s", got)
	}
	back, err := decodeTree(got)
	if err != nil || back["gateway"].(map[string]any)["line"].(map[string]any)["enable"] != false {
		t.Fatalf("fallback wrong: %v\n%s", err, got)
	}
}

func TestMaskAndRestore(t *testing.T) {
	secrets := map[string]bool{"sha256$s$aa": true, `p@ss"word`: true}
	m := string(maskText([]byte(editBase), secrets))
	if strings.Contains(m, "sha256$s$aa") || strings.Contains(m, "p@ss") {
		t.Fatalf("secret left:\n%s", m)
	}
	if !strings.Contains(m, "# keep on the SD card") || strings.Count(m, `"******"`) != 2 {
		t.Fatalf("masked text:\n%s", m)
	}
	old, _ := decodeTree([]byte(editBase))
	back := string(restoreMasked([]byte(m), old))
	bt, _ := decodeTree([]byte(back))
	if !strings.Contains(back, "# keep on the SD card") {
		t.Fatalf("restore rewrote the text:\n%s", back)
	}
	if up := bt["uplink"].(map[string]any); up["password"] != `p@ss"word` {
		t.Fatalf("restored %q", up["password"])
	}
	u := bt["gateway"].(map[string]any)["line"].(map[string]any)["authentication"].([]map[string]any)[0]["users"].([]map[string]any)[0]
	if u["password_hash"] != "sha256$s$aa" {
		t.Fatalf("restored hash %q", u["password_hash"])
	}
}
