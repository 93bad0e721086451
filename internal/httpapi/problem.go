package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// Problem is an RFC 9457 problem detail, with the explanation in Chinese as
// well, since clerks and residents read these.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	TitleZH  string `json:"title_zh,omitempty"`
	Code     uint32 `json:"code,omitempty"`
	Reason   string `json:"reason"`
	Instance string `json:"instance,omitempty"`
	TxHash   string `json:"tx_hash,omitempty"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, reason, title, titleZH, detail string) *Problem {
	return &Problem{Type: "urn:imi:problem:" + reason, Title: title, TitleZH: titleZH, Status: status, Detail: detail, Reason: reason}
}

var (
	errNotFound = problem(http.StatusNotFound, "not_found", "not found", "未找到", "")
)

// handler is an http.Handler that returns an error; the error's public part
// goes to the caller, the rest only to the log.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) wrap(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var p *Problem
		if !errors.As(err, &p) {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			p = problem(http.StatusInternalServerError, "internal", "the node could not answer", "节点暂时无法处理请求", "try again; if it persists, tell the node's operator")
		}
		// A copy: shared problem values must not carry one request's path
		// into another's answer.
		q := *p
		q.Instance = r.URL.Path
		writeProblem(w, &q)
	})
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Language", "en, zh")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		slog.Debug("response write failed", "err", err)
	}
	return nil
}
