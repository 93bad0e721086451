package credential

import (
	"crypto"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
)

// Ledger is what verification reads from the chain. *ledger.App serves it.
type Ledger interface {
	AuthorityByDID(did string, h int64) (*ledger.Authority, *ledger.Stamp, int64, error)
	CredentialTypeByVCT(vct string, h int64) (*ledger.CredentialType, int64, error)
	Status(issuer string, list, idx uint32, h int64) (*ledger.StatusEntry, int64, error)
	LastBlock() ledger.Stamp
}

// NonceStore remembers the nonces of accepted presentations until they
// expire, so a presentation cannot be replayed. Use reports false for a nonce
// already used.
type NonceStore interface {
	Use(nonce string, until time.Time) bool
}

// Outcome is the verdict. Only Valid carries claims; StatusUndetermined means
// the status could not be checked, never that the credential is revoked.
type Outcome string

// Outcomes.
const (
	Valid              Outcome = "valid"
	Invalid            Outcome = "invalid"
	Revoked            Outcome = "revoked"
	Suspended          Outcome = "suspended"
	StatusUndetermined Outcome = "status_undetermined"
)

// Defaults of Policy.
const (
	DefaultMaxStatusAge = 2 * time.Minute
	keySkew             = time.Minute
)

// Policy is the verifier's side of a presentation: what it asked for.
// Key binding is always required: a credential without it could be replayed
// by anyone who saw it once.
type Policy struct {
	Audience string
	Nonce    string
	Now      time.Time
	Nonces   NonceStore
	// MaxStatusAge is how old the last block may be for its status bits to
	// count as current; older means StatusUndetermined.
	MaxStatusAge time.Duration
	// Limits bound the input; zero means sdjwt's defaults.
	Limits sdjwt.Limits
}

// Result is a verification's answer.
type Result struct {
	Outcome   Outcome        `json:"outcome"`
	Reason    string         `json:"reason,omitempty"`
	Message   string         `json:"message"`
	MessageZH string         `json:"message_zh"`
	Detail    string         `json:"detail,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
	Disclosed []string       `json:"disclosed,omitempty"`
	Type      string         `json:"type,omitempty"`
	VCT       string         `json:"vct,omitempty"`
	TypeZH    string         `json:"type_zh,omitempty"`
	TypeEN    string         `json:"type_en,omitempty"`
	Issuer    string         `json:"issuer,omitempty"`
	IssuerDID string         `json:"issuer_did,omitempty"`
	IssuerZH  string         `json:"issuer_zh,omitempty"`
	IssuerEN  string         `json:"issuer_en,omitempty"`
	IssuedAt  *time.Time     `json:"issued_at,omitempty"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	// Height is the ledger height whose state the status was read from.
	Height int64 `json:"height,omitempty"`
}

// Reasons of Invalid and StatusUndetermined results beyond sdjwt's.
const (
	ReasonIssuerUnknown     = "issuer_unknown"
	ReasonIssuerRemoved     = "issuer_removed"
	ReasonKeyUnknown        = "issuer_key_unknown"
	ReasonKeyNotInForce     = "issuer_key_not_in_force"
	ReasonTypeUnknown       = "credential_type_unknown"
	ReasonStatusMissing     = "status_missing"
	ReasonStatusEntry       = "status_entry_mismatch"
	ReasonUndeclaredClaim   = "undeclared_claim"
	ReasonPlainClaim        = "claim_not_selectively_disclosable"
	ReasonNonceReplayed     = "nonce_replayed"
	ReasonLedgerUnavailable = "ledger_unavailable"
	ReasonLedgerStale       = "ledger_stale"
	ReasonStatusUnknown     = "status_value_unknown"
)

var messages = map[string][2]string{
	"":                                 {"the credential is valid", "凭证有效"},
	string(Revoked):                    {"the issuer has revoked this credential", "签发机构已撤销该凭证"},
	string(Suspended):                  {"the issuer has suspended this credential", "签发机构已暂停该凭证"},
	ReasonIssuerUnknown:                {"the issuer is not an authority on this network", "签发方不是本网络的机构"},
	ReasonIssuerRemoved:                {"the issuer is no longer an authority of the consortium", "签发机构已退出联盟"},
	ReasonKeyUnknown:                   {"the credential was not signed with a key the ledger lists for its issuer", "凭证签名所用密钥不在签发机构的登记密钥中"},
	ReasonKeyNotInForce:                {"the issuer's key was not in force when the credential says it was issued", "凭证签发时该密钥并未生效"},
	ReasonTypeUnknown:                  {"the credential type is not published on the ledger", "该凭证类型未在账本上发布"},
	ReasonStatusMissing:                {"the credential has no status entry", "凭证缺少状态信息"},
	ReasonStatusEntry:                  {"the credential's status entry does not belong to it", "凭证的状态条目与凭证不符"},
	ReasonUndeclaredClaim:              {"the credential discloses a claim its type does not declare", "凭证披露了类型未声明的信息项"},
	ReasonPlainClaim:                   {"the credential shows a personal claim the resident cannot withhold", "凭证中含有居民无法选择不披露的个人信息"},
	ReasonNonceReplayed:                {"this presentation was already used; ask the resident to present again", "该出示已使用过，请居民重新出示"},
	ReasonLedgerUnavailable:            {"the ledger could not be read; try again", "暂时无法读取账本，请重试"},
	ReasonLedgerStale:                  {"the node is behind the network, so the credential's status is not known; try again", "节点数据未同步，暂无法确认凭证状态，请重试"},
	ReasonStatusUnknown:                {"the credential's status value is not one this verifier knows", "凭证状态值无法识别"},
	sdjwt.ReasonMalformed:              {"the presentation is not well-formed", "出示内容格式错误"},
	sdjwt.ReasonTooLarge:               {"the presentation is too large", "出示内容过大"},
	sdjwt.ReasonAlgNotAllowed:          {"the credential uses a signature algorithm that is not allowed", "凭证使用了不允许的签名算法"},
	sdjwt.ReasonBadSignature:           {"a signature does not verify: the credential was altered or forged", "签名验证失败：凭证被篡改或伪造"},
	sdjwt.ReasonBadTyp:                 {"this is not an SD-JWT credential", "这不是SD-JWT凭证"},
	sdjwt.ReasonIssuerKey:              {"the issuer's key could not be established from the ledger", "无法从账本确认签发机构的密钥"},
	sdjwt.ReasonDisclosedValidityClaim: {"the credential hides its validity behind a disclosure", "凭证的有效性信息被隐藏"},
	sdjwt.ReasonExpired:                {"the credential has expired", "凭证已过期"},
	sdjwt.ReasonNotYetValid:            {"the credential is not valid yet", "凭证尚未生效"},
	sdjwt.ReasonKeyBindingRequired:     {"the presentation is not bound to the resident's key", "出示未经居民密钥确认"},
	sdjwt.ReasonNonceMismatch:          {"the presentation was made for another request", "该出示不是针对本次请求的"},
	sdjwt.ReasonAudMismatch:            {"the presentation was made for another service", "该出示是提供给其他服务的"},
	sdjwt.ReasonKBIATOutOfWindow:       {"the presentation is too old or dated in the future; ask the resident to present again", "出示时间不在有效范围内，请居民重新出示"},
	sdjwt.ReasonSDHashMismatch:         {"the disclosures were changed after the resident signed", "居民签署后披露内容被改动"},
}

func fill(r *Result) *Result {
	k := r.Reason
	if r.Outcome == Revoked || r.Outcome == Suspended {
		k = string(r.Outcome)
	}
	m, ok := messages[k]
	if !ok {
		m = [2]string{"the presentation is invalid", "出示内容无效"}
	}
	r.Message, r.MessageZH = m[0], m[1]
	return r
}

// vcClaims are the claims of the JWT and SD-JWT VC layer, which a credential
// type may not declare (ledger's reserved claim names).
var vcClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "iat": true, "nbf": true, "exp": true, "jti": true,
	"cnf": true, "vct": true, "vct#integrity": true, "status": true,
}

// refusal carries a reason out of the IssuerKey callback.
type refusal struct{ reason, detail string }

func (r *refusal) Error() string { return r.reason + ": " + r.detail }

// Verify verifies a presentation against the ledger: the issuer's key as of
// issuance and now, every disclosure, the key binding, and the status as of
// the last block. It never returns claims with anything but Valid.
func Verify(l Ledger, presentation string, p Policy) *Result {
	if p.MaxStatusAge <= 0 {
		p.MaxStatusAge = DefaultMaxStatusAge
	}
	var is *issuance
	issuerKey := func(h jws.Header, payload map[string]any) (crypto.PublicKey, error) {
		var r *refusal
		if is, r = resolve(l, h, payload); r != nil {
			return nil, r
		}
		return is.key.Ed25519(), nil
	}
	res, err := sdjwt.Verify(presentation, sdjwt.VerifyOptions{
		IssuerKey: issuerKey, Algorithms: []string{jws.EdDSA}, RequireKeyBinding: true,
		Audience: p.Audience, Nonce: p.Nonce, Now: p.Now, Limits: p.Limits,
	})
	if err != nil {
		var r *refusal
		var se *sdjwt.Error
		switch {
		case errors.As(err, &r):
			return fill(&Result{Outcome: Invalid, Reason: r.reason, Detail: r.detail})
		case errors.As(err, &se):
			return fill(&Result{Outcome: Invalid, Reason: se.Reason, Detail: se.Detail})
		}
		return fill(&Result{Outcome: Invalid, Reason: sdjwt.ReasonMalformed, Detail: err.Error()})
	}
	au, ct, entry := is.authority, is.typ, is.entry
	out := &Result{Type: ct.ID, VCT: ct.VCT, TypeZH: ct.NameZH, TypeEN: ct.NameEN,
		Issuer: au.ID, IssuerDID: au.DID, IssuerZH: au.NameZH, IssuerEN: au.NameEN}
	if iat, ok := numericDate(res.Claims["iat"]); ok {
		out.IssuedAt = &iat
	}
	if exp, ok := numericDate(res.Claims["exp"]); ok {
		out.ExpiresAt = &exp
	}
	for _, name := range res.Disclosed {
		if _, ok := ct.Claim(name); !ok {
			out.Outcome, out.Reason, out.Detail = Invalid, ReasonUndeclaredClaim, name
			return fill(out)
		}
	}
	// A claim the issuer left plain reaches every verifier whatever the
	// resident chose: the type's claims must be disclosures, and only the
	// SD-JWT VC's own claims may be plain.
	for name := range res.Claims {
		_, declared := ct.Claim(name)
		switch {
		case !declared && !vcClaims[name]:
			out.Outcome, out.Reason, out.Detail = Invalid, ReasonUndeclaredClaim, clip(name)
			return fill(out)
		case declared && !slices.Contains(res.Disclosed, name):
			out.Outcome, out.Reason, out.Detail = Invalid, ReasonPlainClaim, name
			return fill(out)
		}
	}
	// Status before the nonce: an undetermined answer carries no claims, so
	// the resident may send the same presentation again once the node has
	// caught up.
	last := l.LastBlock()
	if p.Now.Sub(last.Time) > p.MaxStatusAge {
		out.Outcome, out.Reason = StatusUndetermined, ReasonLedgerStale
		out.Detail = fmt.Sprintf("last block %d at %s", last.Height, last.Time.UTC().Format(time.RFC3339))
		return fill(out)
	}
	// A KB-JWT dated up to one window ahead stays acceptable until one
	// window after that; the nonce must outlive it, the last second included.
	until := p.Now.Add(2*sdjwt.DefaultIATWindow + time.Second)
	if p.Nonces == nil || !p.Nonces.Use(p.Nonce, until) {
		out.Outcome, out.Reason = Invalid, ReasonNonceReplayed
		return fill(out)
	}
	out.Height = last.Height
	switch entry.Status {
	case ledger.StatusValid:
		out.Outcome, out.Claims, out.Disclosed = Valid, res.Claims, res.Disclosed
	case ledger.StatusInvalid:
		out.Outcome = Revoked
	case ledger.StatusSuspended:
		out.Outcome = Suspended
	default:
		out.Outcome, out.Reason = StatusUndetermined, ReasonStatusUnknown
	}
	return fill(out)
}

// issuance is what the ledger says about a credential's issue: its issuer,
// the issuer's key of that time, its type and its status entry.
type issuance struct {
	authority *ledger.Authority
	typ       *ledger.CredentialType
	entry     *ledger.StatusEntry
	key       key.Public
}

// resolve finds the issuer, its key of the credential's kid, the type and the
// status entry, and checks they belong together. It reads the latest state:
// the key history in the authority record answers "as of issuance".
func resolve(l Ledger, h jws.Header, payload map[string]any) (*issuance, *refusal) {
	iss, _ := payload["iss"].(string)
	au, removed, _, err := l.AuthorityByDID(iss, 0)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, &refusal{ReasonIssuerUnknown, clip(iss)}
	case err != nil:
		return nil, &refusal{ReasonLedgerUnavailable, err.Error()}
	case removed != nil:
		return nil, &refusal{ReasonIssuerRemoved, fmt.Sprintf("%s left at height %d", au.ID, removed.Height)}
	}
	v, ok := keyVersion(h.Kid, au)
	if !ok {
		return nil, &refusal{ReasonKeyUnknown, "kid " + clip(h.Kid)}
	}
	k, ok := au.KeyAt(v)
	if !ok {
		return nil, &refusal{ReasonKeyUnknown, "kid " + clip(h.Kid)}
	}
	iat, ok := numericDate(payload["iat"])
	if !ok {
		return nil, &refusal{sdjwt.ReasonMalformed, "iat is missing"}
	}
	if iat.Before(k.From.Time.Add(-keySkew)) || (!k.Until.Time.IsZero() && !iat.Before(k.Until.Time)) {
		return nil, &refusal{ReasonKeyNotInForce, fmt.Sprintf("key %d was in force from height %d to %d", v, k.From.Height, k.Until.Height)}
	}
	vct, _ := payload["vct"].(string)
	ct, _, err := l.CredentialTypeByVCT(vct, 0)
	if err != nil {
		return nil, &refusal{ReasonTypeUnknown, clip(vct)}
	}
	list, idx, r := statusRef(payload, au)
	if r != nil {
		return nil, r
	}
	e, _, err := l.Status(au.ID, list, idx, 0)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, &refusal{ReasonStatusEntry, fmt.Sprintf("%s has no entry %d/%d", au.ID, list, idx)}
	case err != nil:
		return nil, &refusal{ReasonLedgerUnavailable, err.Error()}
	case e.Type != ct.ID || e.KeyVersion != v:
		return nil, &refusal{ReasonStatusEntry, fmt.Sprintf("entry %d/%d was reserved for %s under key %d", list, idx, e.Type, e.KeyVersion)}
	}
	return &issuance{authority: au, typ: ct, entry: e, key: k.Key}, nil
}

// keyVersion reads N from the kid "<issuer DID>#key-N".
func keyVersion(kid string, au *ledger.Authority) (uint64, bool) {
	rest, ok := strings.CutPrefix(kid, au.DID+"#key-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(rest, 10, 64)
	return v, err == nil && strconv.FormatUint(v, 10) == rest
}

// statusRef reads status.status_list and checks its URI names the issuer's
// list on IMI's path; the host part is the issuer's public address.
func statusRef(payload map[string]any, au *ledger.Authority) (uint32, uint32, *refusal) {
	st, _ := payload["status"].(map[string]any)
	sl, _ := st["status_list"].(map[string]any)
	uri, _ := sl["uri"].(string)
	idxF, ok := sl["idx"].(float64)
	if sl == nil || uri == "" || !ok || idxF < 0 || idxF >= ledger.StatusListSize || idxF != math.Trunc(idxF) {
		return 0, 0, &refusal{ReasonStatusMissing, "status.status_list needs idx and uri"}
	}
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return 0, 0, &refusal{ReasonStatusEntry, "status uri " + clip(uri)}
	}
	rest, ok := strings.CutPrefix(u.Path, StatusPath+au.ID+"/")
	list, err := strconv.ParseUint(rest, 10, 32)
	if !ok || err != nil || strconv.FormatUint(list, 10) != rest || list >= ledger.MaxStatusLists || u.RawQuery != "" || u.Fragment != "" {
		return 0, 0, &refusal{ReasonStatusEntry, "status uri " + clip(uri) + " is not a list of " + au.ID}
	}
	return uint32(list), uint32(idxF), nil
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Nonces is an in-memory NonceStore bounded in size. A full store refuses
// new nonces rather than forgetting unexpired ones, which would let a replay
// through.
type Nonces struct {
	mu  sync.Mutex
	max int
	m   map[string]time.Time
	// now is injected for tests.
	now func() time.Time
}

// NewNonces returns a store of at most max nonces.
func NewNonces(max int, now func() time.Time) *Nonces {
	return &Nonces{max: max, m: map[string]time.Time{}, now: now}
}

// Use implements NonceStore.
func (n *Nonces) Use(nonce string, until time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	if exp, ok := n.m[nonce]; ok && now.Before(exp) {
		return false
	}
	if len(n.m) >= n.max {
		for k, exp := range n.m {
			if !now.Before(exp) {
				delete(n.m, k)
			}
		}
		if len(n.m) >= n.max {
			return false
		}
	}
	n.m[nonce] = until
	return true
}
