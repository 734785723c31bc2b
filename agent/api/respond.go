package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgeway/edgeway/agent"
	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/config"
)

// apiError is an answer other than success.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "BAD_REQUEST", format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, "NOT_FOUND", format, args...)
}

// ConfigError is one entry of a BAD_CONFIG answer.
type ConfigError struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Key  string `json:"key,omitempty"`
	Msg  string `json:"msg"`
}

// BadConfig is the answer to a config that does not parse or validate
// (status 400, code BAD_CONFIG).
type BadConfig struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Errors  []ConfigError `json:"errors"`
}

// ApplyFailed is the answer when a valid config was written and put in
// force but part of it could not start (status 500, code APPLY_FAILED).
type ApplyFailed struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	agent.Report
}

// applyError wraps an error from agent.ApplyTOML that is not config.Errors.
type applyError struct {
	err    error
	report agent.Report
}

func (e *applyError) Error() string { return e.err.Error() }

func writeJSON(w http.ResponseWriter, status int, v any) { route.JSON(w, status, v) }

func jsonEncoder(w io.Writer) *json.Encoder {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	return e
}

// writeErr answers err with the right status and body.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	var ce config.Errors
	var mb *http.MaxBytesError
	var af *applyError
	switch {
	case errors.As(err, &ae):
		route.Error(w, ae.status, ae.code, ae.msg)
	case errors.As(err, &ce):
		b := BadConfig{Code: "BAD_CONFIG", Message: fmt.Sprintf("config not valid (%d problem%s), nothing changed", len(ce), plural(len(ce))), Errors: []ConfigError{}}
		for _, e := range ce {
			b.Errors = append(b.Errors, ConfigError{File: e.File, Line: e.Line, Key: e.Key, Msg: e.Msg})
		}
		writeJSON(w, http.StatusBadRequest, b)
	case errors.As(err, &mb):
		route.Error(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", fmt.Sprintf("request body over the %d byte limit (api.max_body_size)", mb.Limit))
	case errors.As(err, &af):
		writeJSON(w, http.StatusInternalServerError, ApplyFailed{Code: "APPLY_FAILED", Message: "config written and in force, but: " + af.err.Error(), Report: af.report})
	default:
		s.log.Error("api request failed", "error", err)
		route.Error(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// body formats.
const (
	formatJSON = "json"
	formatTOML = "toml"
)

func bodyFormat(r *http.Request, dflt string) (string, error) {
	switch mt := mediaType(r); mt {
	case "application/json", "text/json":
		return formatJSON, nil
	case "application/toml", "text/toml", "application/x-toml", "text/x-toml", "text/plain":
		return formatTOML, nil
	case "":
		if dflt != "" {
			return dflt, nil
		}
		return "", errorf(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "set Content-Type: application/json or application/toml")
	default:
		return "", errorf(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "Content-Type %q not accepted: use application/json or application/toml", mt)
	}
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, err
		}
		return nil, badRequest("reading body: %v", err)
	}
	return b, nil
}

// readTable reads a JSON object or a TOML document as a tree.
func readTable(r *http.Request) (map[string]any, error) {
	f, err := bodyFormat(r, "")
	if err != nil {
		return nil, err
	}
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	return parseTable(b, f)
}

func parseTable(b []byte, format string) (map[string]any, error) {
	if format == formatTOML {
		var m map[string]any
		if _, err := toml.Decode(string(b), &m); err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return nil, badRequest("TOML syntax, line %d: %s", pe.Position.Line, pe.Message)
			}
			return nil, badRequest("TOML: %v", err)
		}
		if m == nil {
			m = map[string]any{}
		}
		return m, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest("JSON: %v", err)
	}
	if dec.More() {
		return nil, badRequest("JSON: more than one value in the body")
	}
	m, ok := normalizeJSON(v).(map[string]any)
	if !ok {
		return nil, badRequest("JSON: the body must be an object")
	}
	return m, nil
}

// normalizeJSON makes decoded JSON look like decoded TOML: integers as
// int64, floats as float64, arrays of objects as []map[string]any, and
// no nulls (a null key is left out).
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = normalizeJSON(e)
		}
		return x
	case []any:
		allMaps := len(x) > 0
		for i, e := range x {
			x[i] = normalizeJSON(e)
			if _, ok := x[i].(map[string]any); !ok {
				allMaps = false
			}
		}
		if allMaps {
			out := make([]map[string]any, len(x))
			for i, e := range x {
				out[i] = e.(map[string]any)
			}
			return out
		}
		return x
	}
	return v
}

// runningText is the text of the config in force: the newest version in
// the agent's config history applied since it started (an API edit, a
// SIGHUP reload or a fleet push), else the file as read at New.
func (s *Server) runningText() ([]byte, error) {
	hist, err := s.a.History()
	if err == nil && len(hist) > 0 {
		newest := hist[len(hist)-1]
		stamp := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(newest), "edgeway-"), ".toml")
		if t, err := time.Parse("20060102T150405.000000000Z", stamp); err == nil && !t.Before(s.a.StartedAt().Add(-time.Second)) {
			if b, err := os.ReadFile(newest); err == nil {
				return b, nil
			}
		}
	}
	if s.baseText == nil {
		return nil, errorf(http.StatusConflict, "CONFIG_NOT_EDITABLE", "the agent was started without a config file, so the API cannot change its config")
	}
	return s.baseText, nil
}

// edit changes the running config: fn edits the tree (and may refuse with
// an *apiError) and returns the text edits to try; the result goes
// through agent.ApplyTOML. Errors of the new config do not refer to
// lines of a text the caller never saw, so lines are dropped.
func (s *Server) edit(ctx context.Context, fn func(tree map[string]any) ([]textEdit, error)) (agent.Report, error) {
	s.editMu.Lock()
	defer s.editMu.Unlock()
	text, err := s.runningText()
	if err != nil {
		return agent.Report{}, err
	}
	tree, err := decodeTree(text)
	if err != nil {
		return agent.Report{}, errorf(http.StatusInternalServerError, "INTERNAL_ERROR", "the running config does not parse: %v", err)
	}
	want := deepCopy(tree).(map[string]any)
	edits, err := fn(want)
	if err != nil {
		return agent.Report{}, err
	}
	next := applyEdits(text, want, edits...)
	r, err := s.apply(ctx, next)
	var ce config.Errors
	if errors.As(err, &ce) {
		for _, e := range ce {
			e.Line = 0
		}
	}
	return r, err
}

func (s *Server) apply(ctx context.Context, text []byte) (agent.Report, error) {
	r, err := s.a.ApplyTOML(ctx, text, "api", true)
	if err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			return r, ce
		}
		return r, &applyError{err: err, report: r}
	}
	return r, nil
}
