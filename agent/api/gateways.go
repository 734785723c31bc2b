package api

import (
	"context"
	"encoding"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

// Gateway statuses beyond the framework's running and stopped.
const statusUnloaded = "unloaded"

// fields of GET answers that are state, not config: a GET body sent back
// with PUT must not fail on them.
var (
	gatewayStateKeys  = []string{"name", "status", "created_at", "started_at", "stopped_at", "current_connections", "max_connections", "node_status", "listeners_status", "description", "transports"}
	listenerStateKeys = []string{"id", "running", "current_connections", "address", "error", "node_status"}
)

func apiTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// gatewayOverview is one entry of GET /gateways.
func gatewayOverview(k gateway.Kind, g *gateway.Gateway) map[string]any {
	out := map[string]any{"name": k.Name, "status": statusUnloaded, "description": k.Description, "transports": k.Transports}
	if g == nil {
		return out
	}
	in := g.Info()
	out["status"] = in.Status
	out["created_at"] = apiTime(in.CreatedAt)
	out["started_at"] = apiTime(in.StartedAt)
	out["stopped_at"] = apiTime(in.StoppedAt)
	out["current_connections"] = in.CurrentConnections
	out["max_connections"] = limitJSON(in.MaxConnections)
	ls := []map[string]any{}
	for _, l := range in.Listeners {
		ls = append(ls, map[string]any{"id": l.ID, "type": l.Type, "name": l.Name, "running": l.Running,
			"current_connections": l.CurrentConnections, "max_connections": limitJSON(l.MaxConnections)})
	}
	out["listeners"] = ls
	return out
}

func limitJSON(n int64) any {
	if n < 0 {
		return "infinity"
	}
	return n
}

func (s *Server) listGateways(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("status")
	switch want {
	case "", "all", gateway.StatusRunning, gateway.StatusStopped, statusUnloaded:
	default:
		s.writeErr(w, badRequest("status: want running, stopped, unloaded or all, got %q", want))
		return
	}
	out := []map[string]any{}
	for _, k := range gateway.Kinds() {
		g, _ := s.a.Gateways().Get(k.Name)
		o := gatewayOverview(k, g)
		if want == "" || want == "all" || o["status"] == want {
			out = append(out, o)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// gatewayKind answers 404 for a name that is not a registered kind.
func gatewayKind(name string) (gateway.Kind, error) {
	k, ok := gateway.LookupKind(name)
	if !ok {
		var names []string
		for _, k := range gateway.Kinds() {
			names = append(names, k.Name)
		}
		return k, notFound("no gateway kind %q (available: %s)", name, strings.Join(names, ", "))
	}
	return k, nil
}

// loaded returns a loaded gateway or a 404.
func (s *Server) loaded(name string) (*gateway.Gateway, error) {
	if _, err := gatewayKind(name); err != nil {
		return nil, err
	}
	g, ok := s.a.Gateways().Get(name)
	if !ok {
		return nil, notFound("gateway %s is not loaded", name)
	}
	return g, nil
}

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	k, err := gatewayKind(name)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	g, _ := s.a.Gateways().Get(name)
	cfg := s.a.Config().Gateways[name]
	if g != nil {
		cfg = g.Config()
	}
	out := map[string]any{}
	if cfg != nil {
		out = gatewayTable(cfg)
		out["listeners"] = listenerList(cfg, g)
	}
	for k, v := range gatewayOverview(k, g) {
		if k != "listeners" {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// putGateway loads the gateway, or replaces its section.
func (s *Server) putGateway(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := gatewayKind(name); err != nil {
		s.writeErr(w, err)
		return
	}
	sec, err := readTable(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	// A whole [gateway.<name>] table is accepted as well as its contents.
	if g, ok := sec["gateway"].(map[string]any); ok && len(sec) == 1 && len(g) == 1 {
		if inner, ok := g[name].(map[string]any); ok {
			sec = inner
		}
	}
	if n, ok := sec["name"]; ok && n != name {
		s.writeErr(w, badRequest("name %v in the body does not match the path's %s", n, name))
		return
	}
	for _, k := range gatewayStateKeys {
		delete(sec, k)
	}
	if err := normalizeListeners(name, sec); err != nil {
		s.writeErr(w, err)
		return
	}
	path := []string{"gateway", name}
	_, err = s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		if old, ok := lookup(tree, []any{"gateway", name}); ok {
			restoreMaskedTree(sec, old)
		}
		setTable(tree, path, sec)
		return []textEdit{replaceTable(path, sec)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// normalizeListeners turns EMQX's list form of listeners ([{type, name,
// bind…}]) into the config's listeners.<type>.<name> tables.
func normalizeListeners(gw string, sec map[string]any) error {
	v, ok := sec["listeners"]
	if !ok {
		return nil
	}
	var list []map[string]any
	switch x := v.(type) {
	case map[string]any:
		for _, typ := range sortedMapKeys(x) {
			if names, ok := x[typ].(map[string]any); ok {
				for _, n := range sortedMapKeys(names) {
					if l, ok := names[n].(map[string]any); ok {
						for _, k := range listenerStateKeys {
							delete(l, k)
						}
					}
				}
			}
		}
		return nil
	case []map[string]any:
		list = x
	case []any:
		if len(x) != 0 {
			return badRequest("listeners: want a list of listener objects or a table of tables")
		}
	default:
		return badRequest("listeners: want a list of listener objects or a table of tables")
	}
	out := map[string]any{}
	for i, l := range list {
		typ, name, err := listenerIdentity(gw, l)
		if err != nil {
			return badRequest("listeners[%d]: %s", i, err.(*apiError).msg)
		}
		byName, _ := out[typ].(map[string]any)
		if byName == nil {
			byName = map[string]any{}
			out[typ] = byName
		}
		if _, dup := byName[name]; dup {
			return badRequest("listeners[%d]: duplicate listener %s:%s:%s", i, gw, typ, name)
		}
		byName[name] = l
	}
	sec["listeners"] = out
	return nil
}

// listenerIdentity takes type and name (or id) out of a listener object.
func listenerIdentity(gw string, l map[string]any) (typ, name string, err error) {
	typ, _ = l["type"].(string)
	name, _ = l["name"].(string)
	if id, ok := l["id"].(string); ok && (typ == "" || name == "") {
		g, t, n, err := parseListenerID(id)
		if err != nil {
			return "", "", err
		}
		if g != gw {
			return "", "", badRequest("listener id %q is not of gateway %s", id, gw)
		}
		typ, name = t, n
	}
	if typ == "" || name == "" {
		return "", "", badRequest("a listener needs type and name (or id)")
	}
	for _, k := range append([]string{"type", "name"}, listenerStateKeys...) {
		delete(l, k)
	}
	return typ, name, nil
}

func parseListenerID(id string) (gw, typ, name string, err error) {
	f := strings.Split(id, ":")
	if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
		return "", "", "", badRequest("bad listener id %q (want {gateway}:{type}:{name})", id)
	}
	return f[0], f[1], f[2], nil
}

func (s *Server) deleteGateway(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := gatewayKind(name); err != nil {
		s.writeErr(w, err)
		return
	}
	path := []string{"gateway", name}
	_, err := s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		if _, ok := lookup(tree, []any{"gateway", name}); !ok {
			return nil, notFound("gateway %s is not in the config", name)
		}
		setTable(tree, path, nil)
		return []textEdit{replaceTable(path, nil)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) enableGateway(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var on bool
	switch r.PathValue("enable") {
	case "true":
		on = true
	case "false":
	default:
		s.writeErr(w, badRequest("enable: want true or false, got %q", r.PathValue("enable")))
		return
	}
	if err := s.setGatewayEnable(r.Context(), name, on); err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) setGatewayEnable(ctx context.Context, name string, on bool) error {
	if _, err := gatewayKind(name); err != nil {
		return err
	}
	path := []string{"gateway", name}
	_, err := s.edit(ctx, func(tree map[string]any) ([]textEdit, error) {
		g, ok := table(tree, path, false)
		if !ok {
			return nil, notFound("gateway %s is not loaded", name)
		}
		g["enable"] = on
		return []textEdit{setKey(path, "enable", on), replaceTable(path, g)}, nil
	})
	return err
}

// Listeners.

func listenerList(cfg *config.Gateway, g *gateway.Gateway) []map[string]any {
	var infos map[string]gateway.ListenerInfo
	if g != nil {
		infos = map[string]gateway.ListenerInfo{}
		for _, li := range g.Info().Listeners {
			infos[li.ID] = li
		}
	}
	out := []map[string]any{}
	for _, l := range cfg.Listeners {
		out = append(out, listenerJSON(l, infos))
	}
	return out
}

func listenerJSON(l *config.Listener, infos map[string]gateway.ListenerInfo) map[string]any {
	m := listenerTable(l)
	m["id"], m["type"], m["name"] = l.ID(), l.Type, l.Name
	li, ok := infos[l.ID()]
	m["running"] = ok && li.Running
	m["current_connections"] = li.CurrentConnections
	if li.Address != "" {
		m["address"] = li.Address
	}
	if li.Error != "" {
		m["error"] = li.Error
	}
	return m
}

func (s *Server) gatewayConfig(name string) (*config.Gateway, *gateway.Gateway, error) {
	if _, err := gatewayKind(name); err != nil {
		return nil, nil, err
	}
	g, _ := s.a.Gateways().Get(name)
	if g != nil {
		return g.Config(), g, nil
	}
	if c := s.a.Config().Gateways[name]; c != nil {
		return c, nil, nil
	}
	return nil, nil, notFound("gateway %s is not loaded", name)
}

func (s *Server) listListeners(w http.ResponseWriter, r *http.Request) {
	cfg, g, err := s.gatewayConfig(r.PathValue("name"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, listenerList(cfg, g))
}

// listenerOf finds a listener of a gateway by id.
func (s *Server) listenerOf(name, id string) (*config.Listener, *gateway.Gateway, error) {
	cfg, g, err := s.gatewayConfig(name)
	if err != nil {
		return nil, nil, err
	}
	gw, _, _, err := parseListenerID(id)
	if err != nil {
		return nil, nil, err
	}
	if gw != name {
		return nil, nil, notFound("listener %s is not of gateway %s", id, name)
	}
	l, ok := cfg.Listener(id)
	if !ok {
		return nil, nil, notFound("no listener %s", id)
	}
	return l, g, nil
}

func (s *Server) writeListener(w http.ResponseWriter, status int, name, id string) {
	l, g, err := s.listenerOf(name, id)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	var infos map[string]gateway.ListenerInfo
	if g != nil {
		infos = map[string]gateway.ListenerInfo{}
		for _, li := range g.Info().Listeners {
			infos[li.ID] = li
		}
	}
	writeJSON(w, status, listenerJSON(l, infos))
}

func (s *Server) getListener(w http.ResponseWriter, r *http.Request) {
	s.writeListener(w, http.StatusOK, r.PathValue("name"), r.PathValue("id"))
}

func (s *Server) createListener(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := gatewayKind(name); err != nil {
		s.writeErr(w, err)
		return
	}
	body, err := readTable(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	typ, lname, err := listenerIdentity(name, body)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	path := []string{"gateway", name, "listeners", typ, lname}
	_, err = s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		if _, ok := lookup(tree, []any{"gateway", name}); !ok {
			return nil, notFound("gateway %s is not loaded", name)
		}
		if _, ok := lookup(tree, toAny(path)); ok {
			return nil, errorf(http.StatusConflict, "ALREADY_EXISTS", "listener %s:%s:%s already exists", name, typ, lname)
		}
		setTable(tree, path, body)
		return []textEdit{replaceTable(path, body)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeListener(w, http.StatusCreated, name, name+":"+typ+":"+lname)
}

func (s *Server) putListener(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if _, _, err := s.listenerOf(name, id); err != nil {
		s.writeErr(w, err)
		return
	}
	_, typ, lname, _ := parseListenerID(id)
	body, err := readTable(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if t, ok := body["type"]; ok && t != typ {
		s.writeErr(w, badRequest("type %v does not match the listener id %s", t, id))
		return
	}
	if n, ok := body["name"]; ok && n != lname {
		s.writeErr(w, badRequest("name %v does not match the listener id %s", n, id))
		return
	}
	if i, ok := body["id"]; ok && i != id {
		s.writeErr(w, badRequest("id %v does not match the path's %s", i, id))
		return
	}
	for _, k := range append([]string{"type", "name"}, listenerStateKeys...) {
		delete(body, k)
	}
	path := []string{"gateway", name, "listeners", typ, lname}
	_, err = s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		old, ok := lookup(tree, toAny(path))
		if !ok {
			return nil, notFound("no listener %s in the config", id)
		}
		restoreMaskedTree(body, old)
		setTable(tree, path, body)
		return []textEdit{replaceTable(path, body)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeListener(w, http.StatusOK, name, id)
}

func (s *Server) deleteListener(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if _, _, err := s.listenerOf(name, id); err != nil {
		s.writeErr(w, err)
		return
	}
	_, typ, lname, _ := parseListenerID(id)
	path := []string{"gateway", name, "listeners", typ, lname}
	_, err := s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		if _, ok := lookup(tree, toAny(path)); !ok {
			return nil, notFound("no listener %s in the config", id)
		}
		setTable(tree, path, nil)
		return []textEdit{replaceTable(path, nil)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// The effective config of a section, defaults filled in, as the TOML keys
// name it; secrets come out masked (config.Secret marshals as "******").

func gatewayTable(g *config.Gateway) map[string]any {
	m := map[string]any{}
	structTable(m, reflect.ValueOf(g).Elem())
	if g.Spec != nil {
		structTable(m, reflect.ValueOf(g.Spec))
	}
	return m
}

func listenerTable(l *config.Listener) map[string]any {
	m := map[string]any{}
	structTable(m, reflect.ValueOf(l).Elem())
	for _, spec := range []any{l.Spec, l.KindSpec} {
		if spec != nil {
			structTable(m, reflect.ValueOf(spec))
		}
	}
	return m
}

func authnTable(a *config.Authn) map[string]any {
	m := map[string]any{}
	structTable(m, reflect.ValueOf(a).Elem())
	if a.Spec != nil {
		structTable(m, reflect.ValueOf(a.Spec))
	}
	return m
}

var (
	textMarshaler = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
	authnsType    = reflect.TypeOf(config.Authns{})
	limitType     = reflect.TypeOf(config.Limit(0))
)

func structTable(m map[string]any, v reflect.Value) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct && !f.Type.Implements(textMarshaler) {
			structTable(m, v.Field(i))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if x := plainValue(v.Field(i), 0); x != nil {
			m[name] = x
		}
	}
}

func plainValue(v reflect.Value, depth int) any {
	if !v.IsValid() || depth > 32 {
		return nil
	}
	if v.Type() == authnsType {
		a := v.Interface().(config.Authns)
		if !a.Set {
			return nil
		}
		out := []any{}
		for _, an := range a.Chain {
			out = append(out, authnTable(an))
		}
		return out
	}
	if v.Type() == limitType {
		return limitJSON(v.Int())
	}
	if v.Type().Implements(textMarshaler) {
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return nil
		}
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil
		}
		return string(b)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plainValue(v.Elem(), depth+1)
	case reflect.Struct:
		m := map[string]any{}
		structTable(m, v)
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, 0, v.Len())
		for i := 0; i < v.Len(); i++ {
			out = append(out, plainValue(v.Index(i), depth+1))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		it := v.MapRange()
		for it.Next() {
			out[fmt.Sprint(it.Key().Interface())] = plainValue(it.Value(), depth+1)
		}
		return out
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	return nil
}
