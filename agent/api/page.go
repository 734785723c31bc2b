package api

import (
	"fmt"
	"html"
	"strconv"
	"strings"
)

// The status page is static/index.html with {{name}} placeholders and no
// logic; the repeated and conditional parts (uplink facts, events, table
// rows, admin controls) are written here. This replaced html/template,
// which with text/template and its parser added ~450KB to the binary
// (issue 11: arm64 size budget) for one page. Every value is written with
// esc, and every place a value goes is text or a double-quoted attribute:
// no script, style or URL context, so HTML escaping is all it needs.

// pageTemplate is index.html cut at its placeholders: text[i] comes
// before the value of names[i], and text has one more element.
type pageTemplate struct {
	text  []string
	names []string
}

// pageNames are the placeholders the renderer fills.
var pageNames = map[string]bool{
	"agent_id": true, "asset_css": true, "asset_js": true, "admin": true, "window": true,
	"version": true, "uptime": true, "board": true, "user": true, "role": true,
	"uplink": true, "events": true, "admin_th": true, "gateway_rows": true, "client_rows": true,
}

func parsePage(src string) (*pageTemplate, error) {
	t := &pageTemplate{}
	for {
		i := strings.Index(src, "{{")
		if i < 0 {
			t.text = append(t.text, src)
			return t, nil
		}
		j := strings.Index(src[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("status page: unclosed {{ at %q", trunc(src[i:]))
		}
		name := src[i+2 : i+j]
		if !pageNames[name] {
			return nil, fmt.Errorf("status page: unknown placeholder {{%s}}", name)
		}
		t.text = append(t.text, src[:i])
		t.names = append(t.names, name)
		src = src[i+j+2:]
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

func (t *pageTemplate) render(b *strings.Builder, vals map[string]string) {
	for i, name := range t.names {
		b.WriteString(t.text[i])
		b.WriteString(vals[name])
	}
	b.WriteString(t.text[len(t.text)-1])
}

// esc is the text of a JSON-shaped value, HTML-escaped: nil is empty.
func esc(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return html.EscapeString(v)
	case bool:
		return strconv.FormatBool(v)
	default:
		return html.EscapeString(fmt.Sprint(v))
	}
}

func (d *pageData) values(assetURL func(string) string) map[string]string {
	st := &d.Status
	board := esc(st.Agent.BoardSerial)
	if st.Agent.BoardModel != "" {
		board = esc(st.Agent.BoardModel) + " · " + board
	}
	v := map[string]string{
		"agent_id":     esc(st.Agent.ID),
		"asset_css":    esc(assetURL("app.css")),
		"asset_js":     esc(assetURL("app.js")),
		"admin":        strconv.FormatBool(d.Admin),
		"window":       strconv.FormatInt(st.Charts.Window, 10),
		"version":      esc(st.Agent.Version),
		"uptime":       esc(st.Agent.Uptime),
		"board":        board,
		"user":         esc(d.User),
		"role":         esc(st.Role),
		"uplink":       uplinkHTML(st.Uplink),
		"events":       eventsHTML(st.Events),
		"gateway_rows": gatewayRowsHTML(st.Gateways, d.Admin),
		"client_rows":  clientRowsHTML(d.Clients, d.Admin),
	}
	if d.Admin {
		v["admin_th"] = "<th></th>"
	}
	return v
}

// adminCell starts the admin column's cell on its own line, as the rows'
// other cells are.
const adminCell = "\n        <td>"

func uplinkHTML(u map[string]any) string {
	if u == nil {
		return `<p id="uplink-none">This agent has no uplink.</p>`
	}
	return fmt.Sprintf(`<dl class="facts" id="uplink">
    <div><dt>State</dt><dd id="uplink-state" class="state-%[1]s">%[1]s</dd></div>
    <div><dt>Queue</dt><dd id="uplink-queue">%s msgs</dd></div>
    <div><dt>Oldest</dt><dd id="uplink-oldest">%s</dd></div>
    <div><dt>Drain</dt><dd id="uplink-drain">%s/s</dd></div>
    <div class="wide"><dt>Last error</dt><dd id="uplink-error">%s</dd></div>
  </dl>`, esc(u["state"]), esc(u["queue_messages"]), esc(u["oldest_age"]), esc(u["drain_rate"]), esc(u["last_error"]))
}

func eventsHTML(events []eventJSON) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, `<li><time>%s</time> <b>%s</b> %s %s %s</li>`, esc(e.Time), esc(e.Name), esc(e.Gateway), esc(e.ClientID), esc(e.Reason))
	}
	return b.String()
}

func gatewayRowsHTML(gateways []map[string]any, admin bool) string {
	var b strings.Builder
	for _, g := range gateways {
		name := esc(g["name"])
		fmt.Fprintf(&b, `<tr data-gateway="%[1]s">
        <td>%[1]s</td>
        <td><span class="badge %[2]s">%[2]s</span></td>
        <td>%s / %s</td>
        <td><ul class="listeners">`, name, esc(g["status"]), esc(g["current_connections"]), esc(g["max_connections"]))
		ls, _ := g["listeners"].([]map[string]any)
		for _, l := range ls {
			state := "stopped"
			if running, _ := l["running"].(bool); running {
				state = "running"
			}
			fmt.Fprintf(&b, `<li><span class="badge %s">%s</span> %s · %s</li>`, state, esc(l["id"]), esc(l["address"]), esc(l["current_connections"]))
		}
		b.WriteString(`</ul></td>`)
		if admin {
			enable, label := "true", "Enable"
			if g["status"] == "running" {
				enable, label = "false", "Disable"
			}
			fmt.Fprintf(&b, adminCell+`<button class="toggle" data-gateway="%s" data-enable="%s">%s</button></td>`, name, enable, label)
		}
		b.WriteString("\n      </tr>\n    ")
	}
	return b.String()
}

func clientRowsHTML(clients []map[string]any, admin bool) string {
	var b strings.Builder
	for _, c := range clients {
		id, gw := esc(c["clientid"]), esc(c["gateway"])
		fmt.Fprintf(&b, `<tr data-clientid="%[1]s" data-gateway="%[2]s">
        <td>%[1]s</td><td>%[2]s</td><td class="opt">%[3]s</td>
        <td class="opt">%[4]s</td><td class="opt">%[5]s</td>`, id, gw, esc(c["username"]), esc(c["ip_address"]), esc(c["connected_at"]))
		if admin {
			fmt.Fprintf(&b, adminCell+`<button class="kick" data-gateway="%s" data-clientid="%s">Kick</button></td>`, gw, id)
		}
		b.WriteString("\n      </tr>\n    ")
	}
	return b.String()
}
