package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgeway/edgeway/agent/api"
	"github.com/edgeway/edgeway/agent/config"
)

const ctlUsage = `usage: edgeway ctl [--api URL] [--token TOKEN] [-c CONFIG] [--json] COMMAND

  gateway list                          loaded and available gateways
  gateway lookup NAME                   one gateway's config and state
  gateway load NAME FILE|JSON           load or update a gateway from its section (TOML or JSON)
  gateway unload NAME                   unload it and remove its section
  gateway start NAME | stop NAME        enable or disable it (kept in the config)
  gateway-registry list                 the gateway kinds this agent has
  gateway-clients list NAME             connected clients
  gateway-clients lookup NAME CLIENTID  one client with its counters
  gateway-clients kick NAME CLIENTID    disconnect a client
  gateway-metrics NAME                  the gateway's counters
  uplink status                         the cloud connection and its queue
  config get                            the running config, secrets masked
  config push FILE                      apply a config file (validated, live, written, kept in history)
  config check FILE                     check a config file locally

  --api    the agent's API (default: http://<[api] listen of CONFIG>, else http://127.0.0.1:8080)
  --token  API token (default: read from <data_dir>/api.token of CONFIG)
  -c       config file to find those in (default /etc/edgeway/edgeway.toml)
  --json   print the API's JSON instead of tables
`

type ctl struct {
	api, token string
	json       bool
	out, err   io.Writer
	http       *http.Client
}

// cmdCtl is `edgeway ctl …`: EMQX's ctl verbs, against the local HTTP API.
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	var (
		apiURL, token string
		cfgPath       = "/etc/edgeway/edgeway.toml"
		cfgGiven      bool
		jsonOut       bool
		pos           []string
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		need := func() (string, bool) {
			if hasVal {
				return val, true
			}
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			fmt.Fprintf(stderr, "edgeway ctl: %s needs a value\n", a)
			return "", false
		}
		var ok bool
		switch name {
		case "api":
			apiURL, ok = need()
		case "token":
			token, ok = need()
		case "c", "config":
			cfgPath, ok = need()
			cfgGiven = true
		case "json":
			jsonOut, ok = true, true
		case "h", "help":
			fmt.Fprint(stdout, ctlUsage)
			return 0
		default:
			fmt.Fprintf(stderr, "edgeway ctl: unknown flag %s\n\n%s", a, ctlUsage)
			return 2
		}
		if !ok {
			return 2
		}
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	// config check is local: no agent needed.
	if len(pos) == 3 && pos[0] == "config" && pos[1] == "check" {
		if _, err := config.Load(pos[2]); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", pos[2])
		return 0
	}
	c := &ctl{api: apiURL, token: token, json: jsonOut, out: stdout, err: stderr, http: &http.Client{Timeout: 60 * time.Second}}
	if err := c.defaults(cfgPath, cfgGiven); err != nil {
		fmt.Fprintln(stderr, "edgeway ctl:", err)
		return 1
	}
	err := c.run(pos)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "edgeway ctl: %s\n\n%s", ue, ctlUsage)
		return 2
	default:
		fmt.Fprintln(stderr, "edgeway ctl:", err)
		return 1
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

// defaults fills the API address and the token from the config file: only
// [agent] data_dir and [api] listen are read, leniently, so ctl works even
// while the file has an error the agent would refuse.
func (c *ctl) defaults(path string, explicit bool) error {
	var f struct {
		Agent struct {
			DataDir string `toml:"data_dir"`
		} `toml:"agent"`
		API struct {
			Listen string `toml:"listen"`
		} `toml:"api"`
	}
	if _, err := toml.DecodeFile(path, &f); err != nil && explicit {
		return fmt.Errorf("config %s: %w", path, err)
	}
	dflt := config.Default()
	if f.Agent.DataDir == "" {
		f.Agent.DataDir = dflt.Agent.DataDir
	}
	if f.API.Listen == "" {
		f.API.Listen = dflt.API.Listen
	}
	if c.api == "" {
		c.api = "http://" + dialable(f.API.Listen)
	}
	c.api = strings.TrimSuffix(c.api, "/")
	if c.token == "" {
		tf := filepath.Join(f.Agent.DataDir, api.TokenFile)
		b, err := os.ReadFile(tf)
		if err != nil {
			return fmt.Errorf("no API token: pass --token, or run as a user who can read %s (%v)", tf, err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return nil
}

// dialable turns a listen address into one to connect to.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

func (c *ctl) run(a []string) error {
	verb := strings.Join(a[:min(2, len(a))], " ")
	argc := func(n int, form string) error {
		if len(a) != n {
			return usageError("usage: edgeway ctl " + form)
		}
		return nil
	}
	esc := url.PathEscape
	switch {
	case verb == "gateway list":
		return c.gatewayList(false)
	case verb == "gateway-registry list":
		return c.gatewayList(true)
	case verb == "gateway lookup":
		if err := argc(3, "gateway lookup NAME"); err != nil {
			return err
		}
		return c.gatewayLookup(a[2])
	case verb == "gateway load":
		if err := argc(4, "gateway load NAME FILE|JSON"); err != nil {
			return err
		}
		return c.gatewayLoad(a[2], a[3])
	case verb == "gateway unload":
		if err := argc(3, "gateway unload NAME"); err != nil {
			return err
		}
		return c.done(c.call("DELETE", "/gateways/"+esc(a[2]), "", nil))
	case verb == "gateway start" || verb == "gateway stop":
		if err := argc(3, "gateway start|stop NAME"); err != nil {
			return err
		}
		on := "true"
		if a[1] == "stop" {
			on = "false"
		}
		return c.done(c.call("PUT", "/gateways/"+esc(a[2])+"/enable/"+on, "", nil))
	case verb == "gateway-clients list":
		if err := argc(3, "gateway-clients list NAME"); err != nil {
			return err
		}
		return c.clientsList(a[2])
	case verb == "gateway-clients lookup":
		if err := argc(4, "gateway-clients lookup NAME CLIENTID"); err != nil {
			return err
		}
		return c.show("/gateways/" + esc(a[2]) + "/clients/" + esc(a[3]))
	case verb == "gateway-clients kick":
		if err := argc(4, "gateway-clients kick NAME CLIENTID"); err != nil {
			return err
		}
		return c.done(c.call("DELETE", "/gateways/"+esc(a[2])+"/clients/"+esc(a[3]), "", nil))
	case a[0] == "gateway-metrics":
		if err := argc(2, "gateway-metrics NAME"); err != nil {
			return err
		}
		return c.metrics(a[1])
	case verb == "uplink status":
		return c.show("/uplink")
	case verb == "config get":
		b, err := c.call("GET", "/config", "", nil)
		if err != nil {
			return err
		}
		_, err = c.out.Write(b)
		return err
	case verb == "config push":
		if err := argc(3, "config push FILE"); err != nil {
			return err
		}
		return c.configPush(a[2])
	}
	return usageError("unknown command " + strings.Join(a, " "))
}

// apiError is an error answer of the API.
type apiError struct {
	status  int
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Errors  []api.ConfigError `json:"errors"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, HTTP %d)", e.Message, e.Code, e.status)
	for _, ce := range e.Errors {
		b.WriteString("\n  ")
		if ce.File != "" {
			b.WriteString(ce.File)
			if ce.Line > 0 {
				fmt.Fprintf(&b, ":%d", ce.Line)
			}
			b.WriteString(": ")
		}
		if ce.Key != "" {
			b.WriteString(ce.Key + ": ")
		}
		b.WriteString(ce.Msg)
	}
	return b.String()
}

// call does one request; body is sent with ctype when not nil.
func (c *ctl) call(method, path, ctype string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.api+api.Prefix+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent at %s: %w", c.api, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{status: resp.StatusCode}
		if json.Unmarshal(out, e) != nil || e.Code == "" {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(out))
		}
		return nil, e
	}
	return out, nil
}

func (c *ctl) done(_ []byte, err error) error {
	if err != nil {
		return err
	}
	if c.json {
		fmt.Fprintln(c.out, `{"result":"ok"}`)
		return nil
	}
	fmt.Fprintln(c.out, "ok")
	return nil
}

func (c *ctl) get(path string, v any) ([]byte, error) {
	b, err := c.call("GET", path, "", nil)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("bad answer from %s: %w", path, err)
		}
	}
	return b, nil
}

func (c *ctl) raw(b []byte) error {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		_, err := c.out.Write(b)
		return err
	}
	buf.WriteByte('\n')
	_, err := c.out.Write(buf.Bytes())
	return err
}

func (c *ctl) table() *tabwriter.Writer { return tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0) }

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case float64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (c *ctl) gatewayList(registry bool) error {
	var gws []map[string]any
	b, err := c.get("/gateways", &gws)
	if err != nil || c.json {
		if err == nil {
			err = c.raw(b)
		}
		return err
	}
	tw := c.table()
	if registry {
		fmt.Fprintln(tw, "NAME\tTRANSPORTS\tSTATUS\tDESCRIPTION")
		for _, g := range gws {
			var ts []string
			for _, t := range anySlice(g["transports"]) {
				ts = append(ts, str(t))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", str(g["name"]), strings.Join(ts, ","), str(g["status"]), str(g["description"]))
		}
		return tw.Flush()
	}
	fmt.Fprintln(tw, "NAME\tSTATUS\tCLIENTS\tMAX\tLISTENERS\tSTARTED")
	for _, g := range gws {
		if g["status"] == "unloaded" {
			fmt.Fprintf(tw, "%s\tunloaded\t-\t-\t-\t-\n", str(g["name"]))
			continue
		}
		var ls []string
		for _, l := range anySlice(g["listeners"]) {
			lm, _ := l.(map[string]any)
			state := "down"
			if lm["running"] == true {
				state = "up"
			}
			ls = append(ls, str(lm["id"])+"("+state+")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", str(g["name"]), str(g["status"]), str(g["current_connections"]), str(g["max_connections"]), strings.Join(ls, " "), str(g["started_at"]))
	}
	return tw.Flush()
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

// show prints an object as "key  value" lines (lists and tables as JSON).
func (c *ctl) show(path string) error {
	var m map[string]any
	b, err := c.get(path, &m)
	if err != nil || c.json {
		if err == nil {
			err = c.raw(b)
		}
		return err
	}
	return c.kv(m, "")
}

func (c *ctl) kv(m map[string]any, skip string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != skip {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	tw := c.table()
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", k, str(m[k]))
	}
	return tw.Flush()
}

func (c *ctl) gatewayLookup(name string) error {
	var m map[string]any
	b, err := c.get("/gateways/"+url.PathEscape(name), &m)
	if err != nil || c.json {
		if err == nil {
			err = c.raw(b)
		}
		return err
	}
	if err := c.kv(m, "listeners"); err != nil {
		return err
	}
	ls := anySlice(m["listeners"])
	if len(ls) == 0 {
		return nil
	}
	fmt.Fprintln(c.out)
	tw := c.table()
	fmt.Fprintln(tw, "LISTENER\tBIND\tADDRESS\tRUNNING\tCLIENTS\tMAX")
	for _, l := range ls {
		lm, _ := l.(map[string]any)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", str(lm["id"]), str(lm["bind"]), str(lm["address"]), str(lm["running"]), str(lm["current_connections"]), str(lm["max_connections"]))
	}
	return tw.Flush()
}

// gatewayLoad takes a file (TOML, or JSON by its .json name) or, as EMQX's
// ctl does, the JSON itself.
func (c *ctl) gatewayLoad(name, src string) error {
	var body []byte
	ctype := "application/toml"
	if strings.HasPrefix(strings.TrimSpace(src), "{") {
		body, ctype = []byte(src), "application/json"
	} else {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		body = b
		if strings.EqualFold(filepath.Ext(src), ".json") {
			ctype = "application/json"
		}
	}
	return c.done(c.call("PUT", "/gateways/"+url.PathEscape(name), ctype, body))
}

func (c *ctl) clientsList(name string) error {
	var all []map[string]any
	for page := 1; ; page++ {
		var p struct {
			Data []map[string]any `json:"data"`
			Meta api.Meta         `json:"meta"`
		}
		if _, err := c.get(fmt.Sprintf("/gateways/%s/clients?limit=1000&page=%d", url.PathEscape(name), page), &p); err != nil {
			return err
		}
		all = append(all, p.Data...)
		if !p.Meta.HasNext || len(p.Data) == 0 {
			break
		}
	}
	if c.json {
		b, _ := json.Marshal(all)
		return c.raw(b)
	}
	tw := c.table()
	fmt.Fprintln(tw, "CLIENTID\tUSERNAME\tADDRESS\tLISTENER\tCONNECTED_AT")
	for _, cl := range all {
		addr := str(cl["ip_address"])
		if p, ok := cl["port"].(float64); ok && p > 0 {
			addr = net.JoinHostPort(addr, fmt.Sprint(p))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", str(cl["clientid"]), str(cl["username"]), addr, str(cl["listener_id"]), str(cl["connected_at"]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d client(s)\n", len(all))
	return nil
}

func (c *ctl) metrics(name string) error {
	var m struct {
		Name      string                        `json:"name"`
		Metrics   map[string]float64            `json:"metrics"`
		Listeners map[string]map[string]float64 `json:"listeners"`
	}
	b, err := c.get("/metrics/gateways/"+url.PathEscape(name), &m)
	if err != nil || c.json {
		if err == nil {
			err = c.raw(b)
		}
		return err
	}
	tw := c.table()
	fmt.Fprintln(tw, "METRIC\tVALUE")
	for _, k := range sortedKeys(m.Metrics) {
		fmt.Fprintf(tw, "%s\t%v\n", k, m.Metrics[k])
	}
	for _, id := range sortedKeys(m.Listeners) {
		for _, k := range sortedKeys(m.Listeners[id]) {
			fmt.Fprintf(tw, "%s %s\t%v\n", id, k, m.Listeners[id][k])
		}
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *ctl) configPush(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := c.call("PUT", "/config", "application/toml", b)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			// Errors of a pushed file name that file, as config check does.
			for i := range ae.Errors {
				if ae.Errors[i].File == "api" {
					ae.Errors[i].File = path
				}
			}
		}
		return err
	}
	if c.json {
		return c.raw(out)
	}
	var r struct {
		Applied []string `json:"applied"`
		Later   []string `json:"restart_required"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return err
	}
	if len(r.Applied)+len(r.Later) == 0 {
		fmt.Fprintln(c.out, "no changes")
		return nil
	}
	if len(r.Applied) > 0 {
		fmt.Fprintln(c.out, "applied:", strings.Join(r.Applied, ", "))
	}
	if len(r.Later) > 0 {
		fmt.Fprintln(c.out, "on next restart:", strings.Join(r.Later, ", "))
	}
	return nil
}
