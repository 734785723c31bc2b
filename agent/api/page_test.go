package api

import (
	"fmt"
	"html"
	"strings"
	"testing"
)

// TestPageEscapesEveryValue puts a markup-breaking string into every
// value the status page shows and checks that each arrives escaped and
// none opens an element or closes an attribute.
func TestPageEscapesEveryValue(t *testing.T) {
	n := 0
	bad := func() string { n++; return fmt.Sprintf(`"'><i id=v%d>&`, n) }
	d := pageData{Admin: true, User: bad(), Status: statusJSON{Role: bad(),
		Agent: agentJSON{ID: bad(), Version: bad(), Uptime: bad(), BoardSerial: bad(), BoardModel: bad()}}}
	d.Status.Uplink = map[string]any{"state": bad(), "queue_messages": bad(), "oldest_age": bad(), "drain_rate": bad(), "last_error": bad()}
	d.Status.Events = []eventJSON{{Time: bad(), Name: bad(), Gateway: bad(), ClientID: bad(), Reason: bad()}}
	d.Status.Gateways = []map[string]any{{"name": bad(), "status": bad(), "current_connections": bad(), "max_connections": bad(),
		"listeners": []map[string]any{{"id": bad(), "running": true, "address": bad(), "current_connections": bad()}}}}
	d.Clients = []map[string]any{{"clientid": bad(), "gateway": bad(), "username": bad(), "ip_address": bad(), "connected_at": bad()}}

	var b strings.Builder
	pageTmpl.render(&b, d.values(assetURL))
	page := b.String()
	if strings.Contains(page, "<i id=") || strings.Contains(page, `"'`) {
		t.Fatalf("a value broke out of its text or attribute:\n%s", page)
	}
	for i := 1; i <= n; i++ {
		if want := html.EscapeString(fmt.Sprintf(`"'><i id=v%d>&`, i)); !strings.Contains(page, want) {
			t.Errorf("value %d (%s) is not on the page", i, want)
		}
	}
	for _, want := range []string{`data-admin="true"`, `class="kick"`, `class="toggle"`, `<th></th>`, `id="uplink-state"`, `class="badge running"`} {
		if !strings.Contains(page, want) {
			t.Errorf("admin page lacks %s", want)
		}
	}
	if strings.Contains(page, "{{") {
		t.Error("a placeholder was left unfilled")
	}

	d.Admin, d.Status.Uplink = false, nil
	b.Reset()
	pageTmpl.render(&b, d.values(assetURL))
	page = b.String()
	if strings.Contains(page, `class="kick"`) || strings.Contains(page, `class="toggle"`) || strings.Contains(page, `<th></th>`) ||
		!strings.Contains(page, `data-admin="false"`) || !strings.Contains(page, `id="uplink-none"`) {
		t.Errorf("viewer page without uplink:\n%s", page)
	}
}

func TestParsePage(t *testing.T) {
	for _, tc := range []struct{ src, err string }{
		{"a{{agent_id}}b{{role}}", ""},
		{"no placeholders", ""},
		{"a{{nope}}", "unknown placeholder {{nope}}"},
		{"a{{agent_id", "unclosed {{"},
	} {
		p, err := parsePage(tc.src)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.src, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.err)
		case err == nil:
			var b strings.Builder
			p.render(&b, map[string]string{"agent_id": "X", "role": "R"})
			if want := strings.NewReplacer("{{agent_id}}", "X", "{{role}}", "R").Replace(tc.src); b.String() != want {
				t.Errorf("%q rendered %q, want %q", tc.src, b.String(), want)
			}
		}
	}
}
