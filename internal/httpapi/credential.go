package httpapi

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
)

const (
	// maxPresentationBody bounds POST /v1/presentations/verify; sdjwt's own
	// limit is lower, so an oversized presentation gets its reason from there.
	maxPresentationBody = 256 << 10
	// statusTokenLifetime is how long a served status-list token is valid;
	// ttl tells caches to come back sooner.
	statusTokenLifetime = time.Hour
	statusTokenTTL      = time.Minute
	// maxNonces bounds the replay cache of the verify endpoint.
	maxNonces = 1 << 20
)

// credentialState is the API's credential side: the keys of the issuers
// whose status lists this node signs, a cache of signed tokens, and the
// nonces of accepted presentations.
type credentialState struct {
	keys   map[string]key.Private
	ledger *credential.Cached
	nonces *credential.Nonces
	mu     sync.Mutex
	tokens map[string]cachedToken
}

// cachedToken is a signed token and the list it was made from. Compressing
// a list of 2^20 entries takes a tenth of a second, so a token is re-made
// only when the list changed or it is half-way to expiry.
type cachedToken struct {
	notValid map[uint32]byte
	iat      time.Time
	token    string
}

// CredentialTypesResponse lists the published credential types.
type CredentialTypesResponse struct {
	Height int64                   `json:"height"`
	Types  []ledger.CredentialType `json:"types"`
}

func (s *Server) credentialTypes(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	ts, at, err := s.app.CredentialTypes(h)
	if err != nil {
		return s.stateErr(err)
	}
	if ts == nil {
		ts = []ledger.CredentialType{}
	}
	return writeJSON(w, http.StatusOK, CredentialTypesResponse{Height: at, Types: ts})
}

func (s *Server) credentialType(w http.ResponseWriter, r *http.Request) error {
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	ct, _, err := s.app.CredentialType(r.PathValue("id"), h)
	if err != nil {
		return s.stateErr(err)
	}
	return writeJSON(w, http.StatusOK, ct)
}

// StatusFillResponse says how full each of an issuer's status lists is.
type StatusFillResponse struct {
	Issuer string   `json:"issuer"`
	Size   int      `json:"size"`
	Fill   []uint64 `json:"fill"`
}

func (s *Server) statusFill(w http.ResponseWriter, r *http.Request) error {
	fill, err := s.app.StatusListFill(r.PathValue("issuer"))
	if err != nil {
		return s.stateErr(err)
	}
	if fill == nil {
		fill = []uint64{}
	}
	return writeJSON(w, http.StatusOK, StatusFillResponse{Issuer: r.PathValue("issuer"), Size: ledger.StatusListSize, Fill: fill})
}

func listParams(r *http.Request, withIndex bool) (uint32, uint32, error) {
	l, err := strconv.ParseUint(r.PathValue("list"), 10, 32)
	if err != nil || l >= ledger.MaxStatusLists {
		return 0, 0, problem(http.StatusNotFound, "not_found", "no such status list", "没有该状态列表", "")
	}
	if !withIndex {
		return uint32(l), 0, nil
	}
	i, err := strconv.ParseUint(r.PathValue("index"), 10, 32)
	if err != nil || i >= ledger.StatusListSize {
		return 0, 0, problem(http.StatusNotFound, "not_found", "no such status entry", "没有该状态条目", "")
	}
	return uint32(l), uint32(i), nil
}

func (s *Server) statusEntry(w http.ResponseWriter, r *http.Request) error {
	l, i, err := listParams(r, true)
	if err != nil {
		return err
	}
	h, err := heightParam(r)
	if err != nil {
		return err
	}
	e, _, err := s.app.Status(r.PathValue("issuer"), l, i, h)
	if err != nil {
		return s.stateErr(err)
	}
	return writeJSON(w, http.StatusOK, e)
}

// statusToken serves the IETF status-list token of one list, signed with the
// issuer's key. Only a node that holds that key can sign it; a token is made
// once per height and list.
func (s *Server) statusToken(w http.ResponseWriter, r *http.Request) error {
	issuer := r.PathValue("issuer")
	l, _, err := listParams(r, false)
	if err != nil {
		return err
	}
	k, ok := s.cred.keys[issuer]
	if !ok {
		// Only the issuer's node holds its key; send the caller there.
		if au := s.authorityByID(issuer); au != nil && au.Endpoint != "" {
			if u, err := url.Parse(au.Endpoint); err == nil && u.Host != r.Host && (u.Scheme == "https" || u.Scheme == "http") {
				http.Redirect(w, r, strings.TrimSuffix(au.Endpoint, "/")+r.URL.Path, http.StatusTemporaryRedirect)
				return nil
			}
		}
		return problem(http.StatusNotFound, "not_signed_here", "this node does not sign the status lists of that issuer", "本节点不签发该机构的状态列表", "ask the issuer's own node")
	}
	last := s.app.LastBlock()
	list, err := s.app.StatusListAt(issuer, l, last.Height)
	if err != nil {
		return s.stateErr(err)
	}
	ck := issuer + "/" + strconv.FormatUint(uint64(l), 10)
	s.cred.mu.Lock()
	c, hit := s.cred.tokens[ck]
	s.cred.mu.Unlock()
	if !hit || !maps.Equal(c.notValid, list.NotValid) || last.Time.Sub(c.iat) >= statusTokenLifetime/2 {
		tok, err := s.makeStatusToken(issuer, list, k, last)
		if err != nil {
			return err
		}
		c = cachedToken{notValid: list.NotValid, iat: last.Time, token: tok}
		s.cred.mu.Lock()
		s.cred.tokens[ck] = c
		s.cred.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/statuslist+jwt")
	w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(statusTokenTTL.Seconds())))
	_, err = w.Write([]byte(c.token))
	return err
}

func (s *Server) makeStatusToken(issuer string, list *ledger.StatusList, k key.Private, last ledger.Stamp) (string, error) {
	au := s.authorityByID(issuer)
	if au == nil {
		return "", errNotFound
	}
	if !au.Key.Equal(k.Public()) {
		return "", problem(http.StatusServiceUnavailable, "stale_key", "this node holds an old key of the issuer", "本节点持有的机构密钥已过期", "install the issuer's current key")
	}
	return credential.StatusToken(au, k, list, last.Time, statusTokenLifetime, statusTokenTTL)
}

func (s *Server) authorityByID(id string) *ledger.Authority {
	list, _, err := s.app.Authorities(0)
	if err != nil {
		return nil
	}
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// VerifyRequest asks the node to verify a presentation made for the caller:
// the audience and nonce are the ones the caller put in its request. Key
// binding is always required; the request cannot turn it off.
type VerifyRequest struct {
	Presentation string `json:"presentation"`
	Audience     string `json:"aud"`
	Nonce        string `json:"nonce"`
}

func (s *Server) verifyPresentation(w http.ResponseWriter, r *http.Request) error {
	var req VerifyRequest
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPresentationBody))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return problem(http.StatusRequestEntityTooLarge, "too_large", "the presentation is too large", "出示内容过大", "at most "+strconv.Itoa(maxPresentationBody)+" bytes")
		}
		return problem(http.StatusBadRequest, "bad_body", "send {\"presentation\", \"aud\", \"nonce\"} as JSON", "请以JSON格式发送 presentation、aud 和 nonce", err.Error())
	}
	if req.Presentation == "" || req.Audience == "" || len(req.Nonce) < 16 {
		return problem(http.StatusBadRequest, "bad_body", "presentation, aud and a nonce of at least 16 characters are required", "需要 presentation、aud 以及至少16个字符的 nonce", "")
	}
	res := credential.Verify(s.cred.ledger, req.Presentation, credential.Policy{
		Audience: req.Audience, Nonce: req.Nonce, Now: s.cfg.Now(), Nonces: s.cred.nonces,
	})
	return writeJSON(w, http.StatusOK, res)
}
