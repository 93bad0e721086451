package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// Bodies of the consent layer are small; a submission carries a few
// presentations.
const (
	maxConsentBody    = 64 << 10
	maxSubmissionBody = 256 << 10
	maxLogPage        = 1000
)

// errNoDesk and errSignIn make a new problem each time: the handler wrapper
// sets the problem's instance, so a shared one would be written by
// concurrent requests.
func errNoDesk() *Problem {
	return problem(http.StatusNotImplemented, "no_desk", "this node does not run a service desk", "本节点未开通服务受理", "")
}

func errSignIn() *Problem {
	return problem(http.StatusUnauthorized, "sign_in", "sign in first: request a challenge, sign it with your wallet and send it to /v1/sessions", "请先登录：获取挑战，用钱包签名后提交到 /v1/sessions", "")
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, problem(http.StatusRequestEntityTooLarge, "too_large", "the request body is too large", "请求内容过大", "at most "+strconv.FormatInt(limit, 10)+" bytes")
		}
		return nil, problem(http.StatusBadRequest, "bad_body", "the request body could not be read", "无法读取请求内容", err.Error())
	}
	return b, nil
}

// decodeStrict decodes JSON refusing unknown fields: a body cannot smuggle
// an identity or role the caller did not prove.
func decodeStrict(b []byte, v any) error {
	// One value, no duplicate keys: the same check the credential layer uses.
	if err := jws.CheckJSON(b, 16); err != nil {
		return problem(http.StatusBadRequest, "bad_body", "the request body is not the documented JSON", "请求内容不是规定的JSON格式", err.Error())
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return problem(http.StatusBadRequest, "bad_body", "the request body is not the documented JSON", "请求内容不是规定的JSON格式", err.Error())
	}
	if d.More() {
		return problem(http.StatusBadRequest, "bad_body", "the request body has trailing data", "请求内容有多余数据", "")
	}
	return nil
}

// authority authenticates a signed authority request for the authority in
// the path: the signer must be that authority.
func (s *Server) signedBy(w http.ResponseWriter, r *http.Request, limit int64) (string, []byte, error) {
	body, err := readBody(w, r, limit)
	if err != nil {
		return "", nil, err
	}
	id, err := s.verifier.Verify(r, body)
	if err != nil {
		return "", nil, authProblem(err)
	}
	if want := r.PathValue("id"); want != "" && want != id {
		return "", nil, problem(http.StatusForbidden, "forbidden", "an authority may act only for itself", "机构只能以自身名义操作", "signed by "+id)
	}
	return id, body, nil
}

// authProblem words a refused request signature.
func authProblem(err error) error {
	status, reason := http.StatusUnauthorized, "unauthenticated"
	switch {
	case errors.Is(err, authn.ErrReplay):
		status, reason = http.StatusConflict, "replay"
	case errors.Is(err, authn.ErrBusy):
		status, reason = http.StatusServiceUnavailable, "busy"
	}
	return problem(status, reason, "the request's signature was not accepted", "请求签名未通过验证", err.Error())
}

func (s *Server) authorityKey(id string) (key.Public, error) {
	a, _, err := s.app.Authority(id, 0)
	if err != nil {
		return key.Public{}, errors.New("no such authority")
	}
	return a.Key, nil
}

// subjectKey resolves a sign-in subject: a DID's current key, or the key a
// pseudonym names.
func (s *Server) subjectKey(subject string) (key.Public, error) {
	if pseudonym.Is(subject) {
		p, err := pseudonym.Parse(subject)
		return p.Key(), err
	}
	if _, err := did.Parse(subject); err != nil {
		return key.Public{}, err
	}
	res, _, err := s.app.ResidentRecord(subject, 0)
	if err != nil {
		return key.Public{}, errors.New("this DID is not registered")
	}
	if res.Deactivated {
		return key.Public{}, errors.New("this DID has been deactivated")
	}
	return res.Key, nil
}

// principals returns who the session speaks for.
func (s *Server) principals(r *http.Request) ([]string, error) {
	tok := authn.BearerToken(r)
	if tok == "" {
		return nil, errSignIn()
	}
	p, err := s.sessions.Principals(tok)
	if err != nil {
		return nil, problem(http.StatusUnauthorized, "session_expired", "your session has ended; sign in again", "会话已结束，请重新登录", "")
	}
	return p, nil
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) error {
	list, h, err := s.app.Services(0)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"height": h, "services": list})
}

func (s *Server) serviceOne(w http.ResponseWriter, r *http.Request) error {
	sv, _, err := s.app.Service(r.PathValue("id"), 0)
	if errors.Is(err, ledger.ErrNotFound) {
		return errNotFound
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sv)
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) error {
	c, err := s.sessions.Challenge(s.app.ChainID())
	if err != nil {
		return problem(http.StatusServiceUnavailable, "busy", "the node is busy; try again shortly", "节点繁忙，请稍后再试", "")
	}
	return writeJSON(w, http.StatusOK, c)
}

// SignInRequest is POST /v1/sessions.
type SignInRequest struct {
	Challenge string        `json:"challenge"`
	Proofs    []authn.Proof `json:"proofs"`
}

// SessionResponse answers a sign-in.
type SessionResponse struct {
	Token      string   `json:"token"`
	Principals []string `json:"principals"`
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	b, err := readBody(w, r, maxConsentBody)
	if err != nil {
		return err
	}
	var req SignInRequest
	if err := decodeStrict(b, &req); err != nil {
		return err
	}
	tok, p, err := s.sessions.SignIn(req.Challenge, req.Proofs)
	if err != nil {
		return problem(http.StatusUnauthorized, "sign_in_failed", "sign-in failed: the challenge is used or expired, or a signature does not match", "登录失败：挑战已使用或过期，或签名不符", err.Error())
	}
	return writeJSON(w, http.StatusOK, SessionResponse{Token: tok, Principals: p})
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	s.sessions.End(authn.BearerToken(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) myConsents(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.principals(r)
	if err != nil {
		return err
	}
	out := []ledger.Consent{}
	for _, p := range ps {
		if !pseudonym.Is(p) {
			continue
		}
		cs, _, err := s.app.Consents(p, 0)
		if err != nil {
			return err
		}
		out = append(out, cs...)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"consents": out})
}

func (s *Server) myLog(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.principals(r)
	if err != nil {
		return err
	}
	out := []ledger.Access{}
	var h int64
	for _, p := range ps {
		if !pseudonym.Is(p) {
			continue
		}
		log, at, err := s.app.AccessLog(p, 0)
		if err != nil {
			return err
		}
		out, h = append(out, log...), at
	}
	slices.SortStableFunc(out, func(a, b ledger.Access) int { return int(a.At.Height - b.At.Height) })
	return writeJSON(w, http.StatusOK, map[string]any{"height": h, "records": out})
}

// AccessProofResponse is one access record with its Merkle proof.
type AccessProofResponse struct {
	Record *ledger.Access `json:"record"`
	Proof  *ledger.Proof  `json:"proof"`
}

func (s *Server) myLogProof(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.principals(r)
	if err != nil {
		return err
	}
	subject := r.PathValue("subject")
	if !slices.Contains(ps, subject) {
		return problem(http.StatusForbidden, "forbidden", "you can read only your own log", "您只能查看本人的记录", "")
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("record"))
	if err != nil {
		return problem(http.StatusBadRequest, "bad_id", "the record id is base64url", "记录编号格式错误", "")
	}
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	p, err := s.app.ProveAccess(subject, id, h)
	if err != nil {
		return s.stateErr(err)
	}
	rec, err := ledger.AccessFromProof(p)
	if err != nil {
		return errNotFound
	}
	return writeJSON(w, http.StatusOK, AccessProofResponse{Record: rec, Proof: p})
}

func (s *Server) myDelegations(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.principals(r)
	if err != nil {
		return err
	}
	ward, guardian := []ledger.Delegation{}, []ledger.Delegation{}
	for _, p := range ps {
		if !strings.HasPrefix(p, did.Prefix) {
			continue
		}
		a, _, err := s.app.Delegations(p, 0)
		if err != nil {
			return err
		}
		g, _, err := s.app.GuardianOf(p, 0)
		if err != nil {
			return err
		}
		ward, guardian = append(ward, a...), append(guardian, g...)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"as_ward": ward, "as_guardian": guardian})
}

// OpenApplicationRequest is POST /v1/authorities/{id}/applications.
type OpenApplicationRequest struct {
	Service string `json:"service"`
}

func (s *Server) openApplication(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	id, b, err := s.signedBy(w, r, maxConsentBody)
	if err != nil {
		return err
	}
	var req OpenApplicationRequest
	if err := decodeStrict(b, &req); err != nil {
		return err
	}
	a, err := s.cfg.Desk.Open(id, req.Service)
	if err != nil {
		return s.deskProblem(err)
	}
	return writeJSON(w, http.StatusCreated, a)
}

func (s *Server) receivedApplications(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	id, _, err := s.signedBy(w, r, 0)
	if err != nil {
		return err
	}
	list, err := s.cfg.Desk.Received(id)
	if err != nil {
		return s.deskProblem(err)
	}
	if list == nil {
		list = []service.Application{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"applications": list})
}

// application shows an open application's request: what the service asks
// and why. A submitted one shows only its status; its data is the
// authority's.
func (s *Server) application(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	a, err := s.cfg.Desk.Get(r.PathValue("app"))
	if err != nil {
		return s.deskProblem(err)
	}
	if a.Status != service.StatusOpen {
		return writeJSON(w, http.StatusOK, map[string]string{"id": a.ID, "status": a.Status})
	}
	sv, _, err := s.app.Service(a.Service, 0)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"application": a, "service": sv})
}

func (s *Server) submitApplication(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	b, err := readBody(w, r, maxSubmissionBody)
	if err != nil {
		return err
	}
	var sub service.Submission
	if err := decodeStrict(b, &sub); err != nil {
		return err
	}
	a, err := s.cfg.Desk.Submit(r.Context(), r.PathValue("app"), &sub)
	if err != nil {
		return s.deskProblem(err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"id": a.ID, "status": a.Status, "consent": a.Consent, "subject": a.Subject, "access_id": a.AccessID, "height": a.Height})
}

func (s *Server) declineApplication(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	if err := s.cfg.Desk.Decline(r.PathValue("app")); err != nil {
		return s.deskProblem(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ReadResponse carries a released package.
type ReadResponse struct {
	Package string `json:"package"`
}

func (s *Server) backOfficeRead(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	body, err := readBody(w, r, maxConsentBody)
	if err != nil {
		return err
	}
	reader, err := s.verifier.Verify(r, body)
	if err != nil {
		return authProblem(err)
	}
	var req service.ReadRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	pkg, err := s.cfg.Desk.Read(r.Context(), reader, r.PathValue("id"), &req)
	if err != nil {
		return s.deskProblem(err)
	}
	return writeJSON(w, http.StatusOK, ReadResponse{Package: pkg})
}

func (s *Server) authorityAccess(w http.ResponseWriter, r *http.Request) error {
	id, _, err := s.signedBy(w, r, 0)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > maxLogPage {
		limit = maxLogPage
	}
	// A first page starts at a height; later ones after the cursor the
	// previous page returned.
	cursor := q.Get("after")
	if cursor == "" {
		cursor = fmt.Sprintf("%016x/", max(from, 0))
	}
	list, next, h, err := s.app.AuthorityAccessAfter(id, cursor, limit, 0)
	if err != nil {
		return err
	}
	if list == nil {
		list = []ledger.Access{}
	}
	out := map[string]any{"height": h, "records": list}
	if next != "" {
		out["next"] = next
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) putRecord(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Desk == nil {
		return errNoDesk()
	}
	id, b, err := s.signedBy(w, r, maxConsentBody)
	if err != nil {
		return err
	}
	var claims map[string]any
	if err := decodeStrict(b, &claims); err != nil {
		return err
	}
	if err := s.cfg.Desk.PutRecord(id, r.PathValue("did"), r.PathValue("type"), claims); err != nil {
		return s.deskProblem(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deskProblem turns a desk error into words for the caller.
func (s *Server) deskProblem(err error) error {
	var den *service.Denied
	var rej *service.Rejection
	switch {
	case errors.As(err, &den):
		en, zh := ledger.DenyReasonText(den.Reason)
		p := problem(http.StatusForbidden, den.Reason, "access denied: "+en, "访问被拒绝："+zh, "the attempt is recorded in the resident's access log")
		return p
	case errors.As(err, &rej):
		return problem(http.StatusUnprocessableEntity, "refused", rej.EN, rej.ZH, rej.Detail)
	case errors.Is(err, service.ErrNoApplication):
		return problem(http.StatusNotFound, "no_application", err.Error(), "没有该申请，或申请已过期", "")
	case errors.Is(err, service.ErrClosed):
		return problem(http.StatusConflict, "closed", err.Error(), "该申请已提交或已拒绝", "")
	case errors.Is(err, service.ErrNotHere):
		return problem(http.StatusMisdirectedRequest, "not_here", err.Error(), "本节点不代表该机构", "send it to that authority's node")
	case errors.Is(err, service.ErrNotAvailable):
		return problem(http.StatusNotFound, "no_record", err.Error(), "该机构没有此居民的这项记录", "nothing was released")
	case errors.Is(err, service.ErrLedgerBusy):
		return problem(http.StatusServiceUnavailable, "ledger_busy", err.Error(), "账本暂未确认访问记录，未释放任何数据，请重试", "")
	}
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return problem(http.StatusBadRequest, "bad_request", "the request was refused", "请求被拒绝", err.Error())
}

// CheckRequest is POST /v1/authorities/{id}/consent-check: may the signing
// authority read these claims of this pseudonym for this service now?
type CheckRequest struct {
	Subject string        `json:"subject"`
	Service string        `json:"service"`
	Claims  []tx.ClaimRef `json:"claims"`
	Channel string        `json:"channel"`
	Source  string        `json:"source"`
}

// consentCheck answers from the latest block without recording anything: it
// tells an authority whether a read would be allowed, which it may ask only
// about its own consents. The read itself is judged and recorded again.
func (s *Server) consentCheck(w http.ResponseWriter, r *http.Request) error {
	id, b, err := s.signedBy(w, r, maxConsentBody)
	if err != nil {
		return err
	}
	var req CheckRequest
	if err := decodeStrict(b, &req); err != nil {
		return err
	}
	if _, err := pseudonym.Parse(req.Subject); err != nil || len(req.Claims) == 0 {
		return problem(http.StatusBadRequest, "bad_body", "name a pseudonym, a service and at least one claim", "请提供化名、服务和至少一项信息", "")
	}
	rec := tx.AccessRecord{Subject: req.Subject, Reader: id, Source: req.Source, Service: req.Service,
		Claims: req.Claims, Channel: req.Channel, Outcome: tx.OutcomeAllowed}
	d, err := s.app.CheckAccess(&rec)
	if err != nil {
		return problem(http.StatusServiceUnavailable, "ledger_busy", "the node cannot judge consents yet", "节点暂时无法判断同意状态", err.Error())
	}
	out := map[string]any{"allowed": d.Allowed, "height": d.Height, "time": d.Time}
	if !d.Allowed {
		en, zh := ledger.DenyReasonText(d.Reason)
		out["reason"], out["message"], out["message_zh"] = d.Reason, en, zh
	}
	if d.Consent != nil && d.Consent.Authority == id {
		out["consent"] = d.Consent.ID
	}
	return writeJSON(w, http.StatusOK, out)
}
