package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/config"
)

// Authentication of a gateway, or of one of its listeners. EMQX has one
// authenticator per gateway; edgeway has a chain. GET answers the
// authenticator object when the chain has one (EMQX's shape), a list when
// it has several. POST and PUT take one authenticator object, or
// {"authentication": [...]} for a chain.
//
// Built-in users are managed on the first built_in authenticator of the
// chain. They are part of the config (users = [...] with password_hash),
// so adding one edits the config and applies it: the live chain is
// rebuilt with the user in it, and the file keeps it across restarts.

type authnLoc struct {
	gw    string
	path  []string // tree path of the authentication key
	set   bool
	chain []*config.Authn
	label string
}

func (s *Server) authnAt(r *http.Request) (authnLoc, error) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if id == "" {
		cfg, _, err := s.gatewayConfig(name)
		if err != nil {
			return authnLoc{}, err
		}
		return authnLoc{gw: name, path: []string{"gateway", name, "authentication"},
			set: cfg.Authentication.Set, chain: cfg.Authentication.Chain, label: "gateway " + name}, nil
	}
	l, _, err := s.listenerOf(name, id)
	if err != nil {
		return authnLoc{}, err
	}
	return authnLoc{gw: name, path: []string{"gateway", name, "listeners", l.Type, l.Name, "authentication"},
		set: l.Authentication.Set, chain: l.Authentication.Chain, label: "listener " + id}, nil
}

func (loc authnLoc) json() any {
	if len(loc.chain) == 1 {
		return authnTable(loc.chain[0])
	}
	out := []any{}
	for _, a := range loc.chain {
		out = append(out, authnTable(a))
	}
	return out
}

func (s *Server) getAuthn(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if !loc.set || len(loc.chain) == 0 {
		s.writeErr(w, notFound("%s has no authenticator", loc.label))
		return
	}
	writeJSON(w, http.StatusOK, loc.json())
}

// authnBody reads an authenticator (or {"authentication": chain}) as the
// array of tables the config stores; plain "password"s of built_in users
// are hashed on the way.
func authnBody(r *http.Request, iter int) ([]map[string]any, error) {
	body, err := readTable(r)
	if err != nil {
		return nil, err
	}
	var chain []map[string]any
	if v, ok := body["authentication"]; ok && len(body) == 1 {
		switch x := v.(type) {
		case map[string]any:
			chain = []map[string]any{x}
		case []map[string]any:
			chain = x
		default:
			return nil, badRequest("authentication: want an authenticator object or a list of them")
		}
	} else {
		chain = []map[string]any{body}
	}
	for i, a := range chain {
		if _, ok := a["type"].(string); !ok {
			return nil, badRequest("authentication[%d]: type is required", i)
		}
		us, ok := usersOf(a)
		if !ok {
			continue
		}
		for j, u := range us {
			pw, ok := u["password"]
			if !ok {
				continue
			}
			p, ok := pw.(string)
			if !ok || p == "" {
				return nil, badRequest("authentication[%d].users[%d].password: want a non-empty string", i, j)
			}
			h, err := auth.HashPassword(p, iter)
			if err != nil {
				return nil, err
			}
			delete(u, "password")
			u["password_hash"] = h
		}
		if len(us) > 0 {
			a["users"] = us
		}
	}
	return chain, nil
}

func usersOf(a map[string]any) ([]map[string]any, bool) {
	switch x := a["users"].(type) {
	case []map[string]any:
		return x, true
	case []any:
		if len(x) == 0 {
			return []map[string]any{}, true
		}
	}
	return nil, false
}

func (s *Server) postAuthn(w http.ResponseWriter, r *http.Request) { s.setAuthn(w, r, true) }
func (s *Server) putAuthn(w http.ResponseWriter, r *http.Request)  { s.setAuthn(w, r, false) }

func (s *Server) setAuthn(w http.ResponseWriter, r *http.Request, create bool) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	exists := loc.set && len(loc.chain) > 0
	switch {
	case create && exists:
		s.writeErr(w, errorf(http.StatusConflict, "ALREADY_EXISTS", "%s already has an authenticator; use PUT to replace it", loc.label))
		return
	case !create && !exists:
		s.writeErr(w, notFound("%s has no authenticator; use POST to add one", loc.label))
		return
	}
	chain, err := authnBody(r, s.opts.HashIterations)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	_, err = s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		if old, ok := lookup(tree, toAny(loc.path)); ok {
			restoreMaskedTree(chain, old)
		}
		setTable(tree, loc.path, chain)
		return []textEdit{replaceTable(loc.path, chain)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	loc, err = s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeJSON(w, status, loc.json())
}

func (s *Server) deleteAuthn(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if !loc.set {
		s.writeErr(w, notFound("%s has no authenticator", loc.label))
		return
	}
	_, err = s.edit(r.Context(), func(tree map[string]any) ([]textEdit, error) {
		setTable(tree, loc.path, nil)
		return []textEdit{replaceTable(loc.path, nil)}, nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Built-in users.

// builtin finds the first built_in authenticator at loc.
func builtin(loc authnLoc) (int, *auth.BuiltinSpec, error) {
	for i, a := range loc.chain {
		if a.Type != "built_in" {
			continue
		}
		if spec, ok := a.Spec.(*auth.BuiltinSpec); ok {
			return i, spec, nil
		}
	}
	return 0, nil, notFound("%s has no built_in authenticator", loc.label)
}

type userJSON struct {
	UserID      string `json:"user_id"`
	IsSuperuser bool   `json:"is_superuser"`
}

// Meta is EMQX's paging block.
type Meta struct {
	Page    int  `json:"page"`
	Limit   int  `json:"limit"`
	Count   int  `json:"count"`
	HasNext bool `json:"hasnext"`
}

func paging(r *http.Request, dflt int) (page, limit int, err error) {
	page, limit = 1, dflt
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, badRequest("page: want an integer from 1, got %q", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10000 {
			return 0, 0, badRequest("limit: want an integer from 1 to 10000, got %q", v)
		}
	}
	return page, limit, nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	_, spec, err := builtin(loc)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	page, limit, err := paging(r, 100)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	q := r.URL.Query()
	like := q.Get("like_user_id")
	var super *bool
	if v := q.Get("is_superuser"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeErr(w, badRequest("is_superuser: want true or false, got %q", v))
			return
		}
		super = &b
	}
	var all []userJSON
	for _, u := range spec.Users {
		if like != "" && !strings.Contains(u.UserID, like) {
			continue
		}
		if super != nil && u.IsSuperuser != *super {
			continue
		}
		all = append(all, userJSON{u.UserID, u.IsSuperuser})
	}
	data := []userJSON{}
	from := (page - 1) * limit
	if from < len(all) {
		data = all[from:min(from+limit, len(all))]
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": Meta{Page: page, Limit: limit, Count: len(all), HasNext: from+limit < len(all)}})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	_, spec, err := builtin(loc)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	uid := r.PathValue("uid")
	for _, u := range spec.Users {
		if u.UserID == uid {
			writeJSON(w, http.StatusOK, userJSON{u.UserID, u.IsSuperuser})
			return
		}
	}
	s.writeErr(w, notFound("no user %q", uid))
}

// editUsers runs fn on the users list of the built_in authenticator at
// loc, in the config tree, and applies the result.
func (s *Server) editUsers(ctx context.Context, loc authnLoc, fn func(users []map[string]any) ([]map[string]any, error)) error {
	idx, _, err := builtin(loc)
	if err != nil {
		return err
	}
	_, err = s.edit(ctx, func(tree map[string]any) ([]textEdit, error) {
		v, ok := lookup(tree, toAny(loc.path))
		if !ok {
			return nil, notFound("%s has no authenticator in the config", loc.label)
		}
		var a map[string]any
		switch x := v.(type) {
		case map[string]any:
			if idx == 0 {
				a = x
			}
		case []map[string]any:
			if idx < len(x) {
				a = x[idx]
			}
		}
		if a == nil {
			return nil, errorf(http.StatusConflict, "CONFLICT", "the config's authentication of %s does not match the running one", loc.label)
		}
		us, ok := usersOf(a)
		if !ok && a["users"] != nil {
			return nil, errorf(http.StatusConflict, "CONFLICT", "users of %s are not a list of tables in the config", loc.label)
		}
		us, err := fn(us)
		if err != nil {
			return nil, err
		}
		if len(us) == 0 {
			delete(a, "users")
		} else {
			a["users"] = us
		}
		return []textEdit{replaceTable(loc.path, v)}, nil
	})
	return err
}

func userBody(r *http.Request) (uid string, password *string, super *bool, err error) {
	body, err := readTable(r)
	if err != nil {
		return "", nil, nil, err
	}
	for k := range body {
		switch k {
		case "user_id", "password", "is_superuser":
		default:
			return "", nil, nil, badRequest("%s: unknown field (user_id, password, is_superuser)", k)
		}
	}
	if v, ok := body["user_id"]; ok {
		if uid, ok = v.(string); !ok || uid == "" {
			return "", nil, nil, badRequest("user_id: want a non-empty string")
		}
	}
	if v, ok := body["password"]; ok {
		p, ok := v.(string)
		if !ok || p == "" {
			return "", nil, nil, badRequest("password: want a non-empty string")
		}
		password = &p
	}
	if v, ok := body["is_superuser"]; ok {
		b, ok := v.(bool)
		if !ok {
			return "", nil, nil, badRequest("is_superuser: want true or false")
		}
		super = &b
	}
	return uid, password, super, nil
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	uid, pw, super, err := userBody(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if uid == "" {
		s.writeErr(w, badRequest("user_id: required"))
		return
	}
	if pw == nil {
		s.writeErr(w, badRequest("password: required"))
		return
	}
	hash, err := auth.HashPassword(*pw, s.opts.HashIterations)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	su := super != nil && *super
	err = s.editUsers(r.Context(), loc, func(us []map[string]any) ([]map[string]any, error) {
		for _, u := range us {
			if u["user_id"] == uid {
				return nil, errorf(http.StatusConflict, "ALREADY_EXISTS", "user %q already exists", uid)
			}
		}
		u := map[string]any{"user_id": uid, "password_hash": hash}
		if su {
			u["is_superuser"] = true
		}
		return append(us, u), nil
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, userJSON{uid, su})
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	uid := r.PathValue("uid")
	bodyUID, pw, super, err := userBody(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if bodyUID != "" && bodyUID != uid {
		s.writeErr(w, badRequest("user_id %q does not match the path's %q", bodyUID, uid))
		return
	}
	var hash string
	if pw != nil {
		if hash, err = auth.HashPassword(*pw, s.opts.HashIterations); err != nil {
			s.writeErr(w, err)
			return
		}
	}
	var out userJSON
	err = s.editUsers(r.Context(), loc, func(us []map[string]any) ([]map[string]any, error) {
		for _, u := range us {
			if u["user_id"] != uid {
				continue
			}
			if hash != "" {
				u["password_hash"] = hash
			}
			if super != nil {
				if *super {
					u["is_superuser"] = true
				} else {
					delete(u, "is_superuser")
				}
			}
			b, _ := u["is_superuser"].(bool)
			out = userJSON{uid, b}
			return us, nil
		}
		return nil, notFound("no user %q", uid)
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	loc, err := s.authnAt(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	uid := r.PathValue("uid")
	err = s.editUsers(r.Context(), loc, func(us []map[string]any) ([]map[string]any, error) {
		for i, u := range us {
			if u["user_id"] == uid {
				return append(us[:i:i], us[i+1:]...), nil
			}
		}
		return nil, notFound("no user %q", uid)
	})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
