// Package httpapi is the node's HTTP API: JSON under /v1, RFC 9457 errors,
// an OpenAPI document, /healthz and Prometheus /metrics.
//
// Every write is a transaction the caller signed; the API never signs on
// anyone's behalf. A submission returns only once its block is committed, or
// with a refusal whose stable reason a client can branch on.
package httpapi

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// Chain is what the API needs from the consensus engine. Its contract:
// Submit puts a transaction through CheckTx into the mempool and returns the
// CheckTx answer, or ErrInCache / ErrMempoolFull / ErrTooLarge (wrapped);
// Status never blocks on consensus; Commit returns the signed header of a
// committed height with its validator set, JSON-encoded as CometBFT does.
type Chain interface {
	Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error)
	Status() ChainStatus
	Commit(height int64) (any, error)
}

// Errors a Chain returns for transactions the mempool would not take.
var (
	ErrInCache     = errors.New("transaction already in the mempool cache")
	ErrMempoolFull = errors.New("mempool is full")
	ErrTooLarge    = errors.New("transaction too large")
)

// ChainStatus is the consensus engine's view of the network.
type ChainStatus struct {
	NodeID        string      `json:"node_id"`
	LatestHeight  int64       `json:"latest_height"`
	LatestAppHash string      `json:"latest_app_hash"`
	LatestBlock   string      `json:"latest_block_hash"`
	LatestTime    time.Time   `json:"latest_block_time"`
	CatchingUp    bool        `json:"catching_up"`
	Peers         int         `json:"peers"`
	Validators    []Validator `json:"validators"`
}

// Validator is one member of the validator set.
type Validator struct {
	Address string `json:"address"`
	PubKey  string `json:"pub_key"`
	Power   int64  `json:"power"`
}

// Config configures a Server.
type Config struct {
	// CommitTimeout bounds how long a submission waits for its block before
	// answering 202 Accepted with the hash to poll.
	CommitTimeout time.Duration
	// StallAfter is how old the last block may be before /v1/status says the
	// network is degraded. Blocks are made at least every few seconds.
	StallAfter time.Duration
	// Gatherer serves /metrics; nil means the default registry.
	Gatherer prometheus.Gatherer
	// Now is the wall clock, injected for tests. The API uses it only to tell
	// an operator how old the last block is; the ledger never sees it.
	Now func() time.Time
	// IssuerKeys are the keys of the authorities whose status-list tokens
	// this node signs, by authority id: its own authority's, or in the demo
	// district every founding authority's.
	IssuerKeys map[string]key.Private
	// Desk is the service desk of the authorities this node acts for: nil
	// for a node that takes no applications and answers no back-office reads.
	Desk *service.Desk
}

// Server serves the API.
type Server struct {
	app   *ledger.App
	chain Chain
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	cred  credentialState

	verifier *authn.Verifier
	sessions *authn.Sessions
}

// New builds the API over app and chain.
func New(app *ledger.App, chain Chain, cfg Config, log *slog.Logger) *Server {
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = 30 * time.Second
	}
	if cfg.StallAfter == 0 {
		cfg.StallAfter = 30 * time.Second
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{app: app, chain: chain, cfg: cfg, log: log, mux: http.NewServeMux()}
	s.cred = credentialState{keys: cfg.IssuerKeys, ledger: credential.NewCached(app), nonces: credential.NewNonces(maxNonces, cfg.Now), tokens: map[string]cachedToken{}}
	s.verifier = &authn.Verifier{Keys: s.authorityKey, Now: cfg.Now}
	s.sessions = &authn.Sessions{Resolve: s.subjectKey, Now: cfg.Now}
	s.routes()
	return s
}

// route is one endpoint; the OpenAPI test checks each is documented.
type route struct {
	pattern string
	h       func(s *Server) http.Handler
}

func h(f func(s *Server) handler) func(s *Server) http.Handler {
	return func(s *Server) http.Handler { return s.wrap(f(s)) }
}

var routeTable = []route{
	{"GET /healthz", h(func(s *Server) handler { return s.healthz })},
	{"GET /metrics", func(s *Server) http.Handler {
		return promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
	}},
	{"GET /v1/openapi.json", h(func(s *Server) handler { return s.openapi })},
	{"GET /v1/status", h(func(s *Server) handler { return s.status })},
	{"POST /v1/txs", h(func(s *Server) handler { return s.submit })},
	{"GET /v1/txs/{hash}", h(func(s *Server) handler { return s.txResult })},
	{"GET /v1/dids/{did}", h(func(s *Server) handler { return s.resolve })},
	{"GET /v1/authorities", h(func(s *Server) handler { return s.authorities })},
	{"GET /v1/authorities/{id}", h(func(s *Server) handler { return s.authority })},
	{"GET /v1/proposals", h(func(s *Server) handler { return s.proposals })},
	{"GET /v1/proposals/{id}", h(func(s *Server) handler { return s.proposal })},
	{"GET /v1/accounts/{signer}/sequence", h(func(s *Server) handler { return s.sequence })},
	{"GET /v1/blocks/{height}/commit", h(func(s *Server) handler { return s.commit })},
	{"GET /v1/credential-types", h(func(s *Server) handler { return s.credentialTypes })},
	{"GET /v1/credential-types/{id}", h(func(s *Server) handler { return s.credentialType })},
	{"GET /v1/status-lists/{issuer}", h(func(s *Server) handler { return s.statusFill })},
	{"GET /v1/status-lists/{issuer}/{list}", h(func(s *Server) handler { return s.statusToken })},
	{"GET /v1/status-lists/{issuer}/{list}/{index}", h(func(s *Server) handler { return s.statusEntry })},
	{"POST /v1/presentations/verify", h(func(s *Server) handler { return s.verifyPresentation })},
	{"GET /v1/services", h(func(s *Server) handler { return s.services })},
	{"GET /v1/services/{id}", h(func(s *Server) handler { return s.serviceOne })},
	{"POST /v1/sessions/challenge", h(func(s *Server) handler { return s.challenge })},
	{"POST /v1/sessions", h(func(s *Server) handler { return s.signIn })},
	{"DELETE /v1/sessions", h(func(s *Server) handler { return s.signOut })},
	{"GET /v1/me/consents", h(func(s *Server) handler { return s.myConsents })},
	{"GET /v1/me/access-log", h(func(s *Server) handler { return s.myLog })},
	{"GET /v1/me/access-log/{subject}/{record}", h(func(s *Server) handler { return s.myLogProof })},
	{"GET /v1/me/delegations", h(func(s *Server) handler { return s.myDelegations })},
	{"GET /v1/applications/{app}", h(func(s *Server) handler { return s.application })},
	{"POST /v1/applications/{app}/submit", h(func(s *Server) handler { return s.submitApplication })},
	{"POST /v1/applications/{app}/decline", h(func(s *Server) handler { return s.declineApplication })},
	{"POST /v1/authorities/{id}/applications", h(func(s *Server) handler { return s.openApplication })},
	{"GET /v1/authorities/{id}/applications", h(func(s *Server) handler { return s.receivedApplications })},
	{"GET /v1/authorities/{id}/access", h(func(s *Server) handler { return s.authorityAccess })},
	{"POST /v1/authorities/{id}/back-office/read", h(func(s *Server) handler { return s.backOfficeRead })},
	{"PUT /v1/authorities/{id}/records/{did}/{type}", h(func(s *Server) handler { return s.putRecord })},
	{"POST /v1/authorities/{id}/consent-check", h(func(s *Server) handler { return s.consentCheck })},
}

func (s *Server) routes() {
	for _, r := range routeTable {
		s.mux.Handle(r.pattern, r.h(s))
	}
	s.mux.Handle("/", s.wrap(func(http.ResponseWriter, *http.Request) error {
		return problem(http.StatusNotFound, "no_route", "no such endpoint", "没有该接口", "see /v1/openapi.json for the endpoints")
	}))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if s.app.Height() == 0 {
		return problem(http.StatusServiceUnavailable, "starting", "the node has not committed a block yet", "节点尚未提交区块", "")
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	ChainID    string `json:"chain_id"`
	DistrictZH string `json:"district_zh"`
	DistrictEN string `json:"district_en"`
	Height     int64  `json:"height"`
	// AppHash is the root of the state committed at Height, which the
	// header of block Height+1 carries. Chain.LatestAppHash is the header
	// app hash of block Height: the state after Height-1.
	AppHash     string      `json:"app_hash"`
	BlockTime   time.Time   `json:"block_time"`
	Residents   uint64      `json:"residents"`
	Authorities int         `json:"authorities"`
	Chain       ChainStatus `json:"chain"`
	Degraded    bool        `json:"degraded"`
	Health      string      `json:"health"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	cs := s.chain.Status()
	m, h, err := s.app.Meta(0)
	if err != nil {
		return problem(http.StatusServiceUnavailable, "starting", "the node has not committed a block yet", "节点尚未提交区块", "")
	}
	res := StatusResponse{
		ChainID: m.ChainID, DistrictZH: m.DistrictZH, DistrictEN: m.DistrictEN, Height: h,
		AppHash: hex.EncodeToString(s.app.AppHash()), BlockTime: cs.LatestTime, Residents: m.Residents,
		Authorities: len(m.Authorities), Chain: cs, Health: "ok",
	}
	age := s.cfg.Now().Sub(cs.LatestTime)
	switch {
	case cs.CatchingUp:
		res.Degraded, res.Health = true, "catching up with the network"
	case age > s.cfg.StallAfter:
		res.Degraded, res.Health = true, "no block for "+age.Round(time.Second).String()+": fewer than two-thirds of the validators may be online"
	}
	return writeJSON(w, http.StatusOK, res)
}

// SubmitResponse is the answer to an accepted or committed transaction.
type SubmitResponse struct {
	Hash   string `json:"hash"`
	Status string `json:"status"` // committed or pending
	Height int64  `json:"height,omitempty"`
	Code   uint32 `json:"code"`
	Reason string `json:"reason"`
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tx.MaxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problem(http.StatusRequestEntityTooLarge, "too_large", "the transaction is too large", "交易过大", "at most "+strconv.Itoa(tx.MaxBytes)+" bytes")
		}
		return problem(http.StatusBadRequest, "bad_body", "the request body could not be read", "无法读取请求内容", "")
	}
	if len(raw) == 0 {
		return problem(http.StatusBadRequest, "empty", "send the signed transaction as the request body", "请求内容应为已签名的交易", "")
	}
	hash := tx.Hash(raw)
	hexHash := tx.HashHex(raw)
	// A retry of a committed transaction gets the same answer again.
	if res, err := s.app.TxResult(hash); err == nil {
		return s.committed(w, hexHash, res)
	}
	wait, cancel := s.app.Watch(hash)
	defer cancel()
	ctx := r.Context()
	ct, err := s.chain.Submit(ctx, raw)
	switch {
	case errors.Is(err, ErrInCache):
		// Already submitted and not yet committed (or committed since the
		// check above): wait for it like the first submitter.
		if res, err := s.app.TxResult(hash); err == nil {
			return s.committed(w, hexHash, res)
		}
	case errors.Is(err, ErrMempoolFull):
		w.Header().Set("Retry-After", "2")
		return problem(http.StatusServiceUnavailable, "busy", "the network is busy", "网络繁忙，请稍后重试", "the mempool is full; retry the same transaction shortly")
	case errors.Is(err, ErrTooLarge):
		return problem(http.StatusRequestEntityTooLarge, "too_large", "the transaction is too large", "交易过大", "")
	case err != nil:
		return err
	case ct.Code == uint32(ledger.CodeBadSequence):
		// A resend that raced with its own commit: answer with the result.
		if res, err := s.app.TxResult(hash); err == nil {
			return s.committed(w, hexHash, res)
		}
		fallthrough
	case ct.Code != 0:
		c := ledger.Code(ct.Code)
		if c == ledger.CodeSequenceAhead {
			w.Header().Set("Retry-After", "1")
		}
		p := problem(rejectStatus(c), c.Name(), c.Message(), c.MessageZH(), detailOf(c, ct.Log))
		p.Code, p.TxHash = ct.Code, hexHash
		return p
	}
	tctx, stop := context.WithTimeout(ctx, s.cfg.CommitTimeout)
	defer stop()
	res, err := wait(tctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // the client went away
		}
		if res, err := s.app.TxResult(hash); err == nil {
			return s.committed(w, hexHash, res)
		}
		return writeJSON(w, http.StatusAccepted, SubmitResponse{Hash: hexHash, Status: "pending", Reason: "accepted into the mempool; not committed yet: poll GET /v1/txs/" + hexHash})
	}
	return s.committed(w, hexHash, &res)
}

func (s *Server) committed(w http.ResponseWriter, hash string, res *ledger.TxResult) error {
	if res.Code != ledger.OK {
		p := problem(rejectStatus(res.Code), res.Code.Name(), res.Code.Message(), res.Code.MessageZH(), detailOf(res.Code, res.Log))
		p.Code, p.TxHash = uint32(res.Code), hash
		return p
	}
	return writeJSON(w, http.StatusOK, SubmitResponse{Hash: hash, Status: "committed", Height: res.Height, Code: 0, Reason: "ok"})
}

// detailOf strips the code's own message from a log line, leaving the detail.
func detailOf(c ledger.Code, log string) string {
	d := strings.TrimPrefix(log, c.Message())
	return strings.TrimPrefix(d, ": ")
}

func rejectStatus(c ledger.Code) int {
	switch c {
	case ledger.CodeAlreadyRegistered, ledger.CodeDIDExists, ledger.CodeBadSequence, ledger.CodeAlreadyVoted, ledger.CodeProposalClosed:
		return http.StatusConflict
	case ledger.CodeBadSignature, ledger.CodeUnknownSigner, ledger.CodeRecoveryMismatch:
		return http.StatusUnauthorized
	case ledger.CodeSequenceAhead:
		return http.StatusServiceUnavailable
	case ledger.CodeNotAuthorized:
		return http.StatusForbidden
	case ledger.CodeNotFound:
		return http.StatusNotFound
	case ledger.CodeInternal:
		return http.StatusInternalServerError
	}
	return http.StatusUnprocessableEntity
}

// TxResponse is GET /v1/txs/{hash}.
type TxResponse struct {
	Hash string `json:"hash"`
	ledger.TxResult
	Reason string `json:"reason"`
}

func (s *Server) txResult(w http.ResponseWriter, r *http.Request) error {
	h, err := tx.ParseHashHex(r.PathValue("hash"))
	if err != nil {
		return problem(http.StatusBadRequest, "bad_hash", "not a transaction hash", "交易哈希格式错误", err.Error())
	}
	res, err := s.app.TxResult(h)
	if err != nil {
		return problem(http.StatusNotFound, "not_found", "no committed transaction with this hash", "未找到该已提交交易", "it may still be pending; retry shortly")
	}
	return writeJSON(w, http.StatusOK, TxResponse{Hash: fmt.Sprintf("%X", h[:]), TxResult: *res, Reason: res.Code.Name()})
}

func heightParam(r *http.Request) (int64, error) {
	q := r.URL.Query().Get("height")
	if q == "" {
		return 0, nil
	}
	h, err := strconv.ParseInt(q, 10, 64)
	if err != nil || h < 1 {
		return 0, problem(http.StatusBadRequest, "bad_height", "height must be a positive integer", "高度应为正整数", "")
	}
	return h, nil
}

func (s *Server) stateErr(err error) error {
	switch {
	case errors.Is(err, ledger.ErrBadHeight):
		return problem(http.StatusNotFound, "bad_height", "no committed state at that height", "该高度没有已提交的状态", err.Error())
	case errors.Is(err, ledger.ErrNoVersions):
		return problem(http.StatusServiceUnavailable, "starting", "the node has not committed a block yet", "节点尚未提交区块", "")
	case errors.Is(err, ledger.ErrNotFound):
		return errNotFound
	case errors.Is(err, did.ErrSyntax):
		return problem(http.StatusBadRequest, "bad_did", "not a did:imi identifier", "不是有效的 did:imi 身份标识", err.Error())
	}
	return err
}

// ResolveResponse is a DID resolution, with a Merkle proof when asked for.
type ResolveResponse struct {
	*did.Resolution
	Proof *ledger.Proof `json:"imiProof,omitempty"`
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	res, err := s.app.Resolve(r.PathValue("did"), h)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return problem(http.StatusNotFound, "not_found", "this DID is not registered", "该身份标识未登记", "")
		}
		return s.stateErr(err)
	}
	out := ResolveResponse{Resolution: res}
	if r.URL.Query().Get("proof") == "true" && res.Metadata.Kind == "resident" {
		p, err := s.app.ProveDID(r.PathValue("did"), res.ResolutionMetadata.Height)
		if err != nil {
			return s.stateErr(err)
		}
		out.Proof = p
	}
	w.Header().Set("Content-Type", "application/did-resolution+json")
	return writeJSON(w, http.StatusOK, out)
}

// AuthoritiesResponse lists authorities as of a height.
type AuthoritiesResponse struct {
	Height      int64              `json:"height"`
	Authorities []ledger.Authority `json:"authorities"`
}

func (s *Server) authorities(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	list, at, err := s.app.Authorities(h)
	if err != nil {
		return s.stateErr(err)
	}
	return writeJSON(w, http.StatusOK, AuthoritiesResponse{Height: at, Authorities: list})
}

func (s *Server) authority(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	list, _, err := s.app.Authorities(h)
	if err != nil {
		return s.stateErr(err)
	}
	for _, a := range list {
		if a.ID == r.PathValue("id") || a.DID == r.PathValue("id") {
			return writeJSON(w, http.StatusOK, a)
		}
	}
	return problem(http.StatusNotFound, "not_found", "no such authority", "没有该机构", "")
}

// ProposalsResponse lists governance proposals.
type ProposalsResponse struct {
	Height    int64             `json:"height"`
	Proposals []ledger.Proposal `json:"proposals"`
}

func (s *Server) proposals(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	list, at, err := s.app.Proposals(h)
	if err != nil {
		return s.stateErr(err)
	}
	return writeJSON(w, http.StatusOK, ProposalsResponse{Height: at, Proposals: list})
}

func (s *Server) proposal(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	p, _, err := s.app.Proposal(r.PathValue("id"), h)
	if err != nil {
		return s.stateErr(err)
	}
	return writeJSON(w, http.StatusOK, p)
}

// SequenceResponse is the next sequence number of a signer's lane.
type SequenceResponse struct {
	Signer string `json:"signer"`
	Lane   uint32 `json:"lane"`
	Next   uint64 `json:"next"`
}

func (s *Server) sequence(w http.ResponseWriter, r *http.Request) error {
	signer := r.PathValue("signer")
	if pseudonym.Is(signer) {
		if _, err := pseudonym.Parse(signer); err != nil {
			return problem(http.StatusBadRequest, "bad_signer", "not a did:imi identifier or psn: pseudonym", "不是有效的身份标识或化名", err.Error())
		}
	} else if _, err := did.Parse(signer); err != nil {
		return s.stateErr(err)
	}
	var lane uint64
	if q := r.URL.Query().Get("lane"); q != "" {
		var err error
		if lane, err = strconv.ParseUint(q, 10, 32); err != nil || lane >= tx.MaxLanes {
			return problem(http.StatusBadRequest, "bad_lane", "lane must be an integer from 0 to 255", "通道号应为0到255的整数", "")
		}
	}
	return writeJSON(w, http.StatusOK, SequenceResponse{Signer: signer, Lane: uint32(lane), Next: s.app.NextSeq(signer, uint32(lane))})
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) error {
	h, err := strconv.ParseInt(r.PathValue("height"), 10, 64)
	if err != nil || h < 1 {
		return problem(http.StatusBadRequest, "bad_height", "height must be a positive integer", "高度应为正整数", "")
	}
	c, err := s.chain.Commit(h)
	if err != nil {
		return problem(http.StatusNotFound, "bad_height", "no committed block at that height", "该高度没有已提交的区块", err.Error())
	}
	return writeJSON(w, http.StatusOK, c)
}
